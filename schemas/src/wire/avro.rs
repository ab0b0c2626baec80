//! Avro: a writer schema compiled against the event schema ([`AvroPlan::compile`]), and a
//! datum read by it straight into the values validation types ([`AvroPlan::decode`]).
//!
//! A declared field takes the writer's field of the same name (`schema.fields[].path`, for a
//! nested one: `user.id`, through records and unions of null and a record). What converts:
//!
//! | declared | writer's type |
//! |---|---|
//! | string | string, enum (its symbol), uuid (as a string) |
//! | i64 | int, long, decimal of scale 0 (its unscaled value) |
//! | f64 | int, long, float, double, decimal (its value) |
//! | bool | boolean |
//! | timestamp | timestamp-millis, timestamp-micros, timestamp-nanos (to the microsecond below), date (midnight UTC), int and long (epoch milliseconds, as in JSON), string (RFC 3339, as in JSON) |
//!
//! A union of null and such types makes the field optional in the data: null is treated as a
//! missing value; a union branch that does not convert refuses only the records holding it, as a
//! wrong type. Anything else (bytes, fixed, arrays, maps, records, time-of-day and
//! local-timestamp types, a union with neither null nor a converting branch) does not resolve,
//! and neither does a writer schema without a required field: its records are refused as
//! `unresolvable_schema`. The values then pass the same checks as JSON values (NUL, lengths,
//! magnitudes, ranges), so the two formats refuse alike.
//!
//! Fields the event schema does not declare are skipped without being built. A datum that
//! ends early, has bytes left over, names a union branch or enum symbol that does not exist,
//! holds text that is not UTF-8, or nests deeper than [`MAX_DEPTH`] is `undecodable`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, RecordSchema, UuidSchema};

use super::Target;
use crate::field::{FieldDef, FieldType};
use crate::raw_value::RawValue;

/// The deepest nesting of records, arrays, maps and unions a datum may have.
pub const MAX_DEPTH: usize = 64;

/// A writer schema compiled against the event schema.
#[derive(Debug)]
pub struct AvroPlan {
    root: Vec<ReadField>,
    skips: Vec<Skip>,
    fields: usize,
}

/// One writer field of a record on the way to a declared field.
#[derive(Debug)]
enum ReadField {
    /// Read by no declared field.
    Skip(SkipId),
    /// Read into declared field `field`.
    Leaf { field: usize, leaf: Leaf },
    /// A union of leaves (null among them, perhaps) read into declared field `field`.
    UnionLeaf {
        field: usize,
        branches: Vec<Option<Leaf>>,
    },
    /// A record holding declared fields deeper down.
    Record(Vec<ReadField>),
    /// A union of null and a record holding declared fields (`None`: a branch that holds
    /// none of them, skipped).
    UnionRecord(Vec<UnionBranch>),
}

#[derive(Debug)]
enum UnionBranch {
    Skip(SkipId),
    Record(Vec<ReadField>),
}

/// How one value is read into a declared field's raw value.
#[derive(Debug, Clone)]
enum Leaf {
    Boolean,
    /// int or long, as an integer.
    Long,
    Float,
    Double,
    /// string or uuid, as text.
    Text,
    Enum(Arc<[Arc<str>]>),
    /// A long of milliseconds since the epoch.
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    /// An int of days since the epoch.
    Date,
    /// Two's complement big-endian bytes; `fixed`: their count when the decimal is a fixed.
    Decimal {
        scale: u32,
        fixed: Option<usize>,
    },
    /// A union branch of a type that does not convert: passed over, and the record refused as
    /// a wrong type naming it (as JSON refuses only the records that hold a wrong value).
    Other {
        skip: SkipId,
        kind: &'static str,
    },
}

type SkipId = usize;

/// How a value read by no declared field is passed over.
#[derive(Debug, Clone)]
enum Skip {
    Null,
    Boolean,
    /// int, long, enum, date, times: one zig-zag varint.
    Varint,
    Float,
    Double,
    /// bytes and string: a length, then that many bytes.
    Bytes,
    Fixed(usize),
    Record(Vec<SkipId>),
    Union(Vec<SkipId>),
    Array(SkipId),
    Map(SkipId),
}

