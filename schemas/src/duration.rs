//! Human durations such as `10s`, `1m`, `1h` or `1d`, as used for time buckets and windows.

use std::fmt;

/// A positive duration with whole-second resolution, parsed from `<n><unit>` where unit is
/// one of `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration {
    seconds: i64,
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: {reason} (expected e.g. 10s, 1m, 1h or 1d)")]
pub struct DurationError {
    /// The text that was refused.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl HumanDuration {
    /// Builds a duration from whole seconds; `None` unless positive.
    pub fn from_seconds(seconds: i64) -> Option<Self> {
        (seconds > 0).then_some(Self { seconds })
    }

    /// Parses `10s`, `5m`, `1h`, `1d`.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let error = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let text = input.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| error("missing unit"))?;
        let (digits, unit) = text.split_at(split);
        if digits.is_empty() {
            return Err(error("missing number"));
        }
        let count: i64 = digits.parse().map_err(|_| error("number too large"))?;
        let unit_seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(error("unknown unit")),
        };
        let seconds = count
            .checked_mul(unit_seconds)
            .ok_or_else(|| error("number too large"))?;
        Self::from_seconds(seconds).ok_or_else(|| error("must be greater than zero"))
    }

    /// Whole seconds.
    pub fn seconds(self) -> i64 {
        self.seconds
    }

    /// Microseconds, the resolution of event times.
    pub fn micros(self) -> i64 {
        self.seconds * 1_000_000
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        if s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3_600 == 0 {
            write!(f, "{}h", s / 3_600)
        } else if s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_prints_canonically() {
        for (text, seconds, shown) in [
            ("10s", 10, "10s"),
            ("1m", 60, "1m"),
            ("90s", 90, "90s"),
            ("120s", 120, "2m"),
            ("1h", 3600, "1h"),
            ("2d", 172_800, "2d"),
        ] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.seconds(), seconds, "{text}");
            assert_eq!(d.to_string(), shown);
        }
    }

    #[test]
    fn refuses_bad_input_with_reason() {
        for (text, reason) in [
            ("", "missing unit"),
            ("10", "missing unit"),
            ("m", "missing number"),
            ("5w", "unknown unit"),
            ("0s", "must be greater than zero"),
            ("-1s", "missing number"),
        ] {
            assert_eq!(
                HumanDuration::parse(text).unwrap_err().reason,
                reason,
                "{text}"
            );
        }
    }
}

macro_rules! config_duration {
    ($name:ident, $unit:literal, $to_duration:expr) => {
        #[doc = concat!("A configured duration in whole ", $unit, "; the unit is in the key's name (`_", $unit, "`).")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// As a `Duration`.
            pub fn duration(self) -> std::time::Duration {
                let to: fn(u64) -> std::time::Duration = $to_duration;
                to(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $unit)
            }
        }
    };
}

config_duration!(Millis, "ms", std::time::Duration::from_millis);
config_duration!(Seconds, "s", std::time::Duration::from_secs);
config_duration!(Hours, "hours", |h| std::time::Duration::from_secs(
    h.saturating_mul(3600)
));
