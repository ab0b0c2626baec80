//! Protobuf decoding, against prost-reflect's dynamic messages as the independent encoder and
//! decoder, and against JSON validation of the same values as the oracle of what is refused.

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value as Proto};

use protox::file::{ChainFileResolver, GoogleFileResolver};

use super::compile::{FILE_NAME, RegistryFile};
use super::*;
use crate::event_schema::{EventSchema, FieldType};
use crate::record::{Record, Rejection};
use crate::wire::fixtures::{Event, event_schema, field};
use crate::wire::{LoadedSchema, MAGIC_BYTE, WireFormat};

/// The writer schema of most tests: every declared field, with other fields around them (a
/// second message first, so that the event is message index 1).
const WRITER: &str = r#"
syntax = "proto3";
package braid.test;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

message Other { string nothing = 1; }

message Event {
  repeated string tags = 1;
  int64 ts = 2;
  map<string, double> attrs = 3;
  string user = 4;
  bytes digest = 5;
  sint64 qty = 6;
  google.protobuf.DoubleValue price = 7;
  optional bool member = 8;
  Event next = 9;
  google.protobuf.Timestamp seen_at = 10;
  Kind kind = 11;
  enum Kind { KIND_UNSET = 0; CLICK = 1; }
  message Inner { fixed64 x = 1; }
  Inner inner = 12;
}
"#;

/// The descriptor of `message` in `.proto` text, compiled by protox.
fn descriptor(text: &str, message: &str) -> MessageDescriptor {
    let mut resolver = ChainFileResolver::new();
    resolver.add(RegistryFile {
        source: text.to_string(),
    });
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file(FILE_NAME).unwrap();
    compiler
        .descriptor_pool()
        .get_message_by_name(message)
        .unwrap()
}

impl Event {
    fn message(&self, next: Option<DynamicMessage>) -> DynamicMessage {
        let event = descriptor(WRITER, "braid.test.Event");
        let mut message = DynamicMessage::new(event.clone());
        message.set_field_by_name(
            "tags",
            Proto::List(vec![Proto::String("a".into()), Proto::String("b".into())]),
        );
        message.set_field_by_name("ts", Proto::I64(self.ts_millis));
        message.set_field_by_name("user", Proto::String(self.user.clone()));
        message.set_field_by_name("digest", Proto::Bytes(vec![1, 2, 3].into()));
        message.set_field_by_name("qty", Proto::I64(self.qty));
        if let Some(price) = self.price {
            let field = event.get_field_by_name("price").unwrap();
            let prost_reflect::Kind::Message(wrapper) = field.kind() else {
                unreachable!()
            };
            let mut value = DynamicMessage::new(wrapper);
            value.set_field_by_name("value", Proto::F64(price));
            message.set_field(&field, Proto::Message(value));
        }
        if let Some(member) = self.member {
            message.set_field_by_name("member", Proto::Bool(member));
        }
        if let Some(next) = next {
            message.set_field_by_name("next", Proto::Message(next));
        }
        if let Some(micros) = self.seen_at_micros {
            message.set_field_by_name("seen_at", Proto::Message(stamp(&event, micros)));
        }
        message.set_field_by_name("kind", Proto::EnumNumber(1));
        message
    }
}

/// A `google.protobuf.Timestamp` at `micros`, for `Event.seen_at`.
fn stamp(event: &MessageDescriptor, micros: i64) -> DynamicMessage {
    let field = event.get_field_by_name("seen_at").unwrap();
    let prost_reflect::Kind::Message(timestamp) = field.kind() else {
        unreachable!()
    };
    let mut value = DynamicMessage::new(timestamp);
    value.set_field_by_name("seconds", Proto::I64(micros.div_euclid(1_000_000)));
    value.set_field_by_name(
        "nanos",
        Proto::I32((micros.rem_euclid(1_000_000) * 1_000 + 999) as i32),
    );
    value
}

/// `message` in the wire format under schema id 1, after the message indexes `indexes`.
fn framed(indexes: &[u8], message: &DynamicMessage) -> Vec<u8> {
    framed_bytes(indexes, &message.encode_to_vec())
}

