//! Validation: a raw Kafka message becomes a typed [`Record`] or a precise [`Rejection`].
//!
//! Both layers call [`EventSchema::validate`], so they accept and refuse exactly the same
//! messages. Validation never depends on the wall clock.

use chrono::DateTime;

use crate::event_schema::{EventSchema, FieldDef, FieldType};

mod raw;
use raw::FieldsSeed;
pub(crate) use raw::RawValue;

use crate::wire::protobuf::ProtobufError;
use crate::wire::{self, LoadedSchema, WireFormat};

/// A typed field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A `string` field.
    String(String),
    /// An `i64` field.
    I64(i64),
    /// An `f64` field.
    F64(f64),
    /// A `bool` field.
    Bool(bool),
    /// A `timestamp` field, in microseconds since the Unix epoch, UTC.
    Timestamp(i64),
}

/// A valid record: one optional value per schema field, in schema order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Values in the order of [`EventSchema::fields`]; `None` for an absent optional field.
    pub values: Vec<Option<Value>>,
    /// The event time in microseconds since the Unix epoch (copied out for speed).
    pub event_time_micros: i64,
}

impl Record {
    /// The value of field `index`, if present.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index).and_then(Option::as_ref)
    }
}

/// Why a message was refused. Each variant names the field where one is involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The message is larger than `schema.max_record_bytes`.
    #[error("record is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The message size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The payload does not parse as JSON.
    #[error("not JSON: {detail}")]
    NotJson {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// The payload is JSON but not an object.
    #[error("not a JSON object: found {found}")]
    NotObject {
        /// The JSON kind found instead.
        found: &'static str,
    },
    /// A required field is absent or null.
    #[error("missing required field `{field}`")]
    MissingField {
        /// The field name.
        field: String,
    },
    /// A field holds a value of the wrong type.
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// The field name.
        field: String,
        /// What the schema wants.
        expected: &'static str,
        /// What the message holds.
        found: String,
    },
    /// The event-time field is present but cannot be read as an instant.
    #[error("event time `{field}` cannot be parsed: {detail}")]
    BadEventTime {
        /// The event-time field name.
        field: String,
        /// Why it cannot be parsed.
        detail: String,
    },
    /// A string field holds a character that PostgreSQL `text` cannot store (NUL, `\u0000`).
    #[error(
        "field `{field}` holds a NUL character (\\u0000) at byte {at}, which PostgreSQL text cannot store"
    )]
    UnstorableText {
        /// The field name.
        field: String,
        /// The byte position of the first NUL in the decoded string.
        at: usize,
    },
    /// A string field is longer than `schema.max_group_value_bytes` (any string field can be a
    /// group key, and a group key must fit in a PostgreSQL index entry).
    #[error("field `{field}` is {size} bytes, over schema.max_group_value_bytes = {limit}")]
    StringTooLong {
        /// The field name.
        field: String,
        /// The string's length in bytes (UTF-8).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A timestamp field (other than the event time) lies outside the years 1 to 9999, the
    /// range every store (PostgreSQL, Delta, Polars) holds alike.
    #[error(
        "field `{field}` = {value} is outside the storable range [0001-01-01T00:00:00Z, 10000-01-01T00:00:00Z)"
    )]
    TimestampOutOfRange {
        /// The field name.
        field: String,
        /// The value, RFC 3339 or microseconds.
        value: String,
    },
    /// An f64 field's magnitude is at or above 1e200, where sums could overflow to infinity, or
    /// it is not zero and below 1e-200, where an average or a product could underflow to zero
    /// (PostgreSQL raises an error on float overflow and underflow alike).
    #[error(
        "field `{field}` = {value} is outside the accepted magnitudes: 0, or at least 1e-200 and below 1e200 (sums could overflow, averages underflow)"
    )]
    NumberOutOfRange {
        /// The field name.
        field: String,
        /// The value, in scientific notation.
        value: String,
    },
    /// The event time parses but lies outside `[schema.event_time_min, schema.event_time_max)`.
    #[error("event time `{field}` = {value} is outside the accepted range [{min}, {max})")]
    EventTimeOutOfRange {
        /// The event-time field name.
        field: String,
        /// The event time, RFC 3339.
        value: String,
        /// The lower bound, RFC 3339.
        min: String,
        /// The upper bound, RFC 3339.
        max: String,
    },
    /// The payload does not start with Confluent's wire format's magic byte 0 (`schema.format`
    /// is Avro): a producer wrote something else, JSON perhaps, to the topic.
    #[error(
        "the first byte is {found:#04x}, not the wire format's magic byte 0x00 (schema.format expects a schema id and an Avro datum)"
    )]
    WrongMagicByte {
        /// The first byte.
        found: u8,
    },
    /// The payload does not decode by its writer schema: too short for the header, a datum
    /// that ends early or has bytes left over, an invalid union branch, enum symbol or UTF-8.
    #[error("{}does not decode: {detail}", schema_label(*schema_id))]
    Undecodable {
        /// The writer schema's id, when the header was read.
        schema_id: Option<u32>,
        /// Where and why decoding stopped.
        detail: String,
    },
    /// The schema registry has no schema with the payload's id.
    #[error("the schema registry has no schema with id {schema_id}")]
    UnknownSchemaId {
        /// The id the payload names.
        schema_id: u32,
    },
    /// The payload's writer schema does not resolve to the declared fields (a required field
    /// missing, a type that does not convert, not an Avro record).
    #[error("writer schema {schema_id} does not resolve to schema.fields: {detail}")]
    UnresolvableSchema {
        /// The writer schema's id.
        schema_id: u32,
        /// Why it does not resolve.
        detail: String,
    },
    /// The record passed validation, yet PostgreSQL refused to store it (a data error,
    /// SQLSTATE class 22, 23 or 54). Not a validation result: the speed layer isolates the
    /// record after its flush was refused, and the batch layer leaves the same position out.
    #[error("refused by the database: {detail}")]
    RefusedByDatabase {
        /// The database's message, with its SQLSTATE.
        detail: String,
    },
}

