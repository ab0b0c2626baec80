//! Protobuf: a writer schema's `.proto` text compiled against the event schema
//! ([`ProtobufPlan::compile`]), and a message read by it straight into the values validation
//! types ([`ProtobufPlan::decode`]).
//!
//! The registry holds `.proto` text; protox compiles it (the well-known types of
//! `google/protobuf/` resolve as imports) and prost-reflect's descriptors say each field's number
//! and type. After the wire format's header, a payload names its message by Confluent's list of
//! message indexes (a zig-zag varint count, then that many zig-zag varints; a lone `0` is the
//! first message): the first index counts the file's top-level messages, each later one the
//! nested messages of the one before.
//!
//! A declared field takes the message's field of the same name (`schema.fields[].path`, for a
//! nested one: `user.id`, through singular message fields). What converts:
//!
//! | declared | the field's type |
//! |---|---|
//! | string | string, enum (its value's name) |
//! | i64 | int32, int64, uint32, uint64, sint32, sint64, fixed32, fixed64, sfixed32, sfixed64 |
//! | f64 | those integers, float, double |
//! | bool | bool |
//! | timestamp | google.protobuf.Timestamp (to the microsecond below), the integers (epoch milliseconds, as in JSON), string (RFC 3339, as in JSON) |
//!
//! The wrappers of `google/protobuf/wrappers.proto` (`Int64Value`, `StringValue`, ...) convert as
//! the type they wrap. A field with presence (proto2 fields, proto3 `optional`, oneof members,
//! message fields and wrappers) that is absent is a missing value; a proto3 field without
//! presence that is absent holds its default (0, "", false, the enum's first value), as
//! Protobuf defines, so it is never missing; a value under a message field that is absent is
//! missing. Anything else (bytes, repeated fields, maps, groups, other messages as a leaf) does
//! not resolve, and neither does a message without a required field: its records are refused
//! as `unresolvable_schema`. The values then pass the same checks as JSON values (NUL,
//! lengths, magnitudes, ranges), so the formats refuse alike; an enum number with no name is a
//! wrong type.
//!
//! A field that occurs more than once keeps its last value, and a message field's occurrences
//! merge, as Protobuf's parsers do. Fields the event schema does not read are skipped by their
//! wire type, without being checked against the descriptor. A message that ends inside a field,
//! has a field of the wrong wire type, field number 0, a malformed varint, text that is not UTF-8,
//! or nests deeper than [`MAX_DEPTH`] is `undecodable`, and so is a list of message indexes that
//! names no message.

use std::borrow::Cow;
use std::sync::Arc;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::field::{FieldDef, FieldType};
use crate::raw_value::RawValue;

/// The deepest nesting of messages and groups a payload may have.
pub const MAX_DEPTH: usize = 64;

/// The most messages (top-level and nested) a writer schema may define.
pub const MAX_MESSAGES: usize = 4096;

/// The name the registry's schema text is compiled under.
const FILE_NAME: &str = "registry-schema.proto";

/// A dead letter's reason quotes a compilation error; kept short.
const REASON_MAX_CHARS: usize = 300;

/// A writer schema compiled against the event schema: a reader for each of its messages.
#[derive(Debug)]
pub struct ProtobufPlan {
    messages: Vec<MessageEntry>,
    fields: usize,
    /// Per `google.protobuf.Timestamp` read: the declared fields it fills.
    timestamps: Vec<Vec<usize>>,
}

/// One message of the schema, in the order Confluent's message indexes count them.
#[derive(Debug)]
struct MessageEntry {
    full_name: String,
    /// `Err`: why this message does not resolve to the event schema.
    reader: Result<MessageReader, String>,
    nested: Vec<MessageEntry>,
}

/// How one message is read: the fields declared fields read, by number.
#[derive(Debug, Default)]
struct MessageReader {
    /// Sorted by field number.
    fields: Vec<FieldReader>,
    /// Declared fields read from a field without presence here: their value when it is absent.
    defaults: Vec<(usize, Scalar)>,
}