fn framed_bytes(indexes: &[u8], body: &[u8]) -> Vec<u8> {
    let mut payload = vec![MAGIC_BYTE, 0, 0, 0, 1];
    payload.extend_from_slice(indexes);
    payload.extend_from_slice(body);
    payload
}

/// `Event` is the second top-level message: one index, 1 (zig-zag: count 2, index 2).
const EVENT: &[u8] = &[2, 2];

/// A Protobuf event schema with `writer` loaded as id 1, and the JSON one.
fn schemas_with(writer: &str) -> (EventSchema, EventSchema) {
    schemas_of(event_schema(WireFormat::protobuf()), writer)
}

fn schemas_of(proto: EventSchema, writer: &str) -> (EventSchema, EventSchema) {
    let loaded = match ProtobufPlan::compile(&proto.fields, writer) {
        Ok(plan) => LoadedSchema::Protobuf(plan),
        Err(detail) => LoadedSchema::Unresolvable(detail),
    };
    proto.wire.writer_schemas().unwrap().insert(1, loaded);
    let mut json = proto.clone();
    json.wire = WireFormat::Json;
    (proto, json)
}

fn code(result: &Result<Record, Rejection>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(rejection) => rejection.code(),
    }
}

/// Protobuf and JSON encodings of the same events give the same records, skipped fields
/// (repeated, maps, bytes, enums, a recursive message) notwithstanding.
#[test]
fn protobuf_reads_the_same_records_as_json() {
    let (proto, json) = schemas_with(WRITER);
    for i in 0..200 {
        let event = Event::valid(i);
        let next = (i % 4 == 0).then(|| Event::valid(i + 1).message(None));
        let from_proto = proto.validate(&framed(EVENT, &event.message(next)));
        let from_json = json.validate(event.json().as_bytes());
        assert_eq!(from_proto, from_json, "event {i}: {}", event.json());
        assert!(from_proto.is_ok(), "event {i}: {from_proto:?}");
    }
}

/// Hostile values refused by Protobuf exactly as by JSON: NUL, long strings, f64 extremes and
/// subnormals, i64 extremes, timestamps out of range.
#[test]
fn protobuf_refuses_what_json_refuses() {
    let (proto, json) = schemas_with(WRITER);
    let base = || Event::valid(2);
    let cases: Vec<(&str, Event)> = vec![
        (
            "nul",
            Event {
                user: "a\0b".into(),
                ..base()
            },
        ),
        (
            "long string",
            Event {
                user: "x".repeat(17),
                ..base()
            },
        ),
        (
            "longest string",
            Event {
                user: "x".repeat(16),
                ..base()
            },
        ),
        (
            "1e308",
            Event {
                price: Some(1e308),
                ..base()
            },
        ),
        (
            "subnormal",
            Event {
                price: Some(5e-324),
                ..base()
            },
        ),
        (
            "negative zero",
            Event {
                price: Some(-0.0),
                ..base()
            },
        ),
        (
            "i64 max",
            Event {
                qty: i64::MAX,
                ..base()
            },
        ),
        (
            "i64 min",
            Event {
                qty: i64::MIN,
                ..base()
            },
        ),
        (
            "event time before the range",
            Event {
                ts_millis: 0,
                ..base()
            },
        ),
        (
            "event time far out",
            Event {
                ts_millis: i64::MAX,
                ..base()
            },
        ),
        (
            "event time far before",
            Event {
                ts_millis: i64::MIN,
                ..base()
            },
        ),
        (
            "timestamp far out",
            Event {
                seen_at_micros: Some(i64::MAX / 2_000 * 1_000),
                ..base()
            },
        ),
        (
            "timestamp far before",
            Event {
                seen_at_micros: Some(-62_135_596_800_000_001),
                ..base()
            },
        ),
    ];
    for (name, event) in cases {
        let from_proto = proto.validate(&framed(EVENT, &event.message(None)));
        let from_json = json.validate(event.json().as_bytes());
        assert_eq!(
            code(&from_proto),
            code(&from_json),
            "{name}: {from_proto:?} / {from_json:?}"
        );
        if from_json.is_ok() {
            assert_eq!(from_proto, from_json, "{name}");
        }
    }
    // What JSON cannot write: NaN and infinities, refused as numbers out of range.
    for price in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX] {
        let event = Event {
            price: Some(price),
            ..base()
        };
        let from_proto = proto.validate(&framed(EVENT, &event.message(None)));
        assert_eq!(code(&from_proto), "number_out_of_range", "{price}");
    }
}

