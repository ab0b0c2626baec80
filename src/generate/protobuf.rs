//! `braid generate --format protobuf`: the generated events as Protobuf in Confluent's wire
//! format, by a writer schema (`.proto` text) derived from `[schema]`.
//!
//! Each generated JSON event is transcoded field by field, as for Avro (`super::avro`): what
//! Protobuf cannot carry as such (a malformed event: not JSON, a value of the wrong type, a
//! required field missing, an event time that does not parse or lies past i64 microseconds)
//! is sent as its JSON bytes, refused as `wrong_magic_byte`; every other event, hostile values
//! included, is encoded, and validation refuses it for the same reason as its JSON form.

use anyhow::Context;
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value as Proto};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use schemas::wire::SchemaId;
use schemas::{EventSchema, FieldType};
use serde_json::Value as Json;

/// The message indexes of the file's first message: a lone 0.
const FIRST_MESSAGE: &[u8] = &[0];

/// The `.proto` text of `[schema]`'s fields: one message `Event`, top-level fields by name,
/// numbered in declaration order; required ones without presence (proto3's default), optional
/// ones `optional`; timestamps as `google.protobuf.Timestamp`.
pub fn writer_schema(schema: &EventSchema) -> anyhow::Result<String> {
    let mut text = String::from(
        "syntax = \"proto3\";\npackage braid.generated;\n\nimport \"google/protobuf/timestamp.proto\";\n\nmessage Event {\n",
    );
    // proto3 refuses two fields whose camel-case (JSON) names are the same.
    let mut camel_case: std::collections::HashMap<String, &str> = Default::default();
    for field in &schema.fields {
        let key = field.name.replace('_', "").to_lowercase();
        if let Some(other) = camel_case.insert(key, &field.name) {
            anyhow::bail!(
                "schema.fields `{other}` and `{}` have the same camel-case name, which proto3 refuses: braid generate --format protobuf cannot write them",
                field.name
            );
        }
    }
    for (number, field) in schema.fields.iter().enumerate() {
        anyhow::ensure!(
            field.path.is_none(),
            "schema.fields `{}` has a path: braid generate --format protobuf writes top-level fields only",
            field.name
        );
        let proto_type = match field.field_type {
            FieldType::String => "string",
            FieldType::I64 => "int64",
            FieldType::F64 => "double",
            FieldType::Bool => "bool",
            FieldType::Timestamp => "google.protobuf.Timestamp",
        };
        // A message field has presence already.
        let label = if field.required || field.field_type == FieldType::Timestamp {
            ""
        } else {
            "optional "
        };
        text.push_str(&format!(
            "  {label}{proto_type} {} = {};\n",
            field.name,
            number + 1
        ));
    }
    text.push_str("}\n");
    Ok(text)
}

