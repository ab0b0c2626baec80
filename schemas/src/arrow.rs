//! The Delta table's Arrow schema, derived from the event schema.
//!
//! Columns: the schema's typed fields (in declaration order), then `event_date` (the
//! partition column, the UTC date of the event time), then the lineage columns `_topic`,
//! `_partition`, `_offset`, `_ingested_at` and `_key` (the Kafka message key, nullable; added
//! to older tables as a nullable column).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::event_schema::{EventSchema, FieldType};

/// The partition column: the UTC date of the event time.
pub const EVENT_DATE: &str = "event_date";
/// Lineage: the Kafka topic.
pub const TOPIC: &str = "_topic";
/// Lineage: the Kafka partition.
pub const PARTITION: &str = "_partition";
/// Lineage: the Kafka offset.
pub const OFFSET: &str = "_offset";
/// Lineage: when the sink wrote the record.
pub const INGESTED_AT: &str = "_ingested_at";
/// The Kafka message key (binary, null when the message had none).
pub const KEY: &str = "_key";

/// Names that declared fields may not take, because the derived columns use them.
pub const RESERVED_COLUMNS: [&str; 6] = [EVENT_DATE, TOPIC, PARTITION, OFFSET, INGESTED_AT, KEY];

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow type of a declared field.
pub fn arrow_type(field_type: FieldType) -> DataType {
    match field_type {
        FieldType::String => DataType::Utf8,
        FieldType::I64 => DataType::Int64,
        FieldType::F64 => DataType::Float64,
        FieldType::Bool => DataType::Boolean,
        FieldType::Timestamp => utc_micros(),
    }
}

impl EventSchema {
    /// The Arrow schema of the Delta table.
    pub fn delta_arrow_schema(&self) -> Arc<Schema> {
        let mut fields: Vec<Field> = self
            .fields
            .iter()
            .map(|f| Field::new(&f.name, arrow_type(f.field_type), !f.required))
            .collect();
        fields.push(Field::new(EVENT_DATE, DataType::Date32, false));
        fields.push(Field::new(TOPIC, DataType::Utf8, false));
        fields.push(Field::new(PARTITION, DataType::Int32, false));
        fields.push(Field::new(OFFSET, DataType::Int64, false));
        fields.push(Field::new(INGESTED_AT, utc_micros(), false));
        fields.push(Field::new(KEY, DataType::Binary, true));
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_schema::FieldDef;

    #[test]
    fn typed_fields_then_partition_then_lineage() {
        let schema = EventSchema {
            fields: vec![
                FieldDef {
                    name: "ts".into(),
                    field_type: FieldType::Timestamp,
                    required: true,
                    path: None,
                },
                FieldDef {
                    name: "n".into(),
                    field_type: FieldType::I64,
                    required: false,
                    path: None,
                },
            ],
            event_time_index: 0,
            max_record_bytes: 10,
            max_string_bytes: 16,
            event_time_min_micros: 0,
            event_time_max_micros: 1,
            wire: Default::default(),
        };
        let arrow = schema.delta_arrow_schema();
        let names: Vec<_> = arrow.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "ts",
                "n",
                "event_date",
                "_topic",
                "_partition",
                "_offset",
                "_ingested_at",
                "_key"
            ]
        );
        assert_eq!(arrow.field(0).data_type(), &utc_micros());
        assert!(!arrow.field(0).is_nullable());
        assert_eq!(arrow.field(1).data_type(), &DataType::Int64);
        assert!(arrow.field(1).is_nullable());
        assert_eq!(arrow.field(4).data_type(), &DataType::Int32);
    }
}