/// Why a datum does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl AvroPlan {
    /// Compiles a writer schema's text (the registry's `schema`) against the event schema;
    /// `Err` says why it does not resolve.
    pub fn compile(fields: &[FieldDef], writer_schema: &str) -> Result<Self, String> {
        // The reason is copied into every refused record's dead letter: kept short.
        Self::compile_unbounded(fields, writer_schema)
            .map_err(|why| crate::quote::quote_bounded(&why, REASON_MAX_CHARS))
    }

    fn compile_unbounded(fields: &[FieldDef], writer_schema: &str) -> Result<Self, String> {
        let schema =
            Schema::parse_str(writer_schema).map_err(|e| format!("not an Avro schema: {e}"))?;
        let resolved = apache_avro::schema::ResolvedSchema::try_from(&schema)
            .map_err(|e| format!("the Avro schema's names do not resolve: {e}"))?;
        let names: HashMap<Name, &Schema> = resolved
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), *schema))
            .collect();
        let mut compiler = Compiler {
            names: &names,
            skips: Vec::new(),
            skip_of_name: HashMap::new(),
        };
        let Schema::Record(record) = compiler.deref(&schema)? else {
            return Err("the writer schema is not a record".into());
        };
        let targets = Target::all(fields);
        let refs: Vec<&Target<'_>> = targets.iter().collect();
        let root = compiler.record(record, &refs, 0)?;
        // A declared field the writer schema does not have: never present.
        let found = declared_fields_read(&root);
        for target in &targets {
            if target.required && !found.contains(&target.index) {
                return Err(format!(
                    "the writer schema has no field `{}` for the required field `{}`",
                    target.path.join("."),
                    target.name
                ));
            }
        }
        Ok(Self {
            root,
            skips: compiler.skips,
            fields: fields.len(),
        })
    }

    /// Reads one datum (the payload after the wire format's header) into one raw value per
    /// declared field, in declaration order (`None`: absent).
    pub(crate) fn decode<'a>(
        &self,
        body: &'a [u8],
        values: &mut Vec<Option<RawValue<'a>>>,
    ) -> Result<(), DecodeError> {
        values.clear();
        values.resize_with(self.fields, || None);
        let mut reader = Reader {
            bytes: body,
            at: 0,
            items: 0,
        };
        self.read_record(&self.root, &mut reader, values, 0)?;
        if reader.at != body.len() {
            return Err(DecodeError(format!(
                "{} bytes are left after the record",
                body.len() - reader.at
            )));
        }
        Ok(())
    }

    fn read_record<'a>(
        &self,
        fields: &[ReadField],
        reader: &mut Reader<'a>,
        values: &mut [Option<RawValue<'a>>],
        depth: usize,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError(format!("nested deeper than {MAX_DEPTH}")));
        }
        for field in fields {
            match field {
                ReadField::Skip(skip) => self.skip(*skip, reader, depth + 1)?,
                ReadField::Leaf { field, leaf } => values[*field] = Some(reader.leaf(leaf)?),
                ReadField::UnionLeaf { field, branches } => {
                    let branch = reader.branch(branches.len())?;
                    values[*field] = match &branches[branch] {
                        Some(Leaf::Other { skip, kind }) => {
                            self.skip(*skip, reader, depth + 1)?;
                            Some(RawValue::Other(kind))
                        }
                        Some(leaf) => Some(reader.leaf(leaf)?),
                        None => Some(RawValue::Null),
                    };
                }
                ReadField::Record(inner) => self.read_record(inner, reader, values, depth + 1)?,
                ReadField::UnionRecord(branches) => {
                    match &branches[reader.branch(branches.len())?] {
                        UnionBranch::Skip(skip) => self.skip(*skip, reader, depth + 1)?,
                        UnionBranch::Record(inner) => {
                            self.read_record(inner, reader, values, depth + 1)?
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn skip(&self, skip: SkipId, reader: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError(format!("nested deeper than {MAX_DEPTH}")));
        }
        match &self.skips[skip] {
            Skip::Null => {}
            Skip::Boolean => {
                reader.take(1)?;
            }
            Skip::Varint => {
                reader.long()?;
            }
            Skip::Float => {
                reader.take(4)?;
            }
            Skip::Double => {
                reader.take(8)?;
            }
            Skip::Bytes => {
                reader.bytes()?;
            }
            Skip::Fixed(size) => {
                reader.take(*size)?;
            }
            Skip::Record(fields) => {
                for field in fields {
                    self.skip(*field, reader, depth + 1)?;
                }
            }
            Skip::Union(branches) => {
                let branch = reader.branch(branches.len())?;
                self.skip(branches[branch], reader, depth + 1)?;
            }
            Skip::Array(item) => {
                self.skip_blocks(reader, |plan, reader| plan.skip(*item, reader, depth + 1))?
            }
            Skip::Map(value) => self.skip_blocks(reader, |plan, reader| {
                reader.bytes()?;
                plan.skip(*value, reader, depth + 1)
            })?,
        }
        Ok(())
    }

    /// Passes over an array's or a map's blocks: a count, then that many items (a negative
    /// count: its magnitude, then the block's size in bytes), until a count of 0.
    fn skip_blocks(
        &self,
        reader: &mut Reader<'_>,
        item: impl Fn(&Self, &mut Reader<'_>) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        loop {
            let count = reader.long()?;
            if count == 0 {
                return Ok(());
            }
            let count = if count < 0 {
                let size = reader.long()?;
                let size = usize::try_from(size)
                    .map_err(|_| DecodeError(format!("a block of {size} bytes")))?;
                // The block's size lets it be passed over whole.
                reader.count_items(count.unsigned_abs())?;
                reader.take(size)?;
                continue;
            } else {
                count.unsigned_abs()
            };
            reader.count_items(count)?;
            for _ in 0..count {
                item(self, reader)?;
            }
        }
    }
}

/// The most characters of a reason kept (it is copied into each refused record's dead letter).
const REASON_MAX_CHARS: usize = 300;

/// The declared fields a compiled record reads, at any depth.
fn declared_fields_read(fields: &[ReadField]) -> Vec<usize> {
    let mut found = Vec::new();
    for field in fields {
        match field {
            ReadField::Skip(_) => {}
            ReadField::Leaf { field, .. } | ReadField::UnionLeaf { field, .. } => {
                found.push(*field)
            }
            ReadField::Record(inner) => found.extend(declared_fields_read(inner)),
            ReadField::UnionRecord(branches) => {
                for branch in branches {
                    if let UnionBranch::Record(inner) = branch {
                        found.extend(declared_fields_read(inner));
                    }
                }
            }
        }
    }
    found
}

struct Compiler<'n> {
    names: &'n HashMap<Name, &'n Schema>,
    skips: Vec<Skip>,
    skip_of_name: HashMap<Name, SkipId>,
}

impl<'n> Compiler<'n> {
    /// A schema with a reference to a named type replaced by the type.
    fn deref<'s>(&self, schema: &'s Schema) -> Result<&'s Schema, String>
    where
        'n: 's,
    {
        match schema {
            Schema::Ref { name } => self
                .names
                .get(name)
                .copied()
                .ok_or_else(|| format!("the type `{}` is not defined", name.fullname(None))),
            other => Ok(other),
        }
    }

    /// The writer's record `record`, whose fields are at `depth` of the targets' paths.
    fn record(
        &mut self,
        record: &RecordSchema,
        targets: &[&Target<'_>],
        depth: usize,
    ) -> Result<Vec<ReadField>, String> {
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let here: Vec<&Target<'_>> = targets
                .iter()
                .copied()
                .filter(|t| t.path.get(depth) == Some(&field.name.as_str()))
                .collect();
            let ending = here.iter().filter(|t| t.path.len() == depth + 1).count();
            let read = if here.is_empty() {
                ReadField::Skip(self.skip(&field.schema)?)
            } else if let [target] = here.as_slice()
                && ending == 1
            {
                self.leaf_field(target, &field.schema)?
            } else if ending > 0 {
                return Err(format!(
                    "`{}` is read by more than one declared field, or is both a value and a record",
                    here[0].path[..=depth].join(".")
                ));
            } else {
                self.nested(&here, &field.schema, depth + 1)?
            };
            fields.push(read);
        }
        Ok(fields)
    }

    /// A writer field that holds declared fields deeper down: a record, or a union of null
    /// and a record.
    fn nested(
        &mut self,
        targets: &[&Target<'_>],
        schema: &Schema,
        depth: usize,
    ) -> Result<ReadField, String> {
        let path = || targets[0].path[..depth].join(".");
        match self.deref(schema)? {
            Schema::Record(record) => Ok(ReadField::Record(self.record(record, targets, depth)?)),
            Schema::Union(union) => {
                let mut branches = Vec::with_capacity(union.variants().len());
                for variant in union.variants() {
                    branches.push(match self.deref(variant)? {
                        Schema::Record(record) => {
                            UnionBranch::Record(self.record(record, targets, depth)?)
                        }
                        Schema::Null => UnionBranch::Skip(self.skip(variant)?),
                        other => {
                            return Err(format!(
                                "`{}` is a union with a {} branch: only null and a record can hold declared fields",
                                path(),
                                kind_of(other)
                            ));
                        }
                    });
                }
                Ok(ReadField::UnionRecord(branches))
            }
            other => Err(format!(
                "`{}` is a {}, not a record holding `{}`",
                path(),
                kind_of(other),
                targets[0].path.join(".")
            )),
        }
    }

    /// A writer field read into a declared field.
    fn leaf_field(&mut self, target: &Target<'_>, schema: &Schema) -> Result<ReadField, String> {
        match self.deref(schema)? {
            Schema::Union(union) => {
                let mut branches = Vec::with_capacity(union.variants().len());
                let mut refused = None;
                for variant in union.variants() {
                    let variant = self.deref(variant)?;
                    branches.push(match variant {
                        Schema::Null => None,
                        other => Some(match leaf(target, other) {
                            Ok(leaf) => leaf,
                            Err(why) => {
                                refused.get_or_insert(why);
                                Leaf::Other {
                                    skip: self.skip(other)?,
                                    kind: avro_kind_of(other),
                                }
                            }
                        }),
                    });
                }
                // A union that holds a converting value or null reads those, and refuses the
                // records holding another branch; one with neither does not resolve at all.
                let readable = branches
                    .iter()
                    .any(|leaf| !matches!(leaf, Some(Leaf::Other { .. })));
                match refused {
                    Some(why) if !readable => Err(why),
                    _ => Ok(ReadField::UnionLeaf {
                        field: target.index,
                        branches,
                    }),
                }
            }
            other => Ok(ReadField::Leaf {
                field: target.index,
                leaf: leaf(target, other)?,
            }),
        }
    }

    /// How a value of `schema` is passed over.
    fn skip(&mut self, schema: &Schema) -> Result<SkipId, String> {
        let schema = self.deref(schema)?;
        let named = match schema {
            Schema::Record(record) => Some(&record.name),
            _ => None,
        };
        if let Some(name) = named
            && let Some(&id) = self.skip_of_name.get(name)
        {
            return Ok(id);
        }
        let skip = match schema {
            Schema::Null => Skip::Null,
            Schema::Boolean => Skip::Boolean,
            Schema::Int
            | Schema::Long
            | Schema::Enum(_)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Skip::Varint,
            Schema::Float => Skip::Float,
            Schema::Double => Skip::Double,
            Schema::Bytes
            | Schema::String
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::String | UuidSchema::Bytes) => Skip::Bytes,
            Schema::Uuid(UuidSchema::Fixed(fixed)) | Schema::Fixed(fixed) => {
                Skip::Fixed(fixed.size)
            }
            Schema::Duration(_) => Skip::Fixed(12),
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Bytes => Skip::Bytes,
                InnerDecimalSchema::Fixed(fixed) => Skip::Fixed(fixed.size),
            },
            Schema::Array(array) => {
                let item = self.skip(&array.items)?;
                Skip::Array(item)
            }
            Schema::Map(map) => {
                let value = self.skip(&map.types)?;
                Skip::Map(value)
            }
            Schema::Union(union) => {
                let mut branches = Vec::with_capacity(union.variants().len());
                for variant in union.variants() {
                    branches.push(self.skip(variant)?);
                }
                Skip::Union(branches)
            }
            Schema::Record(record) => {
                // Reserved before its fields, which may refer to it (a recursive type).
                let id = self.skips.len();
                self.skips.push(Skip::Null);
                self.skip_of_name.insert(record.name.clone(), id);
                let mut fields = Vec::with_capacity(record.fields.len());
                for field in &record.fields {
                    fields.push(self.skip(&field.schema)?);
                }
                self.skips[id] = Skip::Record(fields);
                return Ok(id);
            }
            Schema::Ref { .. } => unreachable!("dereferenced above"),
        };
        self.skips.push(skip);
        Ok(self.skips.len() - 1)
    }
}

