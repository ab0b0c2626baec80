//! The declared event schema: typed fields, which are required, and which one is the event time.

pub use crate::field::{FieldDef, FieldType};

/// The validated event schema. Built by [`crate::config`] from the `[schema]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// The fields, in declaration order (also the Delta column order).
    pub fields: Vec<FieldDef>,
    /// Index into `fields` of the event-time field (a required timestamp).
    pub event_time_index: usize,
    /// Messages larger than this many bytes are rejected before parsing.
    pub max_record_bytes: usize,
    /// String values longer than this many bytes (UTF-8) are rejected
    /// (`schema.max_group_value_bytes`): any string field can be a group key, and a group key
    /// must fit in a PostgreSQL index entry.
    pub max_string_bytes: usize,
    /// Event times before this instant (microseconds since the epoch) are rejected.
    pub event_time_min_micros: i64,
    /// Event times at or after this instant (microseconds since the epoch) are rejected.
    pub event_time_max_micros: i64,
    /// How payloads are encoded (`schema.format`) and, for Avro, the writer schemas loaded.
    pub wire: crate::wire::WireFormat,
}

impl EventSchema {
    /// The index of a field by name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The event-time field.
    pub fn event_time_field(&self) -> &FieldDef {
        &self.fields[self.event_time_index]
    }
}

/// Whether `name` is usable as a field, view or column name: `[a-z_][a-z0-9_]*`, at most
/// `max_len` characters. Names become SQL identifiers, so nothing else is allowed.
pub fn is_identifier(name: &str, max_len: usize) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= max_len
}

/// Kafka topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_strict() {
        assert!(is_identifier("page_views_1m", 63));
        assert!(is_identifier("_offset", 63));
        for bad in ["", "1x", "Page", "a-b", "a b", "x;drop table y", "é"] {
            assert!(!is_identifier(bad, 63), "{bad}");
        }
        assert!(!is_identifier("abcdef", 5));
    }
}