#[derive(Debug)]
struct FieldReader {
    number: u32,
    read: FieldRead,
}

#[derive(Debug)]
enum FieldRead {
    /// A scalar read into the declared fields `into`.
    Scalar { scalar: Scalar, into: Vec<usize> },
    /// A `google.protobuf` wrapper: a message whose field 1 holds the scalar.
    Wrapper { scalar: Scalar, into: Vec<usize> },
    /// A `google.protobuf.Timestamp`, gathered in slot `slot` of the plan's timestamps.
    Timestamp { slot: usize },
    /// A message holding declared fields deeper down.
    Message(MessageReader),
}

/// A scalar type, as its wire type carries it.
#[derive(Debug, Clone)]
enum Scalar {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    /// An enum: its values' names by number, sorted by number.
    Enum(Arc<[(i32, String)]>),
}

/// The wire types of Protobuf's encoding.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// The largest field number Protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

impl Scalar {
    fn of(kind: &Kind) -> Option<Self> {
        Some(match kind {
            Kind::Double => Scalar::Double,
            Kind::Float => Scalar::Float,
            Kind::Int32 => Scalar::Int32,
            Kind::Int64 => Scalar::Int64,
            Kind::Uint32 => Scalar::Uint32,
            Kind::Uint64 => Scalar::Uint64,
            Kind::Sint32 => Scalar::Sint32,
            Kind::Sint64 => Scalar::Sint64,
            Kind::Fixed32 => Scalar::Fixed32,
            Kind::Fixed64 => Scalar::Fixed64,
            Kind::Sfixed32 => Scalar::Sfixed32,
            Kind::Sfixed64 => Scalar::Sfixed64,
            Kind::Bool => Scalar::Bool,
            Kind::String => Scalar::String,
            Kind::Enum(descriptor) => {
                let mut names: Vec<(i32, String)> = descriptor
                    .values()
                    .map(|value| (value.number(), value.name().to_string()))
                    .collect();
                // An alias (allow_alias) names a number twice: the first name counts.
                names.sort_by_key(|(number, _)| *number);
                names.dedup_by_key(|(number, _)| *number);
                Scalar::Enum(names.into())
            }
            Kind::Bytes | Kind::Message(_) => return None,
        })
    }

    fn wire_type(&self) -> u8 {
        match self {
            Scalar::Double | Scalar::Fixed64 | Scalar::Sfixed64 => FIXED64,
            Scalar::Float | Scalar::Fixed32 | Scalar::Sfixed32 => FIXED32,
            Scalar::String => LEN,
            _ => VARINT,
        }
    }

    fn is_integer(&self) -> bool {
        !matches!(
            self,
            Scalar::Double | Scalar::Float | Scalar::Bool | Scalar::String | Scalar::Enum(_)
        )
    }

    /// Whether a value of this type converts to a declared field of `field_type`.
    fn converts_to(&self, field_type: FieldType) -> bool {
        match field_type {
            FieldType::String => matches!(self, Scalar::String | Scalar::Enum(_)),
            FieldType::I64 => self.is_integer(),
            FieldType::F64 => self.is_integer() || matches!(self, Scalar::Double | Scalar::Float),
            FieldType::Bool => matches!(self, Scalar::Bool),
            FieldType::Timestamp => self.is_integer() || matches!(self, Scalar::String),
        }
    }

    /// The value of an absent field without presence.
    fn default_value(&self) -> RawValue<'static> {
        match self {
            Scalar::Double | Scalar::Float => RawValue::F64(0.0),
            Scalar::Bool => RawValue::Bool(false),
            Scalar::String => RawValue::String(Cow::Borrowed("")),
            Scalar::Enum(names) => enum_value(names, 0),
            _ => RawValue::I64(0),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Scalar::Double => "double",
            Scalar::Float => "float",
            Scalar::Int32 => "int32",
            Scalar::Int64 => "int64",
            Scalar::Uint32 => "uint32",
            Scalar::Uint64 => "uint64",
            Scalar::Sint32 => "sint32",
            Scalar::Sint64 => "sint64",
            Scalar::Fixed32 => "fixed32",
            Scalar::Fixed64 => "fixed64",
            Scalar::Sfixed32 => "sfixed32",
            Scalar::Sfixed64 => "sfixed64",
            Scalar::Bool => "bool",
            Scalar::String => "string",
            Scalar::Enum(_) => "an enum",
        }
    }
}