impl Rejection {
    /// A stable machine-readable reason code, used in the dead-letter store and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::NotJson { .. } => "not_json",
            Rejection::NotObject { .. } => "not_object",
            Rejection::MissingField { .. } => "missing_field",
            Rejection::WrongType { .. } => "wrong_type",
            Rejection::BadEventTime { .. } => "bad_event_time",
            Rejection::EventTimeOutOfRange { .. } => "event_time_out_of_range",
            Rejection::UnstorableText { .. } => "unstorable_text",
            Rejection::StringTooLong { .. } => "string_too_long",
            Rejection::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            Rejection::NumberOutOfRange { .. } => "number_out_of_range",
            Rejection::WrongMagicByte { .. } => "wrong_magic_byte",
            Rejection::Undecodable { .. } => "undecodable",
            Rejection::UnknownSchemaId { .. } => "unknown_schema_id",
            Rejection::UnresolvableSchema { .. } => "unresolvable_schema",
            Rejection::RefusedByDatabase { .. } => "refused_by_database",
        }
    }

    /// Every reason code validation gives, for metrics that want to pre-register them.
    pub const CODES: [&'static str; 15] = [
        "too_large",
        "not_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "bad_event_time",
        "event_time_out_of_range",
        "unstorable_text",
        "string_too_long",
        "timestamp_out_of_range",
        "number_out_of_range",
        "wrong_magic_byte",
        "undecodable",
        "unknown_schema_id",
        "unresolvable_schema",
    ];

    /// The code of a record the database refused after validation passed it.
    pub const REFUSED_BY_DATABASE: &'static str = "refused_by_database";
}

/// "writer schema N: " for a message naming one, else nothing.
fn schema_label(schema_id: Option<u32>) -> String {
    schema_id
        .map(|id| format!("the datum of writer schema {id} "))
        .unwrap_or_else(|| "the message ".into())
}

/// The earliest timestamp every store holds alike: 0001-01-01T00:00:00Z, in microseconds.
pub const STORABLE_TIME_MIN_MICROS: i64 = -62_135_596_800_000_000;
/// The first timestamp past the storable range: 10000-01-01T00:00:00Z, in microseconds.
pub const STORABLE_TIME_MAX_MICROS: i64 = 253_402_300_800_000_000;
/// f64 values must have a magnitude below this, so that no sum of them can reach infinity.
pub const F64_MAGNITUDE_LIMIT: f64 = 1e200;
/// Non-zero f64 values must have a magnitude at least this. Every double at or above it is a
/// multiple of 2^-717, so any sum of such values is 0 or at least 2^-717 in magnitude; divided
/// by a count (below 2^63) or decayed by up to 2^-600 it stays far from the subnormal range, so
/// no read expression underflows (PostgreSQL raises an error where a float product or quotient
/// rounds to zero). Subnormal values (below 2.2e-308) are refused with it.
pub const F64_MAGNITUDE_FLOOR: f64 = 1e-200;

