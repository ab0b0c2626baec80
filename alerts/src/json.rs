//! Alerts as JSON: an instance and a transition as the API, the CLI and the notifications show
//! them, and a window row's value as a label.

use chrono::{DateTime, SecondsFormat, Utc};
use merged_read::CellValue;
use serde_json::{Value, json};

use crate::store::{Instance, Transition};

/// A time as alerts show it: RFC 3339 UTC with milliseconds.
pub fn time_json(t: DateTime<Utc>) -> Value {
    json!(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Parses a stored JSON column (written by Braid, so always JSON).
pub fn stored_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// An instance and its state.
pub fn instance_json(i: &Instance) -> Value {
    json!({
        "rule": i.rule,
        "fingerprint": i.fingerprint,
        "labels": stored_json(&i.labels),
        "state": i.state.as_str(),
        "value": i.value,
        "active_since": i.active_since.map(time_json),
        "last_true_at": i.last_true_at.map(time_json),
        "evaluated_at": time_json(i.evaluated_at),
        "last_transition_id": i.last_transition_id,
    })
}

/// A transition with the value, threshold, window and provenance it was evaluated on, and its
/// deliveries.
pub fn transition_json(t: &Transition) -> Value {
    let e = &t.evaluation;
    json!({
        "id": t.id,
        "rule": e.rule,
        "fingerprint": t.fingerprint,
        "labels": stored_json(&t.labels),
        "from": t.from.as_str(),
        "to": t.to.as_str(),
        "value": t.value,
        "metric": e.metric,
        "op": e.op,
        "threshold": e.threshold,
        "window_start": time_json(e.window_start),
        "window_end": time_json(e.window_end),
        "provenance": { "batch": e.batch.as_deref().map(stored_json), "speed": stored_json(&e.speed) },
        "at": time_json(e.at),
        "deliveries": stored_json(&t.deliveries),
    })
}

/// A window row's value as a label: as the API writes it in an answer's JSON, so that an
/// instance's labels (and so its fingerprint) are those the API's rows show.
pub fn label_json(value: &CellValue) -> Value {
    match value {
        CellValue::Null => Value::Null,
        CellValue::Int(v) => json!(v),
        // Through the text the API writes, as labels always were, so that fingerprints of
        // instances keyed by a float stay what they were.
        CellValue::Float(v) => serde_json::to_string(v)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null),
        CellValue::IntegerSum(v) => serde_json::from_str(v).unwrap_or(Value::Null),
        CellValue::Bool(v) => json!(v),
        CellValue::Time(v) => json!(v.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        CellValue::Text(v) => json!(v),
        CellValue::Json(v) => serde_json::from_str(v).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn labels_are_the_values_the_api_writes_for_the_same_cells() {
        let time = Utc.timestamp_micros(1_772_361_000_123_400).unwrap();
        for (cell, written) in [
            (CellValue::Null, "null"),
            (CellValue::Int(-7), "-7"),
            (CellValue::Float(0.1), "0.1"),
            (CellValue::Float(f64::NAN), "null"),
            (CellValue::IntegerSum("-12".into()), "-12"),
            (CellValue::Bool(true), "true"),
            (CellValue::Time(time), "\"2026-03-01T10:30:00.123400Z\""),
            (CellValue::Text("it's \"DE\"".into()), "\"it's \\\"DE\\\"\""),
        ] {
            assert_eq!(label_json(&cell).to_string(), written, "{cell:?}");
        }
    }
}