fn enum_value(names: &[(i32, String)], number: i32) -> RawValue<'static> {
    match names.binary_search_by_key(&number, |(n, _)| *n) {
        Ok(at) => RawValue::String(Cow::Owned(names[at].1.clone())),
        Err(_) => RawValue::Other("an enum number with no name"),
    }
}

/// Why a payload's message does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtobufError {
    /// The payload does not fit its schema.
    Undecodable(String),
    /// The message the payload names does not resolve to the event schema.
    Unresolvable(String),
}

/// Serves the registry's schema text as one file.
struct RegistryFile {
    source: String,
}

impl FileResolver for RegistryFile {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == FILE_NAME {
            File::from_source(name, &self.source)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

impl ProtobufPlan {
    /// Compiles a writer schema's `.proto` text (the registry's `schema`) against the event
    /// schema; `Err` says why no message of it can be read.
    pub fn compile(fields: &[FieldDef], writer_schema: &str) -> Result<Self, String> {
        Self::compile_unbounded(fields, writer_schema)
            .map_err(|why| crate::quote::quote_bounded(&why, REASON_MAX_CHARS))
    }

    fn compile_unbounded(fields: &[FieldDef], writer_schema: &str) -> Result<Self, String> {
        let mut resolver = ChainFileResolver::new();
        resolver.add(RegistryFile {
            source: writer_schema.to_string(),
        });
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler
            .open_file(FILE_NAME)
            .map_err(|e| format!("not a Protobuf schema that compiles: {e}"))?;
        let pool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(FILE_NAME)
            .ok_or_else(|| "the compiled schema has no file".to_string())?;
        let targets: Vec<Target<'_>> = fields
            .iter()
            .enumerate()
            .map(|(index, field)| Target {
                index,
                path: field.path().split('.').collect(),
                field_type: field.field_type,
                name: &field.name,
                required: field.required,
            })
            .collect();
        let mut compiler = PlanCompiler {
            targets: &targets,
            timestamps: Vec::new(),
            messages: 0,
        };
        let messages = file
            .messages()
            .map(|message| compiler.entry(&message))
            .collect::<Result<Vec<_>, _>>()?;
        if messages.is_empty() {
            return Err("the schema defines no message".into());
        }
        // A schema none of whose messages resolves is refused as a whole (and said so once,
        // when it is loaded), for the first message's reason.
        if !any_resolves(&messages) {
            let first = &messages[0];
            let why = first.reader.as_ref().err().cloned().unwrap_or_default();
            return Err(format!("no message resolves; `{}`: {why}", first.full_name));
        }
        Ok(Self {
            messages,
            fields: fields.len(),
            timestamps: compiler.timestamps,
        })
    }

    /// Reads one payload body (after the wire format's header: the message indexes, then the
    /// message) into one raw value per declared field, in declaration order (`None`: absent).
    pub(crate) fn decode<'a>(
        &self,
        body: &'a [u8],
        values: &mut Vec<Option<RawValue<'a>>>,
    ) -> Result<(), ProtobufError> {
        let undecodable = |e: DecodeError| ProtobufError::Undecodable(e.0);
        let mut reader = Reader { bytes: body, at: 0 };
        let entry = self.message_named(&mut reader).map_err(undecodable)?;
        let message = entry.reader.as_ref().map_err(|why| {
            ProtobufError::Unresolvable(format!("message `{}`: {why}", entry.full_name))
        })?;
        values.clear();
        values.resize_with(self.fields, || None);
        let mut stamps: Vec<Option<Stamp>> = vec![None; self.timestamps.len()];
        Read {
            values: &mut *values,
            stamps: &mut stamps,
        }
        .message(message, &body[reader.at..], 0)
        .map_err(undecodable)?;
        for (stamp, into) in stamps.iter().zip(&self.timestamps) {
            if let Some(stamp) = stamp {
                for &field in into {
                    values[field] = Some(RawValue::Micros(stamp.micros()));
                }
            }
        }
        Ok(())
    }