/// Whether an f64 value is one validation accepts: 0 (either sign), or a finite magnitude in
/// [[`F64_MAGNITUDE_FLOOR`], [`F64_MAGNITUDE_LIMIT`]).
pub fn f64_is_storable(value: f64) -> bool {
    value == 0.0 || (F64_MAGNITUDE_FLOOR..F64_MAGNITUDE_LIMIT).contains(&value.abs())
}
/// The most characters of input a rejection's text quotes.
const QUOTE_MAX_CHARS: usize = 120;

/// Quotes input text inside a rejection's message: control characters (NUL among them) escaped,
/// at most [`QUOTE_MAX_CHARS`] characters, so that the message is always storable and loggable.
pub fn quote_input(text: &str) -> String {
    crate::quote::quote_bounded(text, QUOTE_MAX_CHARS)
}

/// Renders microseconds since the epoch as RFC 3339, or the raw number if out of chrono's range.
pub fn micros_to_rfc3339(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| format!("{micros}µs"))
}

/// Parses a timestamp from an RFC 3339 string or integer epoch milliseconds.
fn parse_timestamp(value: &RawValue<'_>) -> Result<i64, String> {
    match value {
        RawValue::String(text) => crate::rfc3339::parse_micros(text)
            .map_err(|e| format!("`{}` is not RFC 3339 ({e})", quote_input(text))),
        // An Avro timestamp in microseconds (or nanoseconds, or a date), already an instant.
        RawValue::Micros(micros) => Ok(*micros),
        RawValue::I64(_) | RawValue::U64(_) | RawValue::F64(_) => value
            .as_i64()
            .and_then(|millis| millis.checked_mul(1_000))
            .ok_or_else(|| {
                format!(
                    "{} is not an integer number of epoch milliseconds",
                    value.number_text()
                )
            }),
        other => Err(format!(
            "found {}, expected an RFC 3339 string or epoch milliseconds",
            other.kind()
        )),
    }
}

impl EventSchema {
    /// Validates one raw message. Unknown JSON keys are ignored (producers may send more);
    /// when a key repeats, the last value counts.
    pub fn validate(&self, payload: &[u8]) -> Result<Record, Rejection> {
        let mut record = Record::default();
        self.validate_into(payload, &mut record)?;
        Ok(record)
    }

    /// [`EventSchema::validate`] into `record`, reusing its allocations: a string field's value
    /// keeps the capacity of the one before, so a loop that validates into the same records
    /// allocates nothing per record (the ingest loop's validating thread, where memory
    /// allocated on one thread and freed on another cost a fifth of the time). After a
    /// rejection, `record` holds nothing meaningful.
    pub fn validate_into(&self, payload: &[u8], record: &mut Record) -> Result<(), Rejection> {
        use serde::de::DeserializeSeed;
        if payload.len() > self.max_record_bytes {
            return Err(Rejection::TooLarge {
                size: payload.len(),
                limit: self.max_record_bytes,
            });
        }
        match &self.wire {
            WireFormat::Json => {
                let mut deserializer = serde_json::Deserializer::from_slice(payload);
                let fields = FieldsSeed(self)
                    .deserialize(&mut deserializer)
                    .and_then(|fields| deserializer.end().map(|()| fields))
                    .map_err(|e| Rejection::NotJson {
                        detail: e.to_string(),
                    })?
                    .map_err(|found| Rejection::NotObject { found })?;
                self.type_fields(fields, record)
            }
            WireFormat::Avro(schemas) | WireFormat::Protobuf(schemas) => {
                let framed = wire::frame(payload).map_err(|error| match error {
                    wire::FrameError::Empty => Rejection::Undecodable {
                        schema_id: None,
                        detail: "an empty message has no magic byte and schema id".into(),
                    },
                    wire::FrameError::WrongMagicByte(found) => Rejection::WrongMagicByte { found },
                    wire::FrameError::Short(length) => Rejection::Undecodable {
                        schema_id: None,
                        detail: format!(
                            "{length} bytes, shorter than the wire format's {}-byte header",
                            wire::HEADER_BYTES
                        ),
                    },
                })?;
                let schema_id = framed.schema_id;
                // The layers load an id before they validate a message that names it; a
                // caller that did not is told so as an unknown id.
                let loaded = schemas
                    .get(schema_id)
                    .ok_or(Rejection::UnknownSchemaId { schema_id })?;
                match &*loaded {
                    LoadedSchema::Avro(plan) => {
                        let mut fields = Vec::new();
                        plan.decode(framed.body, &mut fields).map_err(|e| {
                            Rejection::Undecodable {
                                schema_id: Some(schema_id),
                                detail: e.0,
                            }
                        })?;
                        self.type_fields(fields, record)
                    }
                    LoadedSchema::Protobuf(plan) => {
                        let mut fields = Vec::new();
                        plan.decode(framed.body, &mut fields)
                            .map_err(|error| match error {
                                ProtobufError::Undecodable(detail) => Rejection::Undecodable {
                                    schema_id: Some(schema_id),
                                    detail,
                                },
                                ProtobufError::Unresolvable(detail) => {
                                    Rejection::UnresolvableSchema { schema_id, detail }
                                }
                            })?;
                        self.type_fields(fields, record)
                    }
                    LoadedSchema::Unresolvable(detail) => Err(Rejection::UnresolvableSchema {
                        schema_id,
                        detail: detail.clone(),
                    }),
                }
            }
        }
    }