/// How a value of the writer's `schema` (not a union) is read into `target`, or why it cannot.
fn leaf(target: &Target<'_>, schema: &Schema) -> Result<Leaf, String> {
    use FieldType as F;
    let leaf = match (target.field_type, schema) {
        (F::String, Schema::String | Schema::Uuid(UuidSchema::String)) => Some(Leaf::Text),
        (F::String, Schema::Enum(symbols)) => Some(Leaf::Enum(
            symbols
                .symbols
                .iter()
                .map(|s| Arc::from(s.as_str()))
                .collect(),
        )),
        (F::I64 | F::F64 | F::Timestamp, Schema::Int | Schema::Long) => {
            Some(match target.field_type {
                F::Timestamp => Leaf::TimestampMillis,
                _ => Leaf::Long,
            })
        }
        (F::F64, Schema::Float) => Some(Leaf::Float),
        (F::F64, Schema::Double) => Some(Leaf::Double),
        (F::I64 | F::F64, Schema::Decimal(decimal))
            if target.field_type == F::F64 || decimal.scale == 0 =>
        {
            Some(Leaf::Decimal {
                scale: u32::try_from(decimal.scale).unwrap_or(u32::MAX),
                fixed: match &decimal.inner {
                    InnerDecimalSchema::Bytes => None,
                    InnerDecimalSchema::Fixed(fixed) => Some(fixed.size),
                },
            })
        }
        (F::Bool, Schema::Boolean) => Some(Leaf::Boolean),
        (F::Timestamp, Schema::TimestampMillis) => Some(Leaf::TimestampMillis),
        (F::Timestamp, Schema::TimestampMicros) => Some(Leaf::TimestampMicros),
        (F::Timestamp, Schema::TimestampNanos) => Some(Leaf::TimestampNanos),
        (F::Timestamp, Schema::Date) => Some(Leaf::Date),
        (F::Timestamp, Schema::String) => Some(Leaf::Text),
        _ => None,
    };
    leaf.ok_or_else(|| {
        format!(
            "the field `{}` is {}, and the writer's `{}` is a {} (see the README for what converts)",
            target.name,
            target.field_type.name(),
            target.path.join("."),
            kind_of(schema)
        )
    })
}

