//! RFC 3339 timestamps, read fast in their common UTC form and by chrono otherwise.
//!
//! Producers mostly write event times as `YYYY-MM-DDTHH:MM:SS[.fraction]Z`. chrono's general
//! parser took a measurable share of validation for that one form, so it is read here directly;
//! anything else (offsets, a lower-case `t` or `z`, a space, a leap second, any irregularity)
//! goes to chrono, and the two agree wherever the fast form applies (tested below).

use chrono::DateTime;

/// Microseconds since the Unix epoch of an RFC 3339 timestamp, or chrono's parse error.
pub fn parse_micros(text: &str) -> Result<i64, chrono::ParseError> {
    match utc_micros(text.as_bytes()) {
        Some(micros) => Ok(micros),
        None => DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_micros()),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.d{1,9}]Z` with a valid date and a time below 24:00:00, or `None`.
fn utc_micros(text: &[u8]) -> Option<i64> {
    if text.len() < 20 || text[4] != b'-' || text[7] != b'-' || text[10] != b'T' {
        return None;
    }
    if text[13] != b':' || text[16] != b':' || *text.last()? != b'Z' {
        return None;
    }
    let year = digits(&text[0..4])?;
    let month = digits(&text[5..7])?;
    let day = digits(&text[8..10])?;
    let hour = digits(&text[11..13])?;
    let minute = digits(&text[14..16])?;
    let second = digits(&text[17..19])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let nanos = match &text[19..text.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)? * 10_i64.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000_000 + nanos / 1_000)
}

/// The number an ASCII digit string spells, or `None` if any byte is not a digit.
fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0_i64, |number, &byte| {
        byte.is_ascii_digit()
            .then(|| number * 10 + i64::from(byte - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_micros(text: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros())
    }

    #[test]
    fn the_fast_form_agrees_with_chrono_on_every_day_of_years_0_to_9999() {
        use chrono::Datelike;
        let mut day = chrono::NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
        let last = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        let mut checked = 0;
        while day <= last {
            let text = format!(
                "{:04}-{:02}-{:02}T23:59:59.999999Z",
                day.year(),
                day.month(),
                day.day()
            );
            let expected = day.and_hms_micro_opt(23, 59, 59, 999_999).unwrap();
            assert_eq!(
                utc_micros(text.as_bytes()),
                Some(expected.and_utc().timestamp_micros()),
                "{text}"
            );
            day = day.succ_opt().unwrap();
            checked += 1;
        }
        assert_eq!(checked, 3_652_425);
        assert_eq!(
            utc_micros(b"0000-01-01T00:00:00Z"),
            chrono_micros("0000-01-01T00:00:00Z")
        );
    }

    #[test]
    fn the_fast_form_agrees_with_chrono_or_leaves_the_text_to_it() {
        // Every timestamp near the fast form: valid ones and each kind of irregularity.
        let mut texts = Vec::new();
        for date in [
            "2026-12-02",
            "2024-02-29",
            "2023-02-29",
            "2100-02-29",
            "2000-02-29",
            "1969-12-31",
            "0000-01-01",
            "9999-12-31",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-01-00",
            "20a6-01-01",
            "2026-1-01",
            "+2026-01-01",
            "2026/01/01",
        ] {
            for time in [
                "00:00:00", "23:59:59", "24:00:00", "23:60:00", "23:59:60", "12:34:56", "1:23:45",
                "12:34", "-1:00:00",
            ] {
                for fraction in [
                    "",
                    ".",
                    ".1",
                    ".123",
                    ".123456",
                    ".123456789",
                    ".1234567891",
                    ".12a",
                    ",5",
                ] {
                    for (separator, zone) in [
                        ("T", "Z"),
                        ("t", "Z"),
                        (" ", "Z"),
                        ("T", "z"),
                        ("T", "+00:00"),
                        ("T", "-07:30"),
                        ("T", ""),
                        ("T", "ZZ"),
                    ] {
                        texts.push(format!("{date}{separator}{time}{fraction}{zone}"));
                    }
                }
            }
        }
        texts.extend(
            [
                "",
                "Z",
                "2026-12-02T19:00:00.000Z\0",
                "２026-12-02T19:00:00Z",
            ]
            .map(String::from),
        );
        let mut fast = 0;
        for text in &texts {
            if let Some(micros) = utc_micros(text.as_bytes()) {
                fast += 1;
                assert_eq!(Some(micros), chrono_micros(text), "{text:?}");
            }
            assert_eq!(parse_micros(text).ok(), chrono_micros(text), "{text:?}");
        }
        assert!(fast > 50, "the fast form was taken {fast} times");
    }
}
