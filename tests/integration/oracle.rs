//! An independent computation of the demo views, written without Braid's validator or view
//! code: plain serde_json and a fold. Integration tests compare Braid's answers against it.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde_json::Value;

/// One message as read from Kafka.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Headers (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A group key rendered as text (NULL as `None`) and a bucket start in microseconds.
pub type Key = (Vec<Option<String>>, i64);

/// Metric values in the view's order; `None` for a min/max over no values. i128, so that sums
/// of extreme i64 values are folded exactly.
pub type Metrics = Vec<Option<i128>>;

/// The expected rows of one view.
pub type ViewRows = BTreeMap<Key, Metrics>;

const MAX_STRING_BYTES: usize = 512; // schema.max_group_value_bytes
const MIN_TIME: i64 = 946_684_800_000_000; // 2000-01-01
const MAX_TIME: i64 = 4_102_444_800_000_000; // 2100-01-01

/// Why the demo schema refuses a payload, decided independently; `None` if it is valid.
pub fn refusal(payload: &[u8]) -> Option<&'static str> {
    if payload.len() > 65_536 {
        return Some("too_large");
    }
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return Some("not_json");
    };
    let Some(object) = value.as_object() else {
        return Some("not_object");
    };
    let present = |name: &str| object.get(name).filter(|v| !v.is_null());
    for (name, kind) in [
        ("event_id", "string"),
        ("ts", "time"),
        ("event_type", "string"),
        ("user_id", "string"),
        ("page", "string"),
        ("country", "string"),
        ("device", "string"),
        ("price_cents", "int?"),
        ("duration_ms", "int?"),
        ("is_new_user", "bool?"),
    ] {
        let Some(v) = present(name) else {
            if kind.ends_with('?') {
                continue;
            }
            return Some("missing_field");
        };
        match kind {
            "string" if !v.is_string() => return Some("wrong_type"),
            "string" if v.as_str().unwrap().len() > MAX_STRING_BYTES => {
                return Some("string_too_long");
            }
            "string" if v.as_str().unwrap().contains('\0') => return Some("unstorable_text"),
            "int?" if v.as_i64().is_none() => return Some("wrong_type"),
            "bool?" if !v.is_boolean() => return Some("wrong_type"),
            "time" => match event_time(v) {
                None => return Some("bad_event_time"),
                Some(t) if !(MIN_TIME..MAX_TIME).contains(&t) => {
                    return Some("event_time_out_of_range");
                }
                Some(_) => {}
            },
            _ => {}
        }
    }
    None
}

/// A demo event's time in microseconds (RFC 3339 text or epoch milliseconds).
pub fn event_time(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_micros()),
        Value::Number(n) => n.as_i64().and_then(|ms| ms.checked_mul(1000)),
        _ => None,
    }
}

/// A string field.
pub fn text(object: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    object.get(name).and_then(Value::as_str).map(str::to_string)
}

/// An i64 field.
pub fn int(object: &serde_json::Map<String, Value>, name: &str) -> Option<i128> {
    object.get(name).and_then(Value::as_i64).map(i128::from)
}

/// The start of the bucket of `seconds` holding `micros`.
pub fn bucket(micros: i64, seconds: i64) -> i64 {
    micros.div_euclid(seconds * 1_000_000) * seconds * 1_000_000
}

fn fold(
    rows: &mut ViewRows,
    key: Key,
    count: bool,
    sums: &[Option<i128>],
    mins: &[Option<i128>],
    maxs: &[Option<i128>],
    present: &[Option<i128>],
) {
    let entry = rows.entry(key).or_insert_with(|| {
        let mut v = vec![Some(0)];
        v.extend(sums.iter().map(|_| Some(0)));
        v.extend(mins.iter().map(|_| None));
        v.extend(maxs.iter().map(|_| None));
        v.extend(present.iter().map(|_| Some(0)));
        v
    });
    let mut i = 0;
    if count {
        entry[0] = entry[0].map(|c| c + 1);
        i = 1;
    }
    for s in sums {
        entry[i] = Some(entry[i].unwrap() + s.unwrap_or(0));
        i += 1;
    }
    for m in mins {
        entry[i] = match (entry[i], *m) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        i += 1;
    }
    for m in maxs {
        entry[i] = match (entry[i], *m) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        i += 1;
    }
    for p in present {
        if p.is_some() {
            entry[i] = entry[i].map(|c| c + 1);
        }
        i += 1;
    }
}

/// The demo views over the valid messages, keyed by view name (unique_visitors and
/// trending_pages are checked against PostgreSQL's sketches and a float fold in serving::distinct
/// and serving::decayed). Metric order follows
/// braid.toml: page_views [count, sum, max, count(f)], purchases_by_country [count, sum, min,
/// max, count(f)], events_by_type [count].
pub fn demo_views<'a>(
    messages: impl IntoIterator<Item = &'a RawMessage>,
) -> BTreeMap<&'static str, ViewRows> {
    let mut views: BTreeMap<&'static str, ViewRows> =
        ["page_views", "purchases_by_country", "events_by_type"]
            .into_iter()
            .map(|v| (v, ViewRows::new()))
            .collect();
    for message in messages {
        if refusal(&message.payload).is_some() {
            continue;
        }
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        let o = value.as_object().unwrap();
        let ts = event_time(&o["ts"]).unwrap();
        let event_type = text(o, "event_type").unwrap();
        if event_type == "page_view" {
            let d = int(o, "duration_ms");
            fold(
                views.get_mut("page_views").unwrap(),
                (vec![text(o, "page")], bucket(ts, 60)),
                true,
                &[d],
                &[],
                &[d],
                &[d],
            );
        }
        if event_type == "purchase" {
            let p = int(o, "price_cents");
            let key = (vec![text(o, "country"), text(o, "device")], bucket(ts, 60));
            fold(
                views.get_mut("purchases_by_country").unwrap(),
                key,
                true,
                &[p],
                &[p],
                &[p],
                &[p],
            );
        }
        fold(
            views.get_mut("events_by_type").unwrap(),
            (vec![Some(event_type)], bucket(ts, 10)),
            true,
            &[],
            &[],
            &[],
            &[],
        );
    }
    views
}

#[test]
fn the_oracle_agrees_with_the_generator_about_validity() {
    let config =
        schemas::BraidConfig::load_from(Some(("braid.toml", include_str!("../../braid.toml"))), [])
            .unwrap();
    let mut stream = braid::generate::Clickstream::new(braid::generate::ClickstreamOptions {
        seed: 11,
        late_fraction: 0.1,
        malformed_fraction: 0.3,
        hostile_fraction: 0.3,
    });
    for i in 0..3_000 {
        let message = stream.next_message(1_767_225_600_000_000 + i * 1_000);
        assert_eq!(refusal(&message.payload), message.malformed, "message {i}");
        assert_eq!(
            config
                .schema
                .validate(&message.payload)
                .err()
                .map(|r| r.code()),
            message.malformed
        );
    }
}

/// The demo views the oracle folds: name, group fields, metric columns.
pub const DEMO_VIEW_COLUMNS: [(&str, &[&str], &[&str]); 3] = [
    (
        "page_views",
        &["page"],
        &[
            "count",
            "sum_duration_ms",
            "max_duration_ms",
            "count_duration_ms",
        ],
    ),
    (
        "purchases_by_country",
        &["country", "device"],
        &[
            "count",
            "sum_price_cents",
            "min_price_cents",
            "max_price_cents",
            "count_price_cents",
        ],
    ),
    ("events_by_type", &["event_type"], &["count"]),
];