/// A schema's kind as messages name it.
fn kind_of(schema: &Schema) -> &'static str {
    match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int => "int",
        Schema::Long => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes => "bytes",
        Schema::String => "string",
        Schema::Array(_) => "array",
        Schema::Map(_) => "map",
        Schema::Union(_) => "union",
        Schema::Record(_) => "record",
        Schema::Enum(_) => "enum",
        Schema::Fixed(_) => "fixed",
        Schema::Decimal(_) => "decimal",
        Schema::BigDecimal => "big-decimal",
        Schema::Uuid(_) => "uuid",
        Schema::Date => "date",
        Schema::TimeMillis => "time-millis",
        Schema::TimeMicros => "time-micros",
        Schema::TimestampMillis => "timestamp-millis",
        Schema::TimestampMicros => "timestamp-micros",
        Schema::TimestampNanos => "timestamp-nanos",
        Schema::LocalTimestampMillis => "local-timestamp-millis",
        Schema::LocalTimestampMicros => "local-timestamp-micros",
        Schema::LocalTimestampNanos => "local-timestamp-nanos",
        Schema::Duration(_) => "duration",
        Schema::Ref { .. } => "reference",
    }
}

/// A writer type as a wrong-type refusal names it.
fn avro_kind_of(schema: &Schema) -> &'static str {
    match schema {
        Schema::Boolean => "an Avro boolean",
        Schema::Int | Schema::Long => "an Avro integer",
        Schema::Float | Schema::Double => "an Avro floating-point number",
        Schema::String => "an Avro string",
        Schema::Bytes | Schema::Fixed(_) => "Avro bytes",
        Schema::Array(_) => "an Avro array",
        Schema::Map(_) => "an Avro map",
        Schema::Record(_) => "an Avro record",
        Schema::Enum(_) => "an Avro enum",
        _ => "an Avro value of another logical type",
    }
}

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A cursor over a datum's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Array and map items counted so far: at most one per byte of the datum, so that a
    /// hostile count of items of size 0 cannot spin.
    items: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                DecodeError(format!(
                    "the datum ends early: {count} bytes wanted at byte {}, {} left",
                    self.at,
                    self.bytes.len() - self.at
                ))
            })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    /// A zig-zag varint of at most 10 bytes.
    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.take(1)?.first().unwrap_or(&0);
            if shift == 63 && byte > 1 {
                return Err(DecodeError("a varint overflows 64 bits".into()));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(DecodeError("a varint longer than 10 bytes".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let length = self.long()?;
        let length =
            usize::try_from(length).map_err(|_| DecodeError(format!("a length of {length}")))?;
        self.take(length)
    }

    fn branch(&mut self, branches: usize) -> Result<usize, DecodeError> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .filter(|&index| index < branches)
            .ok_or_else(|| {
                DecodeError(format!(
                    "union branch {index} of a union of {branches} branches"
                ))
            })
    }

    fn count_items(&mut self, count: u64) -> Result<(), DecodeError> {
        self.items = self.items.saturating_add(count);
        if self.items > self.bytes.len() as u64 {
            return Err(DecodeError(format!(
                "more array or map items ({}) than the datum has bytes",
                self.items
            )));
        }
        Ok(())
    }

    fn text(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|e| DecodeError(format!("text that is not UTF-8: {e}")))
    }

    fn leaf(&mut self, leaf: &Leaf) -> Result<RawValue<'a>, DecodeError> {
        Ok(match leaf {
            Leaf::Boolean => match self.take(1)?[0] {
                0 => RawValue::Bool(false),
                1 => RawValue::Bool(true),
                other => return Err(DecodeError(format!("a boolean byte {other}"))),
            },
            Leaf::Long | Leaf::TimestampMillis => RawValue::I64(self.long()?),
            Leaf::Float => {
                let bytes: [u8; 4] = self.take(4)?.try_into().unwrap_or_default();
                RawValue::F64(f64::from(f32::from_le_bytes(bytes)))
            }
            Leaf::Double => {
                let bytes: [u8; 8] = self.take(8)?.try_into().unwrap_or_default();
                RawValue::F64(f64::from_le_bytes(bytes))
            }
            Leaf::Text => RawValue::String(Cow::Borrowed(self.text()?)),
            Leaf::Enum(symbols) => {
                let index = self.long()?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|index| symbols.get(index))
                    .ok_or_else(|| {
                        DecodeError(format!(
                            "enum symbol {index} of an enum of {}",
                            symbols.len()
                        ))
                    })?;
                RawValue::Symbol(Arc::clone(symbol))
            }
            Leaf::TimestampMicros => RawValue::Micros(self.long()?),
            Leaf::TimestampNanos => RawValue::Micros(self.long()?.div_euclid(1_000)),
            Leaf::Date => {
                // Out of i64's range only far outside the storable range, which refuses it.
                let days = self.long()?;
                RawValue::Micros(days.saturating_mul(MICROS_PER_DAY))
            }
            Leaf::Decimal { scale, fixed } => {
                let bytes = match fixed {
                    Some(size) => self.take(*size)?,
                    None => self.bytes()?,
                };
                decimal(bytes, *scale)
            }
            // Only ever inside a union, whose reader passes it over (`read_record`).
            Leaf::Other { kind, .. } => RawValue::Other(kind),
        })
    }
}

