//! What the wire formats' tests share: the declared fields and the event schema they read.

use super::WireFormat;
use crate::event_schema::{EventSchema, FieldDef, FieldType};

pub(crate) fn field(name: &str, field_type: FieldType, required: bool) -> FieldDef {
    FieldDef {
        name: name.into(),
        field_type,
        required,
        path: None,
    }
}

/// The event schema of these tests, in the given format.
pub(crate) fn event_schema(wire: WireFormat) -> EventSchema {
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
        max_record_bytes: 4096,
        max_string_bytes: 16,
        event_time_min_micros: 946_684_800_000_000, // 2000-01-01
        event_time_max_micros: 4_102_444_800_000_000, // 2100-01-01
        wire,
    }
}
