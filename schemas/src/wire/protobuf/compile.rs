//! A writer schema's `.proto` text compiled into a reader per message.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, Syntax};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::{
    EntryReader, EnumNames, FieldRead, FieldReader, Filled, MAX_MESSAGES, MAX_SCHEMA_BYTES,
    MAX_SCHEMA_NESTING, MessageEntry, MessageReader, ProtobufPlan, Scalar,
};
use crate::field::{FieldDef, FieldType};
use crate::wire::Target;

/// The name the registry's schema text is compiled under.
pub(super) const FILE_NAME: &str = "registry-schema.proto";

/// Serves the registry's schema text as one file.
pub(super) struct RegistryFile {
    pub(super) source: String,
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

pub(super) fn compile(fields: &[FieldDef], writer_schema: &str) -> Result<ProtobufPlan, String> {
    check_text(writer_schema)?;
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
    let targets = Target::all(fields);
    let mut entries = Entries {
        targets: &targets,
        enums: HashMap::new(),
        messages: 0,
    };
    let messages = file
        .messages()
        .map(|message| entries.entry(&message))
        .collect::<Result<Vec<_>, _>>()?;
    if messages.is_empty() {
        return Err("the schema defines no message".into());
    }
    // A schema none of whose messages resolves is refused as a whole (and said so once, when
    // it is loaded), for the first message's reason.
    if !any_resolves(&messages) {
        let first = &messages[0];
        let why = first.reader.as_ref().err().cloned().unwrap_or_default();
        return Err(format!("no message resolves; `{}`: {why}", first.full_name));
    }
    Ok(ProtobufPlan {
        messages,
        fields: fields.len(),
    })
}

/// Refuses text the compiler should not be given: too long, nested so deep that its recursion
/// could exhaust the stack, or with names so long that building their full names costs
/// quadratic time and memory. Every bracket counts, in strings and comments too (the compiler
/// ends a string at a line's end and goes on after errors, so no reading of the text can say
/// which brackets it will parse): only text nobody writes is refused for it.
fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(format!(
            "the schema text has {} bytes, more than the {MAX_SCHEMA_BYTES} Braid compiles",
            text.len()
        ));
    }
    let (mut depth, mut name) = (0usize, 0usize);
    for byte in text.bytes() {
        match byte {
            b'{' | b'[' | b'(' | b'<' => {
                depth += 1;
                if depth > MAX_SCHEMA_NESTING {
                    return Err(format!(
                        "the schema text nests deeper than {MAX_SCHEMA_NESTING} levels"
                    ));
                }
            }
            b'}' | b']' | b')' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.' {
            name += 1;
            if name > MAX_NAME_CHARS {
                return Err(format!(
                    "the schema text has a name (or a run of letters, digits, `_` and `.`) longer than {MAX_NAME_CHARS} characters"
                ));
            }
        } else {
            name = 0;
        }
    }
    Ok(())
}

/// The longest dotted name in a writer schema's text.
const MAX_NAME_CHARS: usize = 512;

fn any_resolves(entries: &[MessageEntry]) -> bool {
    entries
        .iter()
        .any(|entry| entry.reader.is_ok() || any_resolves(&entry.nested))
}

/// Compiles every message of the file, in Confluent's order.
struct Entries<'t, 's> {
    targets: &'t [Target<'s>],
    /// Each enum's names, built once however many fields use it.
    enums: HashMap<String, Arc<EnumNames>>,
    messages: usize,
}

impl Entries<'_, '_> {
    fn entry(&mut self, message: &MessageDescriptor) -> Result<MessageEntry, String> {
        self.messages += 1;
        if self.messages > MAX_MESSAGES {
            return Err(format!(
                "the schema defines more than {MAX_MESSAGES} messages"
            ));
        }
        let targets: Vec<&Target<'_>> = self.targets.iter().collect();
        let mut compiler = MessageCompiler {
            enums: &mut self.enums,
            timestamps: Vec::new(),
        };
        let reader = compiler
            .message(message, &targets, 0)
            .map(|root| EntryReader {
                root,
                timestamps: compiler.timestamps,
            });
        // Confluent counts the messages the text declares: not a map's entry type, nor a
        // group's type, which the descriptor adds beside them.
        let groups: HashSet<String> = message
            .fields()
            .filter(FieldDescriptor::is_group)
            .filter_map(|field| match field.kind() {
                Kind::Message(group) => Some(group.full_name().to_string()),
                _ => None,
            })
            .collect();
        let nested = message
            .child_messages()
            .filter(|child| !child.is_map_entry() && !groups.contains(child.full_name()))
            .map(|child| self.entry(&child))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MessageEntry {
            full_name: message.full_name().to_string(),
            reader,
            nested,
        })
    }
}