/// Compiles `.proto` text with its well-known imports: the descriptor of its first message.
pub fn first_message(text: &str) -> anyhow::Result<MessageDescriptor> {
    struct Text(String);
    impl FileResolver for Text {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            match name {
                "writer.proto" => File::from_source(name, &self.0),
                _ => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Text(text.to_string()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file("writer.proto")
        .context("compiling the Protobuf writer schema")?;
    compiler
        .descriptor_pool()
        .get_file_by_name("writer.proto")
        .and_then(|file| file.messages().next())
        .context("the Protobuf writer schema has no message")
}

/// Turns generated JSON events into framed Protobuf messages of one registered writer schema.
pub struct ProtobufEncoder {
    schema: EventSchema,
    message: MessageDescriptor,
    id: SchemaId,
}

impl ProtobufEncoder {
    /// An encoder for `writer` (the text of [`writer_schema`]) registered as `id`.
    pub fn new(schema: &EventSchema, writer: &str, id: SchemaId) -> anyhow::Result<Self> {
        Ok(Self {
            schema: schema.clone(),
            message: first_message(writer)?,
            id,
        })
    }

    /// The framed Protobuf form of a generated JSON payload, or `None` when Protobuf cannot
    /// carry it (then the JSON bytes are sent, and refused as `wrong_magic_byte`).
    pub fn encode(&self, json: &[u8]) -> Option<Vec<u8>> {
        if json.len() > self.schema.max_record_bytes {
            return None;
        }
        let Ok(Json::Object(object)) = serde_json::from_slice::<Json>(json) else {
            return None;
        };
        let mut message = DynamicMessage::new(self.message.clone());
        for field in &self.schema.fields {
            match object.get(&field.name) {
                None | Some(Json::Null) if field.required => return None,
                None | Some(Json::Null) => {}
                Some(value) => {
                    let descriptor = self.message.get_field_by_name(&field.name)?;
                    let value = proto_value(field.field_type, value, &descriptor)?;
                    message.set_field(&descriptor, value);
                }
            }
        }
        Some(schemas::wire::framed(
            self.id,
            FIRST_MESSAGE,
            &message.encode_to_vec(),
        ))
    }
}

/// A JSON value as the Protobuf value of a field of `field_type`, as validation would read it.
fn proto_value(
    field_type: FieldType,
    value: &Json,
    descriptor: &prost_reflect::FieldDescriptor,
) -> Option<Proto> {
    Some(match (field_type, value) {
        (FieldType::String, Json::String(text)) => Proto::String(text.clone()),
        (FieldType::I64, Json::Number(number)) => Proto::I64(number.as_i64()?),
        (FieldType::F64, Json::Number(number)) => Proto::F64(number.as_f64()?),
        (FieldType::Bool, Json::Bool(flag)) => Proto::Bool(*flag),
        (FieldType::Timestamp, Json::String(text)) => {
            timestamp(descriptor, schemas::rfc3339::parse_micros(text).ok()?)?
        }
        (FieldType::Timestamp, Json::Number(number)) => {
            timestamp(descriptor, number.as_i64()?.checked_mul(1_000)?)?
        }
        _ => return None,
    })
}

/// A `google.protobuf.Timestamp` at `micros` since the epoch.
fn timestamp(descriptor: &prost_reflect::FieldDescriptor, micros: i64) -> Option<Proto> {
    let prost_reflect::Kind::Message(stamp) = descriptor.kind() else {
        return None;
    };
    let mut message = DynamicMessage::new(stamp);
    message.set_field_by_name("seconds", Proto::I64(micros.div_euclid(1_000_000)));
    message.set_field_by_name(
        "nanos",
        Proto::I32((micros.rem_euclid(1_000_000) * 1_000) as i32),
    );
    Some(Proto::Message(message))
}

#[cfg(test)]
mod tests {
    use schemas::wire::{LoadedSchema, ProtobufPlan, WireFormat};

    use super::*;

    /// Every generated message, hostile and malformed ones included, is refused by a Protobuf
    /// topic exactly as its JSON form is by a JSON topic, or, when Protobuf cannot carry it,
    /// sent as JSON and refused as `wrong_magic_byte`; valid ones read back as the same record.
    #[test]
    fn protobuf_events_validate_as_their_json_does() {
        let config = schemas::BraidConfig::load_from(
            Some(("braid.toml", include_str!("../../braid.toml"))),
            [],
        )
        .unwrap();
        let json = config.schema.clone();
        let mut proto = config.schema.clone();
        proto.wire = WireFormat::protobuf();
        let writer = writer_schema(&proto).unwrap();
        let plan = ProtobufPlan::compile(&proto.fields, &writer).unwrap();
        proto
            .wire
            .writer_schemas()
            .unwrap()
            .insert(9, LoadedSchema::Protobuf(plan));
        let encoder = ProtobufEncoder::new(&proto, &writer, 9).unwrap();
        crate::generate::format_check::events_validate_as_their_json_does(
            &json,
            &proto,
            11,
            |json| encoder.encode(json),
        );
    }

    #[test]
    fn the_writer_schema_follows_the_declared_fields() {
        let config = schemas::BraidConfig::load_from(
            Some(("braid.toml", include_str!("../../braid.toml"))),
            [],
        )
        .unwrap();
        let writer = writer_schema(&config.schema).unwrap();
        let message = first_message(&writer).unwrap();
        let names: Vec<String> = message.fields().map(|f| f.name().to_string()).collect();
        let declared: Vec<&str> = config
            .schema
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, declared);
    }

    /// Names whose camel-case forms collide (`user_id`, `userid`) are refused before anything
    /// is registered, naming both.
    #[test]
    fn field_names_that_collide_in_camel_case_are_refused() {
        let config = schemas::BraidConfig::load_from(
            Some(("braid.toml", include_str!("../../braid.toml"))),
            [],
        )
        .unwrap();
        let mut schema = config.schema.clone();
        let mut twin = schema.fields[0].clone();
        twin.name = "userid".into();
        schema.fields.push(twin);
        let why = writer_schema(&schema).unwrap_err().to_string();
        assert!(why.contains("`user_id` and `userid`"), "{why}");
    }
}
