//! `braid generate --format avro`: the generated events as Avro in Confluent's wire format, by a
//! writer schema derived from `[schema]` and registered under `<topic>-value`.
//!
//! Each generated JSON event is transcoded field by field. An event Avro cannot carry as such (a
//! malformed one: not JSON, a value of the wrong type, a required field missing, an event time
//! that does not parse) is sent as its JSON bytes, which an Avro topic refuses as
//! `wrong_magic_byte`; every other event, hostile values included, is encoded, and validation
//! refuses it for the same reason as its JSON form.

use anyhow::Context;
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use schemas::wire::SchemaId;
use schemas::{EventSchema, FieldType};
use serde_json::Value as Json;

/// The Avro record schema of `[schema]`'s fields: top-level fields by name, optional ones a
/// union of null and the type, timestamps as `timestamp-micros`.
pub fn writer_schema(schema: &EventSchema) -> anyhow::Result<String> {
    let mut fields = Vec::with_capacity(schema.fields.len());
    for field in &schema.fields {
        anyhow::ensure!(
            field.path.is_none(),
            "schema.fields `{}` has a path: braid generate --format avro writes top-level fields only",
            field.name
        );
        let avro_type = match field.field_type {
            FieldType::String => serde_json::json!("string"),
            FieldType::I64 => serde_json::json!("long"),
            FieldType::F64 => serde_json::json!("double"),
            FieldType::Bool => serde_json::json!("boolean"),
            FieldType::Timestamp => {
                serde_json::json!({"type": "long", "logicalType": "timestamp-micros"})
            }
        };
        fields.push(if field.required {
            serde_json::json!({"name": field.name, "type": avro_type})
        } else {
            serde_json::json!({"name": field.name, "type": ["null", avro_type], "default": null})
        });
    }
    Ok(serde_json::json!({
        "type": "record",
        "name": "Event",
        "namespace": "braid.generated",
        "fields": fields,
    })
    .to_string())
}

/// Turns generated JSON events into framed Avro datums of one registered writer schema.
pub struct AvroEncoder {
    schema: EventSchema,
    /// Built once (resolving the schema's names per event halved the generator's rate); its
    /// schema is leaked, one per encoder, which lives as long as `braid generate`.
    writer: GenericDatumWriter<'static>,
    id: SchemaId,
}

impl AvroEncoder {
    /// An encoder for `writer` (the text of [`writer_schema`]) registered as `id`.
    pub fn new(schema: &EventSchema, writer: &str, id: SchemaId) -> anyhow::Result<Self> {
        let parsed: &'static Schema = Box::leak(Box::new(
            Schema::parse_str(writer).context("the generated Avro schema")?,
        ));
        Ok(Self {
            schema: schema.clone(),
            writer: GenericDatumWriter::builder(parsed)
                .build()
                .context("a writer of the generated Avro schema")?,
            id,
        })
    }

    /// The framed Avro form of a generated JSON payload, or `None` when Avro cannot carry it
    /// (then the JSON bytes are sent, and refused as `wrong_magic_byte`).
    pub fn encode(&self, json: &[u8]) -> Option<Vec<u8>> {
        // A message over the size limit stays one (refused as too_large in either format).
        if json.len() > self.schema.max_record_bytes {
            return None;
        }
        let Ok(Json::Object(object)) = serde_json::from_slice::<Json>(json) else {
            return None;
        };
        let mut record = Vec::with_capacity(self.schema.fields.len());
        for field in &self.schema.fields {
            let value = match object.get(&field.name) {
                None | Some(Json::Null) if field.required => return None,
                None | Some(Json::Null) => None,
                Some(value) => Some(avro_value(field.field_type, value)?),
            };
            let value = match (field.required, value) {
                (true, Some(value)) => value,
                (false, Some(value)) => Avro::Union(1, Box::new(value)),
                (_, None) => Avro::Union(0, Box::new(Avro::Null)),
            };
            record.push((field.name.clone(), value));
        }
        let body = self.writer.write_value_to_vec(Avro::Record(record)).ok()?;
        Some(schemas::wire::framed(self.id, &[], &body))
    }
}

/// A JSON value as the Avro value of a field of `field_type`, as validation would read it.
fn avro_value(field_type: FieldType, value: &Json) -> Option<Avro> {
    Some(match (field_type, value) {
        (FieldType::String, Json::String(text)) => Avro::String(text.clone()),
        (FieldType::I64, Json::Number(number)) => Avro::Long(number.as_i64()?),
        (FieldType::F64, Json::Number(number)) => Avro::Double(number.as_f64()?),
        (FieldType::Bool, Json::Bool(flag)) => Avro::Boolean(*flag),
        (FieldType::Timestamp, Json::String(text)) => {
            Avro::TimestampMicros(schemas::rfc3339::parse_micros(text).ok()?)
        }
        (FieldType::Timestamp, Json::Number(number)) => {
            Avro::TimestampMicros(number.as_i64()?.checked_mul(1_000)?)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use schemas::wire::{AvroPlan, LoadedSchema, WireFormat};

    use super::*;

    /// Every generated message, hostile and malformed ones included, is refused by an Avro
    /// topic exactly as its JSON form is by a JSON topic, or, when Avro cannot carry it, sent
    /// as JSON and refused as `wrong_magic_byte`; valid ones read back as the same record.
    #[test]
    fn avro_events_validate_as_their_json_does() {
        let config = schemas::BraidConfig::load_from(
            Some(("braid.toml", include_str!("../../braid.toml"))),
            [],
        )
        .unwrap();
        let json = config.schema.clone();
        let mut avro = config.schema.clone();
        avro.wire = WireFormat::avro();
        let writer = writer_schema(&avro).unwrap();
        let plan = AvroPlan::compile(&avro.fields, &writer).unwrap();
        avro.wire
            .writer_schemas()
            .unwrap()
            .insert(3, LoadedSchema::Avro(plan));
        let encoder = AvroEncoder::new(&avro, &writer, 3).unwrap();
        crate::generate::format_check::events_validate_as_their_json_does(
            &json,
            &avro,
            7,
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
        let parsed = Schema::parse_str(&writer).unwrap();
        let Schema::Record(record) = parsed else {
            panic!("{writer}")
        };
        let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        let declared: Vec<&str> = config
            .schema
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, declared);
    }
}
