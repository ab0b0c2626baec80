//! Quantile levels as readers ask for them (`q=0.5,0.99`) and as answers name them
//! (`quantile_latency_ms_p99`): parsed from decimal text so that the name is exact (0.999 is
//! `p99_9`, never `p99_89999`).

use std::fmt;

/// The levels answered when a reader names none.
pub const DEFAULT_LEVELS: [&str; 3] = ["0.5", "0.9", "0.99"];

/// The most digits after the decimal point a level may have.
pub const MAX_DECIMALS: usize = 6;

/// A level that is not a decimal from 0 to 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a quantile level: write a decimal from 0 to 1 with at most {MAX_DECIMALS} digits after the point, e.g. 0.5 or 0.99"
)]
pub struct LevelError {
    /// The text refused (at most 40 characters of it).
    pub text: String,
}

/// A quantile level q in [0, 1], with the suffix that names its answer column.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileLevel {
    value: f64,
    suffix: String,
}

impl QuantileLevel {
    /// Parses `0`, `1`, `0.d…` or `1.0…` (at most [`MAX_DECIMALS`] digits after the point).
    pub fn parse(text: &str) -> Result<Self, LevelError> {
        let refuse = || LevelError {
            text: text.chars().take(40).collect(),
        };
        let (whole, decimals) = text.split_once('.').unwrap_or((text, ""));
        if decimals.len() > MAX_DECIMALS
            || !decimals.bytes().all(|b| b.is_ascii_digit())
            || (text.contains('.') && decimals.is_empty())
        {
            return Err(refuse());
        }
        let suffix = match whole {
            "1" if decimals.bytes().all(|b| b == b'0') => "p100".to_string(),
            "0" => {
                // Percent: the first two decimals, then the rest after `_`.
                let padded = format!("{decimals:0<2}");
                let (percent, rest) = padded.split_at(2);
                let percent = percent.trim_start_matches('0');
                let percent = if percent.is_empty() { "0" } else { percent };
                let rest = rest.trim_end_matches('0');
                if rest.is_empty() {
                    format!("p{percent}")
                } else {
                    format!("p{percent}_{rest}")
                }
            }
            _ => return Err(refuse()),
        };
        let value: f64 = text.parse().map_err(|_| refuse())?;
        Ok(Self { value, suffix })
    }

    /// The levels answered when a reader names none ([`DEFAULT_LEVELS`]).
    pub fn defaults() -> Vec<Self> {
        DEFAULT_LEVELS
            .iter()
            .map(|text| Self::parse(text).expect("the default levels parse"))
            .collect()
    }

    /// q.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The suffix of its answer column: `p50`, `p99`, `p99_9`, `p0_1`, `p100`.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The answer column of this level of the quantile metric stored in `metric_column`.
    pub fn column(&self, metric_column: &str) -> String {
        format!("{metric_column}_{}", self.suffix)
    }

    /// The level named by `column`, when it is `<metric_column>_p…` (the inverse of
    /// [`Self::column`]).
    pub fn of_column(metric_column: &str, column: &str) -> Option<Self> {
        let suffix = column.strip_prefix(metric_column)?.strip_prefix("_p")?;
        let text = match suffix.split_once('_') {
            _ if suffix == "100" => "1".to_string(),
            Some((percent, rest)) => format!("0.{percent:0>2}{rest}"),
            None => format!("0.{suffix:0>2}"),
        };
        Self::parse(&text)
            .ok()
            .filter(|level| level.column(metric_column) == column)
    }
}

impl fmt::Display for QuantileLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_name_their_columns_exactly_and_back() {
        for (text, suffix, value) in [
            ("0.5", "p50", 0.5),
            ("0.50", "p50", 0.5),
            ("0.99", "p99", 0.99),
            ("0.999", "p99_9", 0.999),
            ("0.9999", "p99_99", 0.9999),
            ("0.05", "p5", 0.05),
            ("0.001", "p0_1", 0.001),
            ("0", "p0", 0.0),
            ("0.0", "p0", 0.0),
            ("1", "p100", 1.0),
            ("1.000", "p100", 1.0),
            ("0.29", "p29", 0.29),
        ] {
            let level = QuantileLevel::parse(text).unwrap();
            assert_eq!(level.suffix(), suffix, "{text}");
            assert_eq!(level.value(), value, "{text}");
            let column = level.column("quantile_latency_ms");
            let back = QuantileLevel::of_column("quantile_latency_ms", &column).unwrap();
            assert_eq!(back.suffix(), suffix);
            assert_eq!(back.value(), value, "{column}");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_text() {
        for text in [
            "",
            ".5",
            "0.",
            "1.5",
            "2",
            "-0.5",
            "0.5e0",
            "NaN",
            "inf",
            "0.1234567",
            "0,5",
            " 0.5",
            "0.5\0",
            "１",
        ] {
            let error = QuantileLevel::parse(text).unwrap_err();
            assert!(
                error.to_string().contains("is not a quantile level"),
                "{text}"
            );
        }
        for column in [
            "quantile_latency_ms",
            "quantile_latency_ms_p",
            "quantile_latency_ms_p050",
            "quantile_latency_ms_p101",
            "quantile_latency_ms_p99_90",
            "quantile_latency_ms_px",
            "quantile_other_p50",
        ] {
            assert!(
                QuantileLevel::of_column("quantile_latency_ms", column).is_none(),
                "{column}"
            );
        }
    }
}