/// Confluent's message indexes pick the message; a list that names none is undecodable, and a
/// message that does not resolve refuses only its records.
#[test]
fn message_indexes_name_the_message() {
    // A map (whose entry type the descriptor nests), a group (likewise) and an enum come
    // before the nested messages: Confluent counts declared messages only.
    const NESTED: &str = r#"
syntax = "proto2";
message A {
  optional int64 ts = 1; optional string user = 2; optional int64 qty = 3;
  map<string, string> labels = 4;
  optional group Extra = 5 { optional string note = 6; }
  enum Kind { K = 0; }
  message B {
    optional int64 ts = 1; optional string user = 2; optional int64 qty = 3;
    message C { optional string other = 1; }
  }
  message E { optional int64 ts = 1; optional string user = 2; optional int64 qty = 3; }
}
message D { optional int64 ts = 1; optional string user = 2; optional int64 qty = 3; }
"#;
    let (proto, _) = schemas_with(NESTED);
    let body = |name: &str| {
        let mut message = DynamicMessage::new(descriptor(NESTED, name));
        message.set_field_by_name("ts", Proto::I64(1_767_225_600_000));
        message.set_field_by_name("user", Proto::String(name.into()));
        message.set_field_by_name("qty", Proto::I64(7));
        message.encode_to_vec()
    };
    let user = |payload: &[u8]| match proto.validate(payload) {
        Ok(record) => format!("{:?}", record.values[1]),
        Err(rejection) => rejection.code().to_string(),
    };
    // A lone 0 and the list [0] both name A.
    assert_eq!(
        user(&framed_bytes(&[0], &body("A"))),
        r#"Some(String("A"))"#
    );
    assert_eq!(
        user(&framed_bytes(&[2, 0], &body("A"))),
        r#"Some(String("A"))"#
    );
    // [0, 0]: A.B; [0, 1]: A.E; [1]: D.
    assert_eq!(
        user(&framed_bytes(&[4, 0, 0], &body("A.B"))),
        r#"Some(String("A.B"))"#
    );
    assert_eq!(
        user(&framed_bytes(&[4, 0, 2], &body("A.E"))),
        r#"Some(String("A.E"))"#
    );
    assert_eq!(
        user(&framed_bytes(&[2, 2], &body("D"))),
        r#"Some(String("D"))"#
    );
    // [0, 0, 0]: A.B.C has no ts: it does not resolve, and only its records are refused.
    let refused = proto.validate(&framed_bytes(&[6, 0, 0, 0], &[]));
    assert!(
        matches!(&refused, Err(Rejection::UnresolvableSchema { detail, .. }) if detail.contains("A.B.C")),
        "{refused:?}"
    );
    // Indexes that name no message, a negative count or index, a count past 64, a count
    // without its indexes.
    for indexes in [
        &[4u8, 2, 0][..],
        &[2, 4],
        &[1],
        &[2, 1],
        &[0x82, 0x01],
        &[4, 0],
        &[4, 0, 4],
    ] {
        assert_eq!(
            user(&framed_bytes(indexes, &body("A"))),
            "undecodable",
            "{indexes:?}"
        );
    }
}