    /// The message the payload's message indexes name.
    fn message_named(&self, reader: &mut Reader<'_>) -> Result<&MessageEntry, DecodeError> {
        let count = zigzag(reader.varint()?);
        let path: Vec<i64> = match count {
            0 => vec![0],
            1..=64 => (0..count)
                .map(|_| reader.varint().map(zigzag))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(DecodeError(format!(
                    "a list of {count} message indexes (at most 64)"
                )));
            }
        };
        let names_none = || {
            DecodeError(format!(
                "the message indexes {path:?} name no message of the schema"
            ))
        };
        let mut entries = &self.messages;
        let mut found: Option<&MessageEntry> = None;
        for &index in &path {
            let entry = usize::try_from(index)
                .ok()
                .and_then(|index| entries.get(index))
                .ok_or_else(names_none)?;
            entries = &entry.nested;
            found = Some(entry);
        }
        found.ok_or_else(names_none)
    }
}

fn any_resolves(entries: &[MessageEntry]) -> bool {
    entries
        .iter()
        .any(|entry| entry.reader.is_ok() || any_resolves(&entry.nested))
}

/// A declared field on its way to being compiled.
struct Target<'s> {
    index: usize,
    path: Vec<&'s str>,
    field_type: FieldType,
    name: &'s str,
    required: bool,
}

struct PlanCompiler<'t, 's> {
    targets: &'t [Target<'s>],
    timestamps: Vec<Vec<usize>>,
    messages: usize,
}

