//! Where an answer comes from: the active batch run, and the speed layer's positions and
//! freshness, read in the same snapshot as the rows; plus the offset lag from Kafka's
//! last known high watermarks.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::ApiError;
use super::kafka_watch::KafkaStatus;

/// The merge every answer follows.
pub const MERGE_RULE: &str = "rows of the active batch run ⊕ speed rows with epoch ≥ its covered_epoch (all speed rows before the first batch run)";

fn parse(text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::Internal(format!("provenance JSON: {e}")))
}

/// The speed state (as rendered by `merged_read::speed_state_sql`) with lags added.
pub fn speed(text: &str, kafka: &KafkaStatus, now: DateTime<Utc>) -> Result<Value, ApiError> {
    let mut speed = parse(text)?;
    let newest = speed["newest_event_time"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    speed["event_lag_seconds"] = newest
        .map(|t| json!((now - t.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0))
        .unwrap_or(Value::Null);
    let offset_lag = kafka.reachable.then(|| {
        let positions = speed["positions"].as_array().cloned().unwrap_or_default();
        kafka
            .high_watermarks
            .iter()
            .map(|(partition, high)| {
                let next = positions
                    .iter()
                    .find(|p| p["partition"].as_i64() == Some(i64::from(*partition)))
                    .and_then(|p| p["next_offset"].as_i64())
                    .unwrap_or(0);
                (high - next).max(0)
            })
            .sum::<i64>()
    });
    speed["offset_lag"] = json!(offset_lag);
    speed["offset_lag_measured_at"] = json!(kafka.checked_at.map(|t| t.to_rfc3339()));
    Ok(speed)
}

/// The provenance object of an answer.
pub fn of_answer(
    batch: Option<&str>,
    speed_text: &str,
    kafka: &KafkaStatus,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    Ok(json!({
        "batch": batch.map(parse).transpose()?,
        "speed": speed(speed_text, kafka, now)?,
        "merge": MERGE_RULE,
    }))
}