/// Every truncation and every single-byte change of a payload: no panic, and undecodable
/// exactly when prost-reflect cannot decode the message either; when both decode, the declared
/// values are those prost-reflect reads.
#[test]
fn broken_payloads_decode_as_prost_reflect_does() {
    // Only declared fields, so that prost-reflect checks what Braid checks.
    const DECLARED: &str = r#"
syntax = "proto3";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message Event {
  int64 ts = 2; string user = 4; sint64 qty = 6; google.protobuf.DoubleValue price = 7;
  optional bool member = 8; google.protobuf.Timestamp seen_at = 10;
}
"#;
    let event = descriptor(DECLARED, "Event");
    let (proto, _) = schemas_with(DECLARED);
    let mut message = DynamicMessage::new(event.clone());
    message.set_field_by_name("ts", Proto::I64(1_767_225_600_000));
    message.set_field_by_name("user", Proto::String("someone".into()));
    message.set_field_by_name("qty", Proto::I64(-12_345));
    message.set_field_by_name("member", Proto::Bool(true));
    message.set_field_by_name(
        "seen_at",
        Proto::Message(stamp(&event, 1_767_225_600_123_456)),
    );
    let body = message.encode_to_vec();
    let mut tried = 0;
    let mut check = |body: &[u8]| {
        tried += 1;
        let ours = proto.validate(&framed_bytes(&[0], body));
        match DynamicMessage::decode(event.clone(), body) {
            Err(_) => assert_eq!(code(&ours), "undecodable", "{body:?}: {ours:?}"),
            Ok(theirs) => {
                assert_ne!(code(&ours), "undecodable", "{body:?}: {ours:?}");
                if let Ok(record) = &ours {
                    assert_eq!(record.values, values_of(&theirs), "{body:?}");
                }
            }
        }
    };
    for end in 0..body.len() {
        check(&body[..end]);
    }
    for at in 0..body.len() {
        for byte in [0u8, 1, 2, 3, 4, 5, 6, 7, 0x7f, 0x80, 0xff] {
            let mut changed = body.clone();
            changed[at] = byte;
            check(&changed);
        }
    }
    assert!(tried > 100);
}

/// The values validation should give a decoded `Event` of `broken_payloads…`' schema, read
/// from prost-reflect's message.
fn values_of(message: &DynamicMessage) -> Vec<Option<crate::record::Value>> {
    use crate::record::Value;
    let present = |name: &str| message.has_field_by_name(name);
    let get = |name: &str| message.get_field_by_name(name).unwrap().into_owned();
    let stamp = |value: Proto| {
        let stamp = value.as_message().unwrap().clone();
        let seconds = stamp
            .get_field_by_name("seconds")
            .unwrap()
            .as_i64()
            .unwrap();
        let nanos = stamp.get_field_by_name("nanos").unwrap().as_i32().unwrap();
        Value::Timestamp(seconds * 1_000_000 + i64::from(nanos) / 1_000)
    };
    let wrapped = |value: Proto| {
        let wrapper = value.as_message().unwrap().clone();
        wrapper
            .get_field_by_name("value")
            .unwrap()
            .as_f64()
            .unwrap()
    };
    vec![
        Some(Value::Timestamp(get("ts").as_i64().unwrap() * 1_000)),
        Some(Value::String(get("user").as_str().unwrap().into())),
        Some(Value::I64(get("qty").as_i64().unwrap())),
        present("price").then(|| Value::F64(wrapped(get("price")))),
        present("member").then(|| Value::Bool(get("member").as_bool().unwrap())),
        present("seen_at").then(|| stamp(get("seen_at"))),
    ]
}

/// Writer schemas that cannot be read: why names the field.
#[test]
fn writer_schemas_that_do_not_resolve() {
    let fields = event_schema(WireFormat::protobuf()).fields;
    let reason = |text: &str| ProtobufPlan::compile(&fields, text).unwrap_err();
    let with = |user: &str| {
        format!(
            "syntax = \"proto3\";\nimport \"google/protobuf/wrappers.proto\";\nmessage E {{ int64 ts = 1; {user} int64 qty = 3; }}"
        )
    };
    for (user, expected) in [
        ("bytes user = 2;", "a bytes"),
        ("repeated string user = 2;", "a repeated string"),
        ("map<string, string> user = 2;", "a map"),
        (
            "google.protobuf.Int64Value user = 2;",
            "google.protobuf.Int64Value",
        ),
        ("E user = 2;", "message `E`"),
        ("double user = 2;", "a double"),
        ("", "no field `user`"),
    ] {
        let why = reason(&with(user));
        assert!(
            why.contains(expected) && why.contains("user"),
            "{user}: {why}"
        );
    }
    assert!(reason("message {").contains("not a Protobuf schema"));
    assert!(reason("syntax = \"proto3\";").contains("no message"));
    assert!(
        reason("syntax = \"proto3\"; import \"other.proto\"; message E {}").contains("other.proto")
    );
    // A message that lacks a field refuses only its records: the schema compiles.
    assert!(ProtobufPlan::compile(&fields, &with("string user = 2;")).is_ok());
}