impl PlanCompiler<'_, '_> {
    fn entry(&mut self, message: &MessageDescriptor) -> Result<MessageEntry, String> {
        self.messages += 1;
        if self.messages > MAX_MESSAGES {
            return Err(format!(
                "the schema defines more than {MAX_MESSAGES} messages"
            ));
        }
        let targets: Vec<&Target<'_>> = self.targets.iter().collect();
        let reader = self.message(message, &targets, 0);
        let nested = message
            .child_messages()
            .map(|child| self.entry(&child))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MessageEntry {
            full_name: message.full_name().to_string(),
            reader,
            nested,
        })
    }

    /// The reader of `message` for the targets whose path continues in it at `depth`.
    fn message(
        &mut self,
        message: &MessageDescriptor,
        targets: &[&Target<'_>],
        depth: usize,
    ) -> Result<MessageReader, String> {
        let mut reader = MessageReader::default();
        let mut done = vec![false; targets.len()];
        for (at, target) in targets.iter().enumerate() {
            if done[at] {
                continue;
            }
            let segment = target.path[depth];
            let Some(field) = message.get_field_by_name(segment) else {
                if target.required {
                    return Err(format!(
                        "`{}` has no field `{}` for the required field `{}`",
                        message.full_name(),
                        target.path[..=depth].join("."),
                        target.name
                    ));
                }
                done[at] = true;
                continue; // never present
            };
            if depth + 1 == target.path.len() {
                done[at] = true;
                self.leaf(&mut reader, target, &field)?;
                continue;
            }
            // Every target whose path goes on through this field.
            let mut through = Vec::new();
            for (later, other) in targets.iter().enumerate().skip(at) {
                if !done[later] && other.path.len() > depth + 1 && other.path[depth] == segment {
                    done[later] = true;
                    through.push(*other);
                }
            }
            let Kind::Message(child) = field.kind() else {
                return Err(format!(
                    "`{}` is {}, not a message, on the way to `{}`",
                    target.path[..=depth].join("."),
                    field_kind(&field),
                    target.path.join(".")
                ));
            };
            if field.is_list() || field.is_map() || field.is_group() {
                return Err(format!(
                    "`{}` is {}, on the way to `{}`: only a singular message field leads to a field",
                    target.path[..=depth].join("."),
                    field_kind(&field),
                    target.path.join(".")
                ));
            }
            if depth + 1 >= MAX_DEPTH {
                return Err(format!("`{}` nests too deep", target.path.join(".")));
            }
            let nested = self.message(&child, &through, depth + 1)?;
            reader.fields.push(FieldReader {
                number: field.number(),
                read: FieldRead::Message(nested),
            });
        }
        reader.fields.sort_by_key(|field| field.number);
        Ok(reader)
    }

    /// Adds to `reader` how `field` is read into `target`.
    fn leaf(
        &mut self,
        reader: &mut MessageReader,
        target: &Target<'_>,
        field: &FieldDescriptor,
    ) -> Result<(), String> {
        let unresolvable = |what: String| {
            format!(
                "`{}` is {what}, which does not convert to {} (field `{}`)",
                target.path.join("."),
                target.field_type.name(),
                target.name
            )
        };
        if field.is_list() || field.is_map() || field.is_group() {
            return Err(unresolvable(field_kind(field)));
        }
        let read = match field.kind() {
            Kind::Message(message) => match message.full_name() {
                "google.protobuf.Timestamp" if target.field_type == FieldType::Timestamp => {
                    self.timestamps.push(vec![target.index]);
                    FieldRead::Timestamp {
                        slot: self.timestamps.len() - 1,
                    }
                }
                name => {
                    let scalar = wrapped(name)
                        .filter(|scalar| scalar.converts_to(target.field_type))
                        .ok_or_else(|| unresolvable(format!("a message `{name}`")))?;
                    FieldRead::Wrapper {
                        scalar,
                        into: vec![target.index],
                    }
                }
            },
            kind => {
                let scalar = Scalar::of(&kind)
                    .filter(|scalar| scalar.converts_to(target.field_type))
                    .ok_or_else(|| unresolvable(field_kind(field)))?;
                if !field.supports_presence() {
                    reader.defaults.push((target.index, scalar.clone()));
                }
                FieldRead::Scalar {
                    scalar,
                    into: vec![target.index],
                }
            }
        };
        // Two declared fields with the same path read one field.
        let number = field.number();
        if let Some(same) = reader.fields.iter_mut().find(|f| f.number == number) {
            match (&mut same.read, read) {
                (FieldRead::Scalar { into, .. }, FieldRead::Scalar { .. })
                | (FieldRead::Wrapper { into, .. }, FieldRead::Wrapper { .. }) => {
                    into.push(target.index)
                }
                (FieldRead::Timestamp { slot }, FieldRead::Timestamp { .. }) => {
                    self.timestamps.pop();
                    self.timestamps[*slot].push(target.index);
                }
                _ => {
                    return Err(format!(
                        "`{}` is read as two different types",
                        target.path.join(".")
                    ));
                }
            }
            return Ok(());
        }
        reader.fields.push(FieldReader { number, read });
        Ok(())
    }
}

/// The scalar a `google.protobuf` wrapper holds.
fn wrapped(message: &str) -> Option<Scalar> {
    Some(match message {
        "google.protobuf.DoubleValue" => Scalar::Double,
        "google.protobuf.FloatValue" => Scalar::Float,
        "google.protobuf.Int64Value" => Scalar::Int64,
        "google.protobuf.UInt64Value" => Scalar::Uint64,
        "google.protobuf.Int32Value" => Scalar::Int32,
        "google.protobuf.UInt32Value" => Scalar::Uint32,
        "google.protobuf.BoolValue" => Scalar::Bool,
        "google.protobuf.StringValue" => Scalar::String,
        _ => return None,
    })
}

/// A field's type as an error message names it.
fn field_kind(field: &FieldDescriptor) -> String {
    let kind = match field.kind() {
        Kind::Message(message) => format!("message `{}`", message.full_name()),
        Kind::Enum(_) => "enum".into(),
        Kind::Bytes => "bytes".into(),
        other => Scalar::of(&other)
            .map(|scalar| scalar.name().to_string())
            .unwrap_or_default(),
    };
    if field.is_map() {
        "a map".into()
    } else if field.is_list() {
        format!("a repeated {kind}")
    } else if field.is_group() {
        "a group".into()
    } else {
        format!("a {kind}")
    }
}