    /// Types the declared fields' raw values, whatever format they were read from, with the
    /// same checks for all (so JSON and Avro refuse alike).
    fn type_fields(
        &self,
        fields: Vec<Option<RawValue<'_>>>,
        record: &mut Record,
    ) -> Result<(), Rejection> {
        let values = &mut record.values;
        values.resize(self.fields.len(), None);
        for (index, (field, raw)) in self.fields.iter().zip(fields).enumerate() {
            let raw = match raw {
                None | Some(RawValue::Null) if field.required => {
                    return Err(Rejection::MissingField {
                        field: field.name.clone(),
                    });
                }
                None | Some(RawValue::Null) => {
                    values[index] = None;
                    continue;
                }
                Some(raw) => raw,
            };
            let wrong = |expected: &'static str| Rejection::WrongType {
                field: field.name.clone(),
                expected,
                found: raw.kind().to_string(),
            };
            let value = match field.field_type {
                FieldType::String => match raw.as_text() {
                    Some(text) => {
                        self.check_storable_string(field, text)?;
                        match &mut values[index] {
                            Some(Value::String(kept)) => {
                                kept.clear();
                                kept.push_str(text);
                            }
                            slot => *slot = Some(Value::String(text.to_owned())),
                        }
                        continue;
                    }
                    None => return Err(wrong("a string")),
                },
                FieldType::I64 => {
                    Value::I64(raw.as_i64().ok_or_else(|| wrong("an integer (i64)"))?)
                }
                FieldType::F64 => {
                    let value = raw.as_f64().ok_or_else(|| wrong("a number (f64)"))?;
                    // JSON has no NaN or infinity; serde_json refuses numbers beyond f64.
                    if !f64_is_storable(value) {
                        return Err(Rejection::NumberOutOfRange {
                            field: field.name.clone(),
                            value: format!("{value:e}"),
                        });
                    }
                    // -0.0 and 0.0 compare equal but print apart: min and max would depend on
                    // the order in which each engine meets them.
                    Value::F64(if value == 0.0 { 0.0 } else { value })
                }
                FieldType::Bool => match raw {
                    RawValue::Bool(b) => Value::Bool(b),
                    _ => return Err(wrong("a boolean")),
                },
                FieldType::Timestamp if index == self.event_time_index => {
                    let micros =
                        parse_timestamp(&raw).map_err(|detail| Rejection::BadEventTime {
                            field: field.name.clone(),
                            detail,
                        })?;
                    if micros < self.event_time_min_micros || micros >= self.event_time_max_micros {
                        return Err(Rejection::EventTimeOutOfRange {
                            field: field.name.clone(),
                            value: micros_to_rfc3339(micros),
                            min: micros_to_rfc3339(self.event_time_min_micros),
                            max: micros_to_rfc3339(self.event_time_max_micros),
                        });
                    }
                    Value::Timestamp(micros)
                }
                FieldType::Timestamp => {
                    let micros = parse_timestamp(&raw).map_err(|_| {
                        wrong("a timestamp (RFC 3339 string or epoch milliseconds)")
                    })?;
                    if !(STORABLE_TIME_MIN_MICROS..STORABLE_TIME_MAX_MICROS).contains(&micros) {
                        return Err(Rejection::TimestampOutOfRange {
                            field: field.name.clone(),
                            value: micros_to_rfc3339(micros),
                        });
                    }
                    Value::Timestamp(micros)
                }
            };
            values[index] = Some(value);
        }
        record.event_time_micros = match values[self.event_time_index] {
            Some(Value::Timestamp(micros)) => micros,
            _ => unreachable!(
                "the event-time field is a required timestamp, checked when the schema was built"
            ),
        };
        Ok(())
    }

    /// A string every store can hold: no NUL (PostgreSQL text refuses it), at most
    /// `max_string_bytes` bytes (a group key must fit in an index entry).
    fn check_storable_string(&self, field: &FieldDef, text: &str) -> Result<(), Rejection> {
        if text.len() > self.max_string_bytes {
            return Err(Rejection::StringTooLong {
                field: field.name.clone(),
                size: text.len(),
                limit: self.max_string_bytes,
            });
        }
        if let Some(at) = text.bytes().position(|b| b == 0) {
            return Err(Rejection::UnstorableText {
                field: field.name.clone(),
                at,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> EventSchema {
        let field = |name: &str, field_type, required| FieldDef {
            name: name.into(),
            field_type,
            required,
            path: None,
        };
        EventSchema {
            fields: vec![
                field("ts", FieldType::Timestamp, true),
                field("user", FieldType::String, true),
                field("qty", FieldType::I64, true),
                field("price", FieldType::F64, false),
                field("member", FieldType::Bool, false),
                field("seen_at", FieldType::Timestamp, false),
            ],
            event_time_index: 0,
            max_record_bytes: 200,
            max_string_bytes: 16,
            event_time_min_micros: 946_684_800_000_000, // 2000-01-01
            event_time_max_micros: 4_102_444_800_000_000, // 2100-01-01
            wire: Default::default(),
        }
    }

    #[test]
    fn validating_into_a_reused_record_equals_validating_afresh() {
        let schema = schema();
        let payloads = [
            r#"{"ts":"2026-01-01T00:00:00Z","user":"a-long-user-name","qty":1,"price":2.5,"member":true,"seen_at":1}"#,
            r#"{"ts":"2026-01-01T00:00:01Z","user":"b","qty":2}"#,
            "not json",
            r#"{"ts":"2026-01-01T00:00:02Z","user":"x\u0000","qty":3}"#,
            r#"{"ts":"2026-01-01T00:00:03Z","user":"ccc","qty":-4,"seen_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"ts":"2026-01-01T00:00:04Z","user":"","qty":5,"price":null,"member":false}"#,
            "",
            r#"{"ts":"2026-01-01T00:00:05Z","user":"d","qty":9223372036854775807,"price":1e199}"#,
        ];
        let mut reused = Record::default();
        for payload in payloads {
            let afresh = schema.validate(payload.as_bytes());
            let into = schema.validate_into(payload.as_bytes(), &mut reused);
            match afresh {
                Ok(record) => {
                    assert_eq!(into, Ok(()), "{payload}");
                    assert_eq!(reused, record, "{payload}");
                }
                Err(rejection) => assert_eq!(into, Err(rejection), "{payload}"),
            }
        }
    }

    #[test]
    fn accepts_a_valid_record_with_typed_values() {
        let record = schema()
            .validate(br#"{"ts":"2026-01-01T00:00:01Z","user":"u1","qty":3,"price":2,"member":true,"extra":[1]}"#)
            .unwrap();
        assert_eq!(record.event_time_micros, 1_767_225_601_000_000);
        assert_eq!(record.get(1), Some(&Value::String("u1".into())));
        assert_eq!(record.get(2), Some(&Value::I64(3)));
        assert_eq!(record.get(3), Some(&Value::F64(2.0)));
        assert_eq!(record.get(4), Some(&Value::Bool(true)));
        assert_eq!(record.get(5), None);
    }

    #[test]
    fn accepts_epoch_milliseconds_and_offsets() {
        let s = schema();
        let a = s
            .validate(br#"{"ts":1767225601000,"user":"u","qty":1}"#)
            .unwrap();
        let b = s
            .validate(br#"{"ts":"2026-01-01T01:00:01+01:00","user":"u","qty":1}"#)
            .unwrap();
        assert_eq!(a.event_time_micros, b.event_time_micros);
    }

    fn reject(payload: &[u8]) -> Rejection {
        schema().validate(payload).unwrap_err()
    }

    #[test]
    fn each_rejection_reason_is_precise() {
        let too_large = reject(&[b' '; 201]);
        assert_eq!(
            too_large,
            Rejection::TooLarge {
                size: 201,
                limit: 200
            }
        );
        assert_eq!(too_large.code(), "too_large");

        let not_json = reject(b"{\"ts\": ");
        assert_eq!(not_json.code(), "not_json");
        assert!(not_json.to_string().contains("line 1"), "{not_json}");

        assert_eq!(reject(b"[1,2]"), Rejection::NotObject { found: "an array" });
        assert_eq!(
            reject(b"\"text\""),
            Rejection::NotObject { found: "a string" }
        );
        assert_eq!(reject(b"{} {}").code(), "not_json", "trailing data");
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1"#).code(),
            "not_json",
            "truncated"
        );

        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","qty":1}"#),
            Rejection::MissingField {
                field: "user".into()
            }
        );
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":null,"qty":1}"#),
            Rejection::MissingField {
                field: "user".into()
            }
        );

        let wrong = reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1.5}"#);
        assert_eq!(
            wrong,
            Rejection::WrongType {
                field: "qty".into(),
                expected: "an integer (i64)",
                found: "a fractional number".into()
            }
        );
        assert_eq!(
            wrong.to_string(),
            "field `qty` must be an integer (i64), found a fractional number"
        );
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":7,"qty":1}"#).code(),
            "wrong_type"
        );
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1,"member":"yes"}"#).code(),
            "wrong_type"
        );
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1,"seen_at":"soon"}"#).code(),
            "wrong_type"
        );

        let bad_time = reject(br#"{"ts":"yesterday","user":"u","qty":1}"#);
        assert!(
            matches!(&bad_time, Rejection::BadEventTime { field, .. } if field == "ts"),
            "{bad_time:?}"
        );
        assert_eq!(
            reject(br#"{"ts":true,"user":"u","qty":1}"#).code(),
            "bad_event_time"
        );

        let far_past = reject(br#"{"ts":"1970-01-01T00:00:00Z","user":"u","qty":1}"#);
        assert_eq!(far_past.code(), "event_time_out_of_range");
        assert!(
            far_past.to_string().contains("1970-01-01T00:00:00+00:00"),
            "{far_past}"
        );
        assert_eq!(
            reject(br#"{"ts":"2100-01-01T00:00:00Z","user":"u","qty":1}"#).code(),
            "event_time_out_of_range"
        );
    }

    #[test]
    fn escaped_keys_repeated_keys_and_unknown_keys() {
        let record = schema()
            .validate(br#"{"t\u0073":"2026-01-01T00:00:01Z","user":"a","user":"b","qty":1,"nested":{"x":[1,{"y":2}]}}"#)
            .unwrap();
        assert_eq!(
            record.get(1),
            Some(&Value::String("b".into())),
            "the last value of a repeated key counts"
        );
        assert_eq!(
            record.event_time_micros, 1_767_225_601_000_000,
            "an escaped key still names the field"
        );
    }

    #[test]
    fn what_a_store_would_refuse_is_refused_with_the_field_named() {
        let nul = reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"a\u0000b","qty":1}"#);
        assert_eq!(
            nul,
            Rejection::UnstorableText {
                field: "user".into(),
                at: 1
            }
        );
        assert_eq!(nul.code(), "unstorable_text");
        let long = reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"12345678901234567","qty":1}"#);
        assert_eq!(long.code(), "string_too_long");
        assert!(
            long.to_string().contains("schema.max_group_value_bytes"),
            "{long}"
        );
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1,"price":1e200}"#).code(),
            "number_out_of_range"
        );
        // Below the floor, subnormals included: an average or a decayed product could round
        // to zero, which PostgreSQL raises as an error for every reader of the row.
        for tiny in [
            "5e-324",
            "-5e-324",
            "2.2250738585072009e-308",
            "1e-300",
            "9.99e-201",
        ] {
            let payload =
                format!(r#"{{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1,"price":{tiny}}}"#);
            let refused = reject(payload.as_bytes());
            assert_eq!(refused.code(), "number_out_of_range", "{tiny}");
            assert!(refused.to_string().contains("`price`"), "{refused}");
        }
        for kept in ["1e-200", "-1e-200", "0", "-0.0", "2.5", "-9.99e199"] {
            let payload =
                format!(r#"{{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1,"price":{kept}}}"#);
            assert!(schema().validate(payload.as_bytes()).is_ok(), "{kept}");
        }
        assert_eq!(
            reject(
                br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1,"seen_at":-62135596800001}"#
            )
            .code(),
            "timestamp_out_of_range"
        );
        assert_eq!(
            reject(
                br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1,"seen_at":253402300800000}"#
            )
            .code(),
            "timestamp_out_of_range"
        );
        // A NUL in the event-time text is quoted escaped, so the reason is always storable.
        let time = reject(b"{\"ts\":\"2026\\u0000x\",\"user\":\"u\",\"qty\":1}");
        assert_eq!(time.code(), "bad_event_time");
        assert!(
            !time.to_string().contains('\0') && time.to_string().contains("\\u{0}"),
            "{time}"
        );
        // Lone surrogates never reach a store: serde_json refuses them.
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"\ud800","qty":1}"#).code(),
            "not_json"
        );
    }

    #[test]
    fn numbers_and_nested_values_read_as_serde_json_reads_them() {
        // An integer above i64::MAX is an integer, not an i64; as an f64 it is read.
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":9223372036854775808}"#),
            Rejection::WrongType {
                field: "qty".into(),
                expected: "an integer (i64)",
                found: "an integer".into()
            }
        );
        let big = schema()
            .validate(
                br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":1,"price":18446744073709551615}"#,
            )
            .unwrap();
        assert_eq!(big.get(3), Some(&Value::F64(18_446_744_073_709_551_615.0)));
        // Epoch milliseconds that are not an integer are quoted as serde_json prints them.
        for (ts, shown) in [
            ("1.5e3", "1500.0"),
            ("18446744073709551615", "18446744073709551615"),
        ] {
            let payload = format!(r#"{{"ts":{ts},"user":"u","qty":1}}"#);
            let rejection = reject(payload.as_bytes());
            assert_eq!(
                rejection,
                Rejection::BadEventTime {
                    field: "ts".into(),
                    detail: format!("{shown} is not an integer number of epoch milliseconds"),
                }
            );
        }
        // Arrays and objects in a declared field: the wrong type, named; what is inside them
        // is still parsed in full (a lone surrogate there is not JSON).
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":{"a":[1,{"b":null}]},"qty":1}"#),
            Rejection::WrongType {
                field: "user".into(),
                expected: "a string",
                found: "an object".into()
            }
        );
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":"u","qty":[1]}"#),
            Rejection::WrongType {
                field: "qty".into(),
                expected: "an integer (i64)",
                found: "an array".into()
            }
        );
        assert_eq!(
            reject(br#"{"ts":"2026-01-01T00:00:00Z","user":["\ud800"],"qty":1}"#).code(),
            "not_json"
        );
        // An escaped string (not borrowed from the payload) is read like a plain one.
        let escaped = schema()
            .validate(br#"{"ts":"2026-01-01T00:00:00\u005a","user":"\u00e9","qty":1}"#)
            .unwrap();
        assert_eq!(escaped.get(1), Some(&Value::String("é".into())));
        assert_eq!(escaped.event_time_micros, 1_767_225_600_000_000);
    }

    #[test]
    fn storable_values_are_kept_and_negative_zero_is_zero() {
        let record = schema()
            .validate(br#"{"ts":"2026-01-01T00:00:00Z","user":"\u0001\t\"","qty":-9223372036854775808,"price":-0.0,"seen_at":-62135596800000}"#)
            .unwrap();
        assert_eq!(record.get(1), Some(&Value::String("\u{1}\t\"".into())));
        assert_eq!(record.get(2), Some(&Value::I64(i64::MIN)));
        match record.get(3) {
            Some(Value::F64(x)) => assert!(x.to_bits() == 0.0f64.to_bits()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            record.get(5),
            Some(&Value::Timestamp(STORABLE_TIME_MIN_MICROS))
        );
    }

    #[test]
    fn codes_are_listed() {
        assert_eq!(Rejection::CODES.len(), 15);
        assert!(Rejection::CODES.contains(&reject(b"x").code()));
    }
}