/// Paths through nested messages; wrappers; timestamps; enums by name; proto3 defaults; a
/// message field's occurrences merged; proto2 presence.
#[test]
fn nested_paths_defaults_and_merges() {
    const NESTED: &str = r#"
syntax = "proto3";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message Event {
  google.protobuf.Timestamp at = 1;
  User user = 2;
  Level level = 3;
  google.protobuf.Int64Value count = 4;
  string note = 5;
}
message User { string id = 1; google.protobuf.StringValue name = 2; }
enum Level { LOW = 0; HIGH = 1; }
"#;
    let mut schema = event_schema(WireFormat::protobuf());
    schema.fields = vec![
        FieldDef {
            path: Some("at".into()),
            ..field("ts", FieldType::Timestamp, true)
        },
        FieldDef {
            path: Some("user.id".into()),
            ..field("user_id", FieldType::String, true)
        },
        FieldDef {
            path: Some("user.name".into()),
            ..field("user_name", FieldType::String, false)
        },
        field("level", FieldType::String, true),
        field("count", FieldType::I64, false),
        field("note", FieldType::String, false),
    ];
    let (proto, _) = schemas_of(schema, NESTED);
    let tag = |number: u8, wire: u8| (number << 3) | wire;
    let len = |number: u8, body: &[u8]| {
        let mut field = vec![tag(number, 2), body.len() as u8];
        field.extend_from_slice(body);
        field
    };
    let at = len(
        1,
        &[
            tag(1, 0),
            0x80,
            0xf2,
            0xd6,
            0xca,
            0x06,
            tag(2, 0),
            0xe8,
            0x07,
        ],
    ); // 1767225600 s, 1000 ns
    let mut body = at.clone();
    body.extend(len(2, &len(1, b"u1")));
    let values = |payload: Vec<u8>| match proto.validate(&framed_bytes(&[0], &payload)) {
        Ok(record) => format!("{:?}", record.values),
        Err(rejection) => rejection.code().to_string(),
    };
    // The level's default (LOW) and the note's ("") hold; the name and count are missing.
    assert_eq!(
        values(body.clone()),
        r#"[Some(Timestamp(1767225600000001)), Some(String("u1")), None, Some(String("LOW")), None, Some(String(""))]"#
    );
    // A second occurrence of `user` merges: the name joins the id.
    let mut merged = body.clone();
    merged.extend(len(2, &len(2, &len(1, b"Ann"))));
    merged.extend([tag(3, 0), 1]);
    merged.extend(len(4, &[]));
    assert_eq!(
        values(merged),
        r#"[Some(Timestamp(1767225600000001)), Some(String("u1")), Some(String("Ann")), Some(String("HIGH")), Some(I64(0)), Some(String(""))]"#
    );
    // No `user`: its id is missing (required); an enum number with no name is a wrong type.
    assert_eq!(values(at.clone()), "missing_field");
    let mut unnamed = body.clone();
    unnamed.extend([tag(3, 0), 9]);
    assert_eq!(values(unnamed), "wrong_type");
    // A wrong wire type for a declared field; a skipped group; a stray end of group.
    let mut wrong = body.clone();
    wrong.extend([tag(5, 0), 1]);
    assert_eq!(values(wrong), "undecodable");
    let mut group = body.clone();
    group.extend([tag(9, 3), tag(1, 0), 5, tag(9, 4)]);
    assert_ne!(values(group), "undecodable");
    let mut stray = body.clone();
    stray.extend([tag(9, 4)]);
    assert_eq!(values(stray), "undecodable");
    // Groups nested past the limit, skipped.
    let mut groups = body.clone();
    groups.extend(std::iter::repeat_n(tag(9, 3), 101));
    groups.extend(std::iter::repeat_n(tag(9, 4), 101));
    assert_eq!(values(groups), "undecodable");
}

