//! Payload formats beside JSON: Avro and Protobuf in Confluent's wire format, with their writer
//! schemas from a schema registry.
//!
//! A framed payload is a magic byte 0, the writer schema's id as 4 bytes big-endian, then the
//! datum ([`frame`]; a Protobuf datum starts with the indexes of its message). Decoding is a pure function of the payload and the writer schema the id
//! names, which never changes once registered; the layers fetch a schema before they validate
//! the first record that names it, and keep it in [`WriterSchemas`], which both layers' validator
//! reads ([`crate::EventSchema::validate_into`]). So the speed layer and the sink refuse exactly
//! the same records, and a registry that is down delays records, never refuses them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::field::{FieldDef, FieldType};

pub mod avro;
pub mod protobuf;

pub use avro::AvroPlan;
pub use protobuf::ProtobufPlan;

/// A declared field on its way to a writer schema's plan: where it is read (its path split
/// at `.`) and what it must convert to. Both formats' compilers walk these.
pub(crate) struct Target<'s> {
    pub(crate) index: usize,
    pub(crate) path: Vec<&'s str>,
    pub(crate) field_type: FieldType,
    pub(crate) name: &'s str,
    pub(crate) required: bool,
}

impl<'s> Target<'s> {
    /// One target per declared field, in declaration order.
    pub(crate) fn all(fields: &'s [FieldDef]) -> Vec<Self> {
        fields
            .iter()
            .enumerate()
            .map(|(index, field)| Target {
                index,
                path: field.path().split('.').collect(),
                field_type: field.field_type,
                name: &field.name,
                required: field.required,
            })
            .collect()
    }
}

/// A writer schema's id in the registry.
pub type SchemaId = u32;

/// The first byte of Confluent's wire format.
pub const MAGIC_BYTE: u8 = 0;

/// The bytes before the datum: the magic byte and the schema id.
pub const HEADER_BYTES: usize = 5;

/// How a topic's payloads are encoded (`schema.format`).
#[derive(Debug, Clone, Default)]
pub enum WireFormat {
    /// A JSON object per message (the default).
    #[default]
    Json,
    /// Avro in Confluent's wire format; the writer schemas loaded so far.
    Avro(Arc<WriterSchemas>),
    /// Protobuf in Confluent's wire format; the writer schemas loaded so far.
    Protobuf(Arc<WriterSchemas>),
}

impl WireFormat {
    /// A fresh Avro format, with no writer schema loaded yet.
    pub fn avro() -> Self {
        WireFormat::Avro(Arc::default())
    }

    /// A fresh Protobuf format, with no writer schema loaded yet.
    pub fn protobuf() -> Self {
        WireFormat::Protobuf(Arc::default())
    }

    /// How the format is written in configuration (`schema.format`).
    pub fn name(&self) -> &'static str {
        match self {
            WireFormat::Json => "json",
            WireFormat::Avro(_) => "avro",
            WireFormat::Protobuf(_) => "protobuf",
        }
    }

    /// The writer schemas, for a format that has them.
    pub fn writer_schemas(&self) -> Option<&Arc<WriterSchemas>> {
        match self {
            WireFormat::Json => None,
            WireFormat::Avro(schemas) | WireFormat::Protobuf(schemas) => Some(schemas),
        }
    }

    /// The registry's `schemaType` of this format's writer schemas.
    pub fn registry_schema_type(&self) -> Option<&'static str> {
        match self {
            WireFormat::Json => None,
            WireFormat::Avro(_) => Some("AVRO"),
            WireFormat::Protobuf(_) => Some("PROTOBUF"),
        }
    }
}

/// Two formats are equal when they decode alike: the schemas loaded are a cache, not a setting.
impl PartialEq for WireFormat {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

/// A payload in Confluent's wire format, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The writer schema's id.
    pub schema_id: SchemaId,
    /// The datum.
    pub body: &'a [u8],
}

/// Why a payload is not in the wire format (validation refuses it: `crate::record::Rejection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// An empty message.
    Empty,
    /// The first byte is not [`MAGIC_BYTE`].
    WrongMagicByte(u8),
    /// Fewer bytes than the header: the message's length.
    Short(usize),
}

/// Splits a payload into its schema id and datum; refuses one without the wire format's header.
pub fn frame(payload: &[u8]) -> Result<Framed<'_>, FrameError> {
    match payload.first() {
        None => Err(FrameError::Empty),
        Some(&found) if found != MAGIC_BYTE => Err(FrameError::WrongMagicByte(found)),
        Some(_) if payload.len() < HEADER_BYTES => Err(FrameError::Short(payload.len())),
        Some(_) => Ok(Framed {
            schema_id: u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]),
            body: &payload[HEADER_BYTES..],
        }),
    }
}

/// A payload in the wire format: the magic byte, the schema id, what precedes the datum
/// (Protobuf's message indexes), the datum.
pub fn framed(id: SchemaId, prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(HEADER_BYTES + prefix.len() + body.len());
    payload.push(MAGIC_BYTE);
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(prefix);
    payload.extend_from_slice(body);
    payload
}

/// The schema id a payload names, if it has the wire format's header: what a layer fetches
/// before it validates the payload.
pub fn schema_id_of(payload: &[u8]) -> Option<SchemaId> {
    frame(payload).ok().map(|framed| framed.schema_id)
}

/// What the registry said about one schema id, compiled against the event schema.
#[derive(Debug)]
pub enum LoadedSchema {
    /// An Avro writer schema whose fields resolve to the event schema's.
    Avro(AvroPlan),
    /// A Protobuf writer schema, with a reader for each of its messages (some of which may
    /// not resolve).
    Protobuf(ProtobufPlan),
    /// A writer schema that does not resolve (a required field missing, a type that does not
    /// convert, not of `schema.format`): its records are refused as `unresolvable_schema`.
    Unresolvable(String),
}

/// The writer schemas loaded so far, by id: filled by the layer's registry client before a
/// record that names an id is validated, read by the validating threads. An id's entry never
/// changes once made (a registered schema is immutable).
#[derive(Debug, Default)]
pub struct WriterSchemas {
    by_id: RwLock<HashMap<SchemaId, Arc<LoadedSchema>>>,
}

impl WriterSchemas {
    /// What is loaded for an id; `None` before the id was fetched.
    pub fn get(&self, id: SchemaId) -> Option<Arc<LoadedSchema>> {
        self.by_id
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .cloned()
    }

    /// Whether an id was fetched.
    pub fn contains(&self, id: SchemaId) -> bool {
        self.by_id
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(&id)
    }

    /// Records what the registry said about an id; the first answer stays.
    pub fn insert(&self, id: SchemaId, loaded: LoadedSchema) {
        self.by_id
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(id)
            .or_insert_with(|| Arc::new(loaded));
    }

    /// How many ids were fetched.
    pub fn len(&self) -> usize {
        self.by_id
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Whether no id was fetched yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
