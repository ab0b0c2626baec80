//! One declared field's value as read from a payload, before it is typed: what the JSON reader
//! and the Avro decoder (`crate::wire`) both give validation (`crate::record`), which types it
//! with the same checks whatever the format.

/// One declared field's JSON value as read from the payload: strings borrowed when they hold no
/// escapes, numbers as serde_json reads them, arrays and objects only by kind (validation refuses
/// them for every field type).
#[derive(Debug, Clone)]
pub(crate) enum RawValue<'de> {
    Null,
    Bool(bool),
    /// An integer (from JSON: a negative one).
    I64(i64),
    /// A non-negative integer.
    U64(u64),
    /// An instant in microseconds since the epoch (an Avro timestamp or date).
    Micros(i64),
    /// An Avro value of a union branch that converts to no declared type, by its kind: always
    /// a wrong type.
    Other(&'static str),
    /// A number with a fraction or an exponent.
    F64(f64),
    String(std::borrow::Cow<'de, str>),
    /// An enum's symbol (Avro) or value name (Protobuf): text shared with the compiled writer
    /// schema, not copied per record (a schema may name a value with a megabyte).
    Symbol(std::sync::Arc<str>),
    Array,
    Object,
}

impl RawValue<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RawValue::Null => "null",
            RawValue::Bool(_) => "a boolean",
            RawValue::F64(_) => "a fractional number",
            RawValue::I64(_) | RawValue::U64(_) => "an integer",
            RawValue::Micros(_) => "a timestamp",
            RawValue::Other(kind) => kind,
            RawValue::String(_) | RawValue::Symbol(_) => "a string",
            RawValue::Array => "an array",
            RawValue::Object => "an object",
        }
    }

    /// The value as text, when it is text.
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            RawValue::String(text) => Some(text),
            RawValue::Symbol(text) => Some(text),
            _ => None,
        }
    }

    /// The value as an i64, as `serde_json::Value::as_i64` reads it.
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match *self {
            RawValue::I64(v) => Some(v),
            RawValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an f64, as `serde_json::Value::as_f64` reads it.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match *self {
            RawValue::I64(v) => Some(v as f64),
            RawValue::U64(v) => Some(v as f64),
            RawValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A number as serde_json prints it.
    pub(crate) fn number_text(&self) -> String {
        match *self {
            RawValue::I64(v) => v.to_string(),
            RawValue::U64(v) => v.to_string(),
            RawValue::F64(v) => serde_json::Number::from_f64(v)
                .map(|n| n.to_string())
                .unwrap_or_else(|| v.to_string()),
            _ => String::new(),
        }
    }
}