/// Why a message does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DecodeError(String);

/// A `google.protobuf.Timestamp` as read so far.
#[derive(Debug, Clone, Copy, Default)]
struct Stamp {
    seconds: i64,
    nanos: i32,
}

impl Stamp {
    /// Microseconds since the epoch, the nanoseconds floored; beyond i64 only far outside the
    /// storable range, which validation refuses.
    fn micros(self) -> i64 {
        self.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(self.nanos).div_euclid(1_000))
    }
}

fn zigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                DecodeError(format!(
                    "the message ends {} bytes early",
                    count.saturating_sub(self.bytes.len() - self.at)
                ))
            })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in 0..10 {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| DecodeError("the message ends inside a varint".into()))?;
            self.at += 1;
            if shift == 9 && byte > 1 {
                return Err(DecodeError("a varint longer than 64 bits".into()));
            }
            value |= u64::from(byte & 0x7f) << (7 * shift);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError("a varint longer than 64 bits".into()))
    }

    fn fixed32(&mut self) -> Result<[u8; 4], DecodeError> {
        Ok(self.take(4)?.try_into().unwrap_or_default())
    }

    fn fixed64(&mut self) -> Result<[u8; 8], DecodeError> {
        Ok(self.take(8)?.try_into().unwrap_or_default())
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], DecodeError> {
        let length = self.varint()?;
        self.take(usize::try_from(length).unwrap_or(usize::MAX))
    }

    /// A tag: the field number and wire type.
    fn tag(&mut self) -> Result<(u32, u8), DecodeError> {
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(DecodeError(format!("field number {number}")));
        }
        Ok((number as u32, (tag & 7) as u8))
    }

    /// Passes over a field no declared field reads.
    fn skip(&mut self, number: u32, wire_type: u8, depth: usize) -> Result<(), DecodeError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            START_GROUP => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError(format!(
                        "groups nested deeper than {MAX_DEPTH}"
                    )));
                }
                loop {
                    let (inner, inner_type) = self.tag()?;
                    if inner_type == END_GROUP {
                        return if inner == number {
                            Ok(())
                        } else {
                            Err(DecodeError(format!(
                                "group {number} ended by the end of group {inner}"
                            )))
                        };
                    }
                    self.skip(inner, inner_type, depth + 1)?;
                }
            }
            END_GROUP => Err(DecodeError(format!("the end of group {number} outside it"))),
            other => Err(DecodeError(format!("wire type {other} (field {number})"))),
        }
    }

    /// A scalar of the given type (its wire type already checked).
    fn scalar(&mut self, scalar: &Scalar) -> Result<RawValue<'a>, DecodeError> {
        let integer = |value: u64| match i64::try_from(value) {
            Ok(value) => RawValue::I64(value),
            Err(_) => RawValue::U64(value),
        };
        Ok(match scalar {
            Scalar::Double => RawValue::F64(f64::from_le_bytes(self.fixed64()?)),
            Scalar::Float => RawValue::F64(f64::from(f32::from_le_bytes(self.fixed32()?))),
            Scalar::Fixed64 => integer(u64::from_le_bytes(self.fixed64()?)),
            Scalar::Sfixed64 => RawValue::I64(i64::from_le_bytes(self.fixed64()?)),
            Scalar::Fixed32 => RawValue::I64(i64::from(u32::from_le_bytes(self.fixed32()?))),
            Scalar::Sfixed32 => RawValue::I64(i64::from(i32::from_le_bytes(self.fixed32()?))),
            Scalar::Int32 => RawValue::I64(i64::from(self.varint()? as i32)),
            Scalar::Int64 => RawValue::I64(self.varint()? as i64),
            Scalar::Uint32 => RawValue::I64(i64::from(self.varint()? as u32)),
            Scalar::Uint64 => integer(self.varint()?),
            Scalar::Sint32 => RawValue::I64(zigzag(u64::from(self.varint()? as u32))),
            Scalar::Sint64 => RawValue::I64(zigzag(self.varint()?)),
            Scalar::Bool => RawValue::Bool(self.varint()? != 0),
            Scalar::Enum(names) => enum_value(names, self.varint()? as i32),
            Scalar::String => {
                let bytes = self.len_delimited()?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| DecodeError(format!("text that is not UTF-8: {e}")))?;
                RawValue::String(Cow::Borrowed(text))
            }
        })
    }

    /// Checks that a field of a known type came with that type's wire type.
    fn expect(&self, number: u32, found: u8, expected: u8) -> Result<(), DecodeError> {
        if found == expected {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "field {number} has wire type {found}, and its type's is {expected}"
            )))
        }
    }
}

