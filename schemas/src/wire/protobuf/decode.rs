//! A payload read by a compiled plan: the message indexes, then the message's fields.

use std::borrow::Cow;

use super::{
    EntryReader, FieldRead, MAX_GROUP_DEPTH, MessageEntry, MessageReader, ProtobufError,
    ProtobufPlan, Scalar,
};
use crate::raw_value::RawValue;

/// The wire types of Protobuf's encoding.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// The largest field number Protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// The longest list of message indexes read.
const MAX_MESSAGE_INDEXES: i64 = 64;

/// Why a message does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DecodeError(String);

pub(super) fn decode<'a>(
    plan: &ProtobufPlan,
    body: &'a [u8],
    values: &mut Vec<Option<RawValue<'a>>>,
) -> Result<(), ProtobufError> {
    let undecodable = |e: DecodeError| ProtobufError::Undecodable(e.0);
    let mut reader = Reader { bytes: body, at: 0 };
    let entry = message_named(plan, &mut reader).map_err(undecodable)?;
    let EntryReader { root, timestamps } = entry.reader.as_ref().map_err(|why| {
        ProtobufError::Unresolvable(format!("message `{}`: {why}", entry.full_name))
    })?;
    values.clear();
    values.resize_with(plan.fields, || None);
    let mut stamps: Vec<Option<Stamp>> = vec![None; timestamps.len()];
    Read {
        values: &mut *values,
        stamps: &mut stamps,
    }
    .message(root, &body[reader.at..])
    .map_err(undecodable)?;
    for (stamp, into) in stamps.iter().zip(timestamps) {
        if let Some(stamp) = stamp {
            for &field in into {
                values[field] = Some(stamp.value());
            }
        }
    }
    Ok(())
}

/// The message the payload's message indexes name.
fn message_named<'p>(
    plan: &'p ProtobufPlan,
    reader: &mut Reader<'_>,
) -> Result<&'p MessageEntry, DecodeError> {
    let count = zigzag(reader.varint()?);
    let path: Vec<i64> = match count {
        0 => vec![0],
        1..=MAX_MESSAGE_INDEXES => (0..count)
            .map(|_| reader.varint().map(zigzag))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(DecodeError(format!(
                "a list of {count} message indexes (at most {MAX_MESSAGE_INDEXES})"
            )));
        }
    };
    let names_none = || {
        DecodeError(format!(
            "the message indexes {path:?} name no message of the schema"
        ))
    };
    let mut entries = &plan.messages;
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

/// A `google.protobuf.Timestamp` as read so far.
#[derive(Debug, Clone, Copy, Default)]
struct Stamp {
    seconds: i64,
    nanos: i32,
}

impl Stamp {
    /// Microseconds since the epoch, the nanoseconds floored (beyond i64 only far outside the
    /// storable range, which validation refuses); nanos outside a second is not a Timestamp.
    fn value(self) -> RawValue<'static> {
        if !(0..1_000_000_000).contains(&self.nanos) {
            return RawValue::Other("a Timestamp whose nanos lie outside 0 to 999,999,999");
        }
        RawValue::Micros(
            self.seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(self.nanos / 1_000)),
        )
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
                if depth >= MAX_GROUP_DEPTH {
                    return Err(DecodeError(format!(
                        "groups nested deeper than {MAX_GROUP_DEPTH}"
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

    /// A scalar of the given type (its wire type already checked); `None`: a number with no
    /// name in a closed enum, which Protobuf reads as an unknown field.
    fn scalar(&mut self, scalar: &Scalar) -> Result<Option<RawValue<'a>>, DecodeError> {
        let integer = |value: u64| match i64::try_from(value) {
            Ok(value) => RawValue::I64(value),
            Err(_) => RawValue::U64(value),
        };
        Ok(Some(match scalar {
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
            Scalar::Enum(names) => return Ok(names.value(self.varint()? as i32)),
            Scalar::String => {
                let bytes = self.len_delimited()?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| DecodeError(format!("text that is not UTF-8: {e}")))?;
                RawValue::String(Cow::Borrowed(text))
            }
        }))
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

fn wire_type_of(scalar: &Scalar) -> u8 {
    match scalar {
        Scalar::Double | Scalar::Fixed64 | Scalar::Sfixed64 => FIXED64,
        Scalar::Float | Scalar::Fixed32 | Scalar::Sfixed32 => FIXED32,
        Scalar::String => LEN,
        _ => VARINT,
    }
}

/// One payload's reading: the declared fields' values and the timestamps gathered.
struct Read<'v, 'a> {
    values: &'v mut Vec<Option<RawValue<'a>>>,
    stamps: &'v mut Vec<Option<Stamp>>,
}

impl<'a> Read<'_, 'a> {
    /// Reads a present message. Paths through messages are as deep as the config's (a few
    /// levels); groups, skipped, are bounded by [`MAX_GROUP_DEPTH`].
    fn message(&mut self, reader: &MessageReader, bytes: &'a [u8]) -> Result<(), DecodeError> {
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
            let oneof = reader
                .oneof_members
                .binary_search_by_key(&number, |(member, _)| *member)
                .ok()
                .map(|at| reader.oneof_members[at].1);
            let Ok(at) = reader.fields.binary_search_by_key(&number, |f| f.number) else {
                if let Some(oneof) = oneof {
                    self.clear_other_members(reader, oneof, number);
                }
                input.skip(number, wire_type, 0)?;
                continue;
            };
            let read = &reader.fields[at].read;
            // A scalar clears the other members once read: a closed enum's number with no
            // name is an unknown field, which leaves the oneof as it was.
            if let (Some(oneof), false) = (oneof, matches!(read, FieldRead::Scalar { .. })) {
                self.clear_other_members(reader, oneof, number);
            }
            match read {
                FieldRead::Scalar { scalar, into } => {
                    input.expect(number, wire_type, wire_type_of(scalar))?;
                    if let Some(value) = input.scalar(scalar)? {
                        if let Some(oneof) = oneof {
                            self.clear_other_members(reader, oneof, number);
                        }
                        self.set(into, value);
                    }
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
                            wrapper.expect(1, inner_type, wire_type_of(scalar))?;
                            if let Some(value) = wrapper.scalar(scalar)? {
                                self.set(into, value);
                            }
                        } else {
                            wrapper.skip(inner_number, inner_type, 0)?;
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
                            (other, inner_type) => timestamp.skip(other, inner_type, 0)?,
                        }
                    }
                }
                FieldRead::Message(nested) => {
                    input.expect(number, wire_type, LEN)?;
                    let inner = input.len_delimited()?;
                    self.message(nested, inner)?;
                }
            }
        }
        Ok(())
    }

    /// A oneof's member `number` was read: what the other members filled is gone.
    fn clear_other_members(&mut self, reader: &MessageReader, oneof: usize, number: u32) {
        for (member, filled) in &reader.oneofs[oneof] {
            if *member == number {
                continue;
            }
            for &field in &filled.fields {
                self.values[field] = None;
            }
            for &slot in &filled.slots {
                self.stamps[slot] = None;
            }
        }
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
