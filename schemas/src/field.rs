//! A declared event field: its name, type, whether it is required, and where an Avro record
//! holds it. Its own module, so that the payload formats (`crate::wire`) can read the declared
//! fields without depending on the event schema that holds them.

use serde::{Deserialize, Serialize};

/// The type of a declared event field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer. JSON numbers with a fraction are refused.
    I64,
    /// 64-bit float. JSON integers are accepted.
    F64,
    /// `true` or `false`.
    Bool,
    /// An instant: an RFC 3339 string or integer epoch milliseconds. Stored in microseconds, UTC.
    Timestamp,
}

impl FieldType {
    /// How the type is written in configuration and error messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::I64 => "i64",
            FieldType::F64 => "f64",
            FieldType::Bool => "bool",
            FieldType::Timestamp => "timestamp",
        }
    }

    /// Whether values of this type can be summed.
    pub fn is_summable(self) -> bool {
        matches!(self, FieldType::I64 | FieldType::F64)
    }

    /// Whether values of this type have a total order usable by min and max.
    pub fn is_ordered(self) -> bool {
        matches!(self, FieldType::I64 | FieldType::F64 | FieldType::Timestamp)
    }
}

/// One declared field of the event schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// JSON key and column name: lowercase letters, digits and `_`, starting with a letter or `_`.
    pub name: String,
    /// The field's type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// A required field that is missing or null makes the record invalid. Defaults to true.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Where an Avro record holds the value, when not in a top-level field of the same name:
    /// field names joined by `.` through nested records (`user.id`). JSON reads top-level keys
    /// by name only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl FieldDef {
    /// Where the value is read from: the path, or the name.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(&self.name)
    }
}

fn default_true() -> bool {
    true
}