/// One payload's reading: the declared fields' values and the timestamps gathered.
struct Read<'v, 'a> {
    values: &'v mut Vec<Option<RawValue<'a>>>,
    stamps: &'v mut Vec<Option<Stamp>>,
}

impl<'a> Read<'_, 'a> {
    fn message(
        &mut self,
        reader: &MessageReader,
        bytes: &'a [u8],
        depth: usize,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError(format!(
                "messages nested deeper than {MAX_DEPTH}"
            )));
        }
        // Present: its fields without presence hold their defaults unless set before (an
        // earlier occurrence of the same message field, which this one merges into).
        for (field, scalar) in &reader.defaults {
            if self.values[*field].is_none() {
                self.values[*field] = Some(scalar.default_value());
            }
        }
        let mut input = Reader { bytes, at: 0 };
        while !input.done() {
            let (number, wire_type) = input.tag()?;
            let Ok(at) = reader.fields.binary_search_by_key(&number, |f| f.number) else {
                input.skip(number, wire_type, depth)?;
                continue;
            };
            match &reader.fields[at].read {
                FieldRead::Scalar { scalar, into } => {
                    input.expect(number, wire_type, scalar.wire_type())?;
                    let value = input.scalar(scalar)?;
                    self.set(into, value);
                }
                FieldRead::Wrapper { scalar, into } => {
                    input.expect(number, wire_type, LEN)?;
                    let inner = input.len_delimited()?;
                    for &field in into {
                        if self.values[field].is_none() {
                            self.values[field] = Some(scalar.default_value());
                        }
                    }
                    let mut wrapper = Reader {
                        bytes: inner,
                        at: 0,
                    };
                    while !wrapper.done() {
                        let (inner_number, inner_type) = wrapper.tag()?;
                        if inner_number == 1 {
                            wrapper.expect(1, inner_type, scalar.wire_type())?;
                            let value = wrapper.scalar(scalar)?;
                            self.set(into, value);
                        } else {
                            wrapper.skip(inner_number, inner_type, depth + 1)?;
                        }
                    }
                }
                FieldRead::Timestamp { slot } => {
                    input.expect(number, wire_type, LEN)?;
                    let inner = input.len_delimited()?;
                    let stamp = self.stamps[*slot].get_or_insert_with(Stamp::default);
                    let mut timestamp = Reader {
                        bytes: inner,
                        at: 0,
                    };
                    while !timestamp.done() {
                        match timestamp.tag()? {
                            (1, inner_type) => {
                                timestamp.expect(1, inner_type, VARINT)?;
                                stamp.seconds = timestamp.varint()? as i64;
                            }
                            (2, inner_type) => {
                                timestamp.expect(2, inner_type, VARINT)?;
                                stamp.nanos = timestamp.varint()? as i32;
                            }
                            (other, inner_type) => timestamp.skip(other, inner_type, depth + 1)?,
                        }
                    }
                }
                FieldRead::Message(nested) => {
                    input.expect(number, wire_type, LEN)?;
                    let inner = input.len_delimited()?;
                    self.message(nested, inner, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    fn set(&mut self, into: &[usize], value: RawValue<'a>) {
        if let [field] = into {
            self.values[*field] = Some(value);
        } else {
            for &field in into {
                self.values[field] = Some(value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
