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

/// An event of the tests' schema, as each format's tests encode it and as JSON.
pub(crate) struct Event {
    pub(crate) ts_millis: i64,
    pub(crate) user: String,
    pub(crate) qty: i64,
    pub(crate) price: Option<f64>,
    pub(crate) member: Option<bool>,
    pub(crate) seen_at_micros: Option<i64>,
}

impl Event {
    pub(crate) fn valid(i: i64) -> Self {
        Event {
            ts_millis: 1_767_225_600_000 + i,
            user: format!("u{i}"),
            qty: i - 3,
            price: (i % 2 == 0).then_some(i as f64 / 4.0),
            member: (i % 3 != 0).then_some(i % 2 == 1),
            seen_at_micros: (i % 5 != 0).then_some(1_767_225_600_000_000 + i * 7),
        }
    }

    /// The same event as JSON, the way a JSON producer writes it (timestamps as RFC 3339 in
    /// microseconds, or epoch milliseconds).
    pub(crate) fn json(&self) -> String {
        let mut object = serde_json::Map::new();
        object.insert("ts".into(), self.ts_millis.into());
        object.insert("user".into(), self.user.clone().into());
        object.insert("qty".into(), self.qty.into());
        if let Some(price) = self.price {
            object.insert(
                "price".into(),
                serde_json::Number::from_f64(price)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null),
            );
        }
        if let Some(member) = self.member {
            object.insert("member".into(), member.into());
        }
        if let Some(micros) = self.seen_at_micros {
            // Whole milliseconds as epoch milliseconds (any i64 of them), others as RFC 3339.
            let value: serde_json::Value = if micros % 1_000 == 0 {
                (micros / 1_000).into()
            } else {
                chrono::DateTime::from_timestamp_micros(micros)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .expect("within chrono's range")
                    .into()
            };
            object.insert("seen_at".into(), value);
        }
        serde_json::Value::Object(object).to_string()
    }
}