/// proto2: an absent optional field is missing, whatever its default.
#[test]
fn proto2_fields_have_presence() {
    const PROTO2: &str = r#"
syntax = "proto2";
message E { required int64 ts = 1; required string user = 2; required int64 qty = 3; optional double price = 4 [default = 2.5]; }
"#;
    let (proto, _) = schemas_with(PROTO2);
    let mut message = DynamicMessage::new(descriptor(PROTO2, "E"));
    message.set_field_by_name("ts", Proto::I64(1_767_225_600_000));
    message.set_field_by_name("user", Proto::String("u".into()));
    message.set_field_by_name("qty", Proto::I64(1));
    let record = proto.validate(&framed(&[0], &message)).unwrap();
    assert_eq!(record.values[3], None);
}

#[test]
fn validation_rules_name_the_protobuf_decoding() {
    use crate::validation_rules::{PROTOBUF_DECODING_RULE, ValidationRules};
    let rules = ValidationRules::of(&event_schema(WireFormat::protobuf())).to_json();
    assert!(rules.contains(r#""schema.format":"protobuf""#), "{rules}");
    assert!(rules.contains(PROTOBUF_DECODING_RULE), "{rules}");
}

/// A oneof's member clears the others, whichever are read (as prost-reflect reads it).
#[test]
fn oneof_members_clear_each_other() {
    const ONEOF: &str = r#"
syntax = "proto3";
import "google/protobuf/timestamp.proto";
message E {
  int64 ts = 1; string user = 2; int64 qty = 3;
  oneof o { double price = 4; bool member = 5; string other = 6; google.protobuf.Timestamp seen_at = 7; }
}
"#;
    let (proto, _) = schemas_with(ONEOF);
    let event = descriptor(ONEOF, "E");
    let base = || {
        let mut message = DynamicMessage::new(event.clone());
        message.set_field_by_name("ts", Proto::I64(1_767_225_600_000));
        message.set_field_by_name("user", Proto::String("u".into()));
        message.set_field_by_name("qty", Proto::I64(1));
        message.encode_to_vec()
    };
    let member = |name: &str, value: Proto| {
        let mut message = DynamicMessage::new(event.clone());
        message.set_field_by_name(name, value);
        message.encode_to_vec()
    };
    let stamp = {
        let prost_reflect::Kind::Message(timestamp) =
            event.get_field_by_name("seen_at").unwrap().kind()
        else {
            unreachable!()
        };
        let mut value = DynamicMessage::new(timestamp);
        value.set_field_by_name("seconds", Proto::I64(1_767_225_600));
        Proto::Message(value)
    };
    let sequences: Vec<Vec<Vec<u8>>> = vec![
        vec![
            member("price", Proto::F64(2.5)),
            member("member", Proto::Bool(true)),
        ],
        vec![
            member("member", Proto::Bool(true)),
            member("price", Proto::F64(2.5)),
        ],
        vec![
            member("price", Proto::F64(2.5)),
            member("other", Proto::String("x".into())),
        ],
        vec![
            member("seen_at", stamp.clone()),
            member("price", Proto::F64(1.0)),
        ],
        vec![member("price", Proto::F64(1.0)), member("seen_at", stamp)],
    ];
    for sequence in sequences {
        let mut body = base();
        for part in &sequence {
            body.extend_from_slice(part);
        }
        let theirs = DynamicMessage::decode(event.clone(), body.as_slice()).unwrap();
        let record = proto.validate(&framed_bytes(&[0], &body)).unwrap();
        for (name, at) in [("price", 3), ("member", 4), ("seen_at", 5)] {
            assert_eq!(
                theirs.has_field_by_name(name),
                record.values[at].is_some(),
                "{name} after {sequence:?}"
            );
        }
    }
}

/// A Timestamp's nanos outside a second is not a Timestamp: refused, as a wrong type.
#[test]
fn timestamps_with_invalid_nanos_are_refused() {
    let (proto, _) = schemas_with(WRITER);
    let event = descriptor(WRITER, "braid.test.Event");
    let with_nanos = |nanos: i32| {
        let mut message = Event::valid(3).message(None);
        let mut stamp = stamp(&event, 1_767_225_600_000_000);
        stamp.set_field_by_name("nanos", Proto::I32(nanos));
        message.set_field_by_name("seen_at", Proto::Message(stamp));
        code(&proto.validate(&framed(EVENT, &message)))
    };
    assert_eq!(with_nanos(999_999_999), "ok");
    for nanos in [-1, 1_000_000_000, i32::MIN, i32::MAX] {
        assert_eq!(with_nanos(nanos), "wrong_type", "{nanos}");
    }
}

/// A proto2 enum is closed: a number with no name is an unknown field (absent); a proto3 enum
/// is open: such a number is a value that is no name, a wrong type.
#[test]
fn enum_numbers_with_no_name() {
    for (syntax, expected) in [("proto2", "missing_field"), ("proto3", "wrong_type")] {
        let label = if syntax == "proto2" { "optional " } else { "" };
        let text = format!(
            "syntax = \"{syntax}\";\nenum U {{ A = 0; B = 1; }}\nmessage E {{ {label}int64 ts = 1; {label}U user = 2; {label}int64 qty = 3; }}"
        );
        let (proto, _) = schemas_with(&text);
        // ts = 1767225600000 (ms), user = 7 (no name), qty = 1.
        let body = [
            0x08, 0x80, 0xa0, 0xbf, 0xd4, 0xb8, 0x33, 0x10, 0x07, 0x18, 0x01,
        ];
        assert_eq!(
            code(&proto.validate(&framed_bytes(&[0], &body))),
            expected,
            "{syntax}"
        );
        let named = [
            0x08, 0x80, 0xa0, 0xbf, 0xd4, 0xb8, 0x33, 0x10, 0x01, 0x18, 0x01,
        ];
        let record = proto.validate(&framed_bytes(&[0], &named)).unwrap();
        assert_eq!(format!("{:?}", record.values[1]), r#"Some(String("B"))"#);
    }
}

/// Schema text that would exhaust the compiler's stack or a layer's memory does not resolve,
/// quickly: nesting past the limit, text past the limit; and a large enum used by many
/// messages is cheap (its names are built once).
#[test]
fn hostile_schema_text_is_refused_or_cheap() {
    let fields = event_schema(WireFormat::protobuf()).fields;
    let deep = format!(
        "syntax = \"proto3\";\n{}{}",
        "message A { ".repeat(1_000),
        "}".repeat(1_000)
    );
    let why = ProtobufPlan::compile(&fields, &deep).unwrap_err();
    assert!(why.contains("nests deeper"), "{why}");
    // Every bracket counts, in strings and comments too: the compiler ends a string at the
    // line's end and goes on, so a quote cannot hide the nesting after it.
    for hiding in ["\"\n", "// '\n", "/* \"", "option (o) = { # it's\n};\n"] {
        let hidden = format!(
            "syntax = \"proto3\";\n{hiding}{}{}",
            "message A { ".repeat(1_000),
            "}".repeat(1_000)
        );
        assert!(
            ProtobufPlan::compile(&fields, &hidden).is_err(),
            "{hiding:?}"
        );
    }
    let commented = "syntax = \"proto3\";\n// {a} [b] (c) <d>\nmessage E { int64 ts = 1; string user = 2 [json_name = \"{}\"]; int64 qty = 3; }";
    let plan = ProtobufPlan::compile(&fields, commented);
    assert!(plan.is_ok(), "{plan:?}");
    // A long dotted name would cost the compiler quadratic time and memory.
    let long_package = format!(
        "syntax = \"proto3\";\npackage {};\nmessage E {{ int64 ts = 1; string user = 2; int64 qty = 3; }}",
        vec!["a"; 16_000].join(".")
    );
    let why = ProtobufPlan::compile(&fields, &long_package).unwrap_err();
    assert!(why.contains("longer than"), "{why}");
    let long = format!("syntax = \"proto3\";\n// {}", "x".repeat(MAX_SCHEMA_BYTES));
    assert!(
        ProtobufPlan::compile(&fields, &long)
            .unwrap_err()
            .contains("bytes")
    );
    let mut wide = String::from("syntax = \"proto3\";\nenum Big { ");
    for value in 0..20_000 {
        wide.push_str(&format!("V{value} = {value}; "));
    }
    wide.push_str("}\n");
    for message in 0..400 {
        wide.push_str(&format!(
            "message M{message} {{ int64 ts = 1; Big user = 2; int64 qty = 3; }}\n"
        ));
    }
    let plan = ProtobufPlan::compile(&fields, &wide);
    assert!(plan.is_ok(), "{plan:?}");
}