/// A decimal's two's complement big-endian bytes as a raw value: an integer when it has no
/// scale and fits i64, otherwise its value as an f64, rounded from the exact decimal as a JSON
/// number's text is (infinite beyond f64's range, which validation refuses).
pub(crate) fn decimal(bytes: &[u8], scale: u32) -> RawValue<'static> {
    // Past 512 bytes (1,233 digits) no scale a writer uses brings it within f64: out of range.
    // Past a scale of 2,000, 1,233 digits round to 0, as JSON's `1e-2000` does.
    if bytes.len() > 512 {
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        return RawValue::F64(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if scale > 2_000 {
        return RawValue::F64(0.0);
    }
    if bytes.len() <= 16 {
        // Sign-extended into an i128, no allocation for the common sizes.
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        let mut value: i128 = if negative { -1 } else { 0 };
        for &byte in bytes {
            value = (value << 8) | i128::from(byte);
        }
        if scale == 0 {
            return match i64::try_from(value) {
                Ok(value) => RawValue::I64(value),
                Err(_) => RawValue::F64(value as f64), // exact to the rounding of i128 → f64
            };
        }
        return RawValue::F64(
            format!("{value}e-{scale}")
                .parse::<f64>()
                .unwrap_or(f64::NAN),
        );
    }
    let unscaled = num_bigint::BigInt::from_signed_bytes_be(bytes);
    if scale == 0
        && let Ok(value) = i64::try_from(&unscaled)
    {
        return RawValue::I64(value);
    }
    // `digits` × 10^-scale, parsed as Rust parses a decimal literal: correctly rounded.
    let text = format!("{unscaled}e-{scale}");
    RawValue::F64(text.parse::<f64>().unwrap_or(f64::NAN))
}
