//! Protobuf: a writer schema's `.proto` text compiled against the event schema
//! ([`ProtobufPlan::compile`], `compile.rs`), and a message read by it straight into the values
//! validation types ([`ProtobufPlan::decode`], `decode.rs`).
//!
//! The registry holds `.proto` text; protox compiles it (the well-known types of
//! `google/protobuf/` resolve as imports) and prost-reflect's descriptors say each field's number
//! and type. After the wire format's header, a payload names its message by Confluent's list of
//! message indexes (a zig-zag varint count, then that many zig-zag varints; a lone `0` is the
//! first message): the first index counts the file's top-level messages, each later one the
//! nested messages of the one before, as Confluent counts them (declared messages only: not the
//! entries of maps nor the types of groups).
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
//! lengths, magnitudes, ranges), so the formats refuse alike. A number with no name in a proto3
//! (open) enum is a wrong type; in a proto2 (closed) enum it is an unknown field, as Protobuf
//! reads it: absent. A Timestamp whose nanos lie outside 0 to 999,999,999 is a wrong type (a bad
//! event time, for the event time).
//!
//! A field that occurs more than once keeps its last value, a message field's occurrences
//! merge, and a oneof member clears the others, as Protobuf's parsers do. Fields the event
//! schema does not read are skipped by their wire type, without being checked against the
//! descriptor. A message that ends inside a field, has a field of the wrong wire type, field
//! number 0, a malformed varint, text that is not UTF-8, or groups nested deeper than
//! [`MAX_GROUP_DEPTH`] is `undecodable`, and so is a list of message indexes that names no
//! message.
//!
//! The registry is trusted less than the config: schema text over [`MAX_SCHEMA_BYTES`], nested
//! deeper than [`MAX_SCHEMA_NESTING`] (the compiler recurses on it) or defining more than
//! [`MAX_MESSAGES`] messages does not resolve, so that no schema a producer names can exhaust a
//! layer's stack or memory.

mod compile;
mod decode;

use std::borrow::Cow;
use std::sync::Arc;

use crate::field::FieldDef;
use crate::raw_value::RawValue;

/// The deepest nesting of groups a payload may have (prost's recursion limit).
pub const MAX_GROUP_DEPTH: usize = 100;

/// The most messages (top-level and nested) a writer schema may define.
pub const MAX_MESSAGES: usize = 4096;

/// The longest writer schema text compiled.
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// The deepest nesting of braces, brackets and parentheses in a writer schema's text.
pub const MAX_SCHEMA_NESTING: usize = 32;

/// A dead letter's reason quotes a compilation error; kept short.
const REASON_MAX_CHARS: usize = 300;

/// A writer schema compiled against the event schema: a reader for each of its messages.
#[derive(Debug)]
pub struct ProtobufPlan {
    messages: Vec<MessageEntry>,
    fields: usize,
}

/// One message of the schema, in the order Confluent's message indexes count them.
#[derive(Debug)]
struct MessageEntry {
    full_name: String,
    /// `Err`: why this message does not resolve to the event schema.
    reader: Result<EntryReader, String>,
    nested: Vec<MessageEntry>,
}

/// How a payload of one message is read.
#[derive(Debug)]
struct EntryReader {
    root: MessageReader,
    /// Per `google.protobuf.Timestamp` read: the declared fields it fills.
    timestamps: Vec<Vec<usize>>,
}

/// How one message is read: the fields declared fields read, by number.
#[derive(Debug, Default)]
struct MessageReader {
    /// Sorted by field number.
    fields: Vec<FieldReader>,
    /// Declared fields read from a field without presence here: their value when it is absent.
    defaults: Vec<(usize, Scalar)>,
    /// The members of the oneofs that hold a field read here, sorted by number: each with its
    /// oneof's index in `oneofs`.
    oneof_members: Vec<(u32, usize)>,
    /// Per oneof: each member read here, by number, and what reading it fills (cleared when
    /// another member is read; members read by no declared field fill nothing).
    oneofs: Vec<Vec<(u32, Filled)>>,
}

/// The declared fields and timestamp slots a field fills, itself or deeper down.
#[derive(Debug, Default, Clone)]
struct Filled {
    fields: Vec<usize>,
    slots: Vec<usize>,
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
    /// A `google.protobuf.Timestamp`, gathered in slot `slot` of the entry's timestamps.
    Timestamp { slot: usize },
    /// A message holding declared fields deeper down.
    Message(MessageReader),
}

impl FieldRead {
    /// What reading this field fills.
    fn filled(&self, timestamps: &[Vec<usize>], into: &mut Filled) {
        match self {
            FieldRead::Scalar { into: fields, .. } | FieldRead::Wrapper { into: fields, .. } => {
                into.fields.extend(fields)
            }
            FieldRead::Timestamp { slot } => {
                into.slots.push(*slot);
                into.fields.extend(&timestamps[*slot]);
            }
            FieldRead::Message(nested) => {
                for field in &nested.fields {
                    field.read.filled(timestamps, into);
                }
            }
        }
    }
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
    Enum(Arc<EnumNames>),
}

/// An enum's values' names by number.
#[derive(Debug)]
struct EnumNames {
    /// Sorted by number; an alias's first name only.
    names: Vec<(i32, Arc<str>)>,
    /// A proto2 enum: a number with no name is an unknown field (absent), not a value.
    closed: bool,
}

impl EnumNames {
    /// The value of `number`; `None` when it has no name in a closed enum (absent).
    fn value(&self, number: i32) -> Option<RawValue<'static>> {
        match self.names.binary_search_by_key(&number, |(n, _)| *n) {
            Ok(at) => Some(RawValue::Symbol(Arc::clone(&self.names[at].1))),
            Err(_) if self.closed => None,
            Err(_) => Some(RawValue::Other("an enum number with no name")),
        }
    }
}

impl Scalar {
    fn is_integer(&self) -> bool {
        !matches!(
            self,
            Scalar::Double | Scalar::Float | Scalar::Bool | Scalar::String | Scalar::Enum(_)
        )
    }

    /// The value of an absent field without presence.
    fn default_value(&self) -> RawValue<'static> {
        match self {
            Scalar::Double | Scalar::Float => RawValue::F64(0.0),
            Scalar::Bool => RawValue::Bool(false),
            Scalar::String => RawValue::String(Cow::Borrowed("")),
            // Only proto3 fields lack presence, and a proto3 enum's first value is 0.
            Scalar::Enum(names) => names
                .value(0)
                .unwrap_or(RawValue::Other("an enum number with no name")),
            _ => RawValue::I64(0),
        }
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

impl ProtobufPlan {
    /// Compiles a writer schema's `.proto` text (the registry's `schema`) against the event
    /// schema; `Err` says why no message of it can be read.
    pub fn compile(fields: &[FieldDef], writer_schema: &str) -> Result<Self, String> {
        compile::compile(fields, writer_schema)
            .map_err(|why| crate::quote::quote_bounded(&why, REASON_MAX_CHARS))
    }

    /// Reads one payload body (after the wire format's header: the message indexes, then the
    /// message) into one raw value per declared field, in declaration order (`None`: absent).
    pub(crate) fn decode<'a>(
        &self,
        body: &'a [u8],
        values: &mut Vec<Option<RawValue<'a>>>,
    ) -> Result<(), ProtobufError> {
        decode::decode(self, body, values)
    }
}

#[cfg(test)]
mod tests;