/// Compiles the reader of one message (and the messages its paths go through).
struct MessageCompiler<'e> {
    enums: &'e mut HashMap<String, Arc<EnumNames>>,
    timestamps: Vec<Vec<usize>>,
}

impl MessageCompiler<'_> {
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
            if reader.fields.iter().any(|f| f.number == field.number()) {
                return Err(format!(
                    "`{}` is read both as a value and as a message",
                    target.path[..=depth].join(".")
                ));
            }
            let nested = self.message(&child, &through, depth + 1)?;
            reader.fields.push(FieldReader {
                number: field.number(),
                read: FieldRead::Message(nested),
            });
        }
        reader.fields.sort_by_key(|field| field.number);
        self.oneofs(message, &mut reader);
        Ok(reader)
    }

    /// Records the oneofs of `message` that hold a field read here: reading one member clears
    /// what the others filled.
    fn oneofs(&self, message: &MessageDescriptor, reader: &mut MessageReader) {
        for oneof in message.oneofs() {
            let members: Vec<u32> = oneof.fields().map(|f| f.number()).collect();
            let read: Vec<&FieldReader> = reader
                .fields
                .iter()
                .filter(|f| members.contains(&f.number))
                .collect();
            if read.is_empty() {
                continue;
            }
            // Only the members read here fill anything: reading any member clears them.
            let filled_by: Vec<(u32, Filled)> = read
                .iter()
                .map(|field| {
                    let mut filled = Filled::default();
                    field.read.filled(&self.timestamps, &mut filled);
                    (field.number, filled)
                })
                .collect();
            let index = reader.oneofs.len();
            reader
                .oneof_members
                .extend(members.iter().map(|&number| (number, index)));
            reader.oneofs.push(filled_by);
        }
        reader.oneof_members.sort_unstable();
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
                        .filter(|scalar| converts_to(scalar, target.field_type))
                        .ok_or_else(|| unresolvable(format!("a message `{name}`")))?;
                    FieldRead::Wrapper {
                        scalar,
                        into: vec![target.index],
                    }
                }
            },
            kind => {
                let scalar = self
                    .scalar(&kind)
                    .filter(|scalar| converts_to(scalar, target.field_type))
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

    fn scalar(&mut self, kind: &Kind) -> Option<Scalar> {
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
                let names = self
                    .enums
                    .entry(descriptor.full_name().to_string())
                    .or_insert_with(|| {
                        let mut names: Vec<(i32, Arc<str>)> = descriptor
                            .values()
                            .map(|value| (value.number(), Arc::from(value.name())))
                            .collect();
                        // An alias (allow_alias) names a number twice: the first name counts.
                        names.sort_by_key(|(number, _)| *number);
                        names.dedup_by_key(|(number, _)| *number);
                        Arc::new(EnumNames {
                            names,
                            closed: descriptor.parent_file().syntax() == Syntax::Proto2,
                        })
                    });
                Scalar::Enum(Arc::clone(names))
            }
            Kind::Bytes | Kind::Message(_) => return None,
        })
    }
}

/// Whether a value of this type converts to a declared field of `field_type`.
fn converts_to(scalar: &Scalar, field_type: FieldType) -> bool {
    match field_type {
        FieldType::String => matches!(scalar, Scalar::String | Scalar::Enum(_)),
        FieldType::I64 => scalar.is_integer(),
        FieldType::F64 => scalar.is_integer() || matches!(scalar, Scalar::Double | Scalar::Float),
        FieldType::Bool => matches!(scalar, Scalar::Bool),
        FieldType::Timestamp => scalar.is_integer() || matches!(scalar, Scalar::String),
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
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
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
