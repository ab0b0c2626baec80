//! Records of the configured topic read back from the Delta table for republishing: position, key and a JSON payload
//! re-encoded from the stored fields (declared fields only, in schema order; absent optional
//! fields are left out; timestamps in RFC 3339 UTC).

use chrono::{DateTime, SecondsFormat, Utc};
use polars::prelude::*;
use schemas::FieldType;
use schemas::arrow::{KEY, OFFSET, PARTITION};
use serde_json::{Map, Value};

use super::{Lake, LakeError};
use schemas::position::{Offset, Partition};

/// One record of the lake.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeRecord {
    /// Source partition.
    pub partition: Partition,
    /// Source offset.
    pub offset: Offset,
    /// The Kafka key the record arrived with.
    pub key: Option<Vec<u8>>,
    /// The record as JSON.
    pub payload: Vec<u8>,
}

/// What [`Lake::records_between`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsRead {
    /// The table version read (-1: the table has no version yet).
    pub version: i64,
    /// The records, ordered by partition and offset.
    pub records: Vec<LakeRecord>,
}

impl Lake {
    /// The records with `from ≤ event time < to` in the table's latest version.
    pub async fn records_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<RecordsRead, LakeError> {
        let table = self.open().await?;
        let pinned = self.pinned(&table)?;
        let version = pinned.version.unwrap_or(-1);
        let schema = self.schema().clone();
        let records = tokio::task::spawn_blocking(move || {
            if pinned.is_empty() {
                return Ok(Vec::new());
            }
            read_between(&pinned, &schema, from, to)
        })
        .await??;
        Ok(RecordsRead { version, records })
    }
}

/// The records of `pinned` with `from ≤ event time < to`, ordered by partition and offset,
/// their payload re-encoded as JSON of `schema`'s fields.
fn read_between(
    pinned: &super::PinnedFiles,
    schema: &schemas::EventSchema,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<LakeRecord>, LakeError> {
    let event_time = col(schema.event_time_field().name.as_str()).cast(DataType::Int64);
    let mut wanted: Vec<Expr> = schema.fields.iter().map(|f| col(f.name.as_str())).collect();
    wanted.extend([col(PARTITION), col(OFFSET), col(KEY)]);
    let frame = pinned
        .scan()?
        .filter(
            event_time
                .clone()
                .gt_eq(lit(from.timestamp_micros()))
                .and(event_time.lt(lit(to.timestamp_micros()))),
        )
        .select(wanted)
        .sort([PARTITION, OFFSET], SortMultipleOptions::default())
        .collect()?;
    let mut records = Vec::with_capacity(frame.height());
    let columns = frame.columns();
    let fields = schema.fields.len();
    for row in 0..frame.height() {
        let mut object = Map::new();
        for (field, column) in schema.fields.iter().zip(&columns[..fields]) {
            let value = match (field.field_type, column.get(row)?) {
                (_, AnyValue::Null) => continue,
                (FieldType::Timestamp, AnyValue::Datetime(v, unit, _)) => {
                    let micros = match unit {
                        TimeUnit::Nanoseconds => v / 1_000,
                        TimeUnit::Microseconds => v,
                        TimeUnit::Milliseconds => v * 1_000,
                    };
                    Value::from(
                        DateTime::<Utc>::from_timestamp_micros(micros)
                            .unwrap_or_default()
                            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    )
                }
                (_, AnyValue::String(s)) => Value::from(s),
                (_, AnyValue::StringOwned(s)) => Value::from(s.as_str()),
                (_, AnyValue::Int64(v)) => Value::from(v),
                (_, AnyValue::Float64(v)) => Value::from(v),
                (_, AnyValue::Boolean(v)) => Value::from(v),
                (_, other) => Value::from(other.to_string()),
            };
            object.insert(field.name.clone(), value);
        }
        let partition = columns[fields].get(row)?.extract::<i32>().unwrap_or(-1);
        let offset = columns[fields + 1].get(row)?.extract::<i64>().unwrap_or(-1);
        let key = match columns[fields + 2].get(row)? {
            AnyValue::Binary(k) => Some(k.to_vec()),
            AnyValue::BinaryOwned(k) => Some(k),
            _ => None,
        };
        records.push(LakeRecord {
            partition,
            offset,
            key,
            payload: serde_json::to_vec(&object).unwrap_or_default(),
        });
    }
    Ok(records)
}
