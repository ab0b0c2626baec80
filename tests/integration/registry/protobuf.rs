//! Protobuf topics through the real registry and broker: both layers read a generated
//! Protobuf stream, hostile records among them, a second writer schema mid-stream (fields
//! renumbered, a wrapper, epoch milliseconds, a message index past the first), a transactional
//! producer's committed and aborted records, and messages that do not decode. Their views, the
//! lake and their dead letters must equal an independent decoding (prost-reflect's dynamic
//! messages over protox's descriptors, with Confluent's message indexes read here) and fold.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value as Proto};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::Value as Json;
use sqlx::PgPool;

use super::{
    Decoded, TestFormat, header, oracle_of_decoded, registry_down_delays_both_layers, schema_text,
    streams_agree_with_an_independent_decoding,
};
use crate::oracle::{self, RawMessage};

/// A second version of the demo's writer schema, as a team evolves it: another message first
/// (so the event is index 1), fields renumbered and reordered, one added, the event time as
/// epoch milliseconds, the price in a wrapper, the duration `optional`.
pub(super) const V2: &str = r#"
syntax = "proto3";
package braid.generated.v2;
import "google/protobuf/wrappers.proto";

message Referrer { string url = 1; }

message Event {
  int64 ts = 20;
  Referrer referrer = 1;
  string event_id = 2;
  string event_type = 3;
  string user_id = 4;
  string page = 5;
  string country = 6;
  string device = 7;
  google.protobuf.Int64Value price_cents = 8;
  optional int64 duration_ms = 9;
  optional bool is_new_user = 10;
}
"#;

/// Compiles `.proto` text (with the well-known imports), as the oracle reads it.
fn compile(text: &str) -> Option<prost_reflect::FileDescriptor> {
    struct Text(String);
    impl FileResolver for Text {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            match name {
                "schema.proto" => File::from_source(name, &self.0),
                _ => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Text(text.to_string()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file("schema.proto").ok()?;
    compiler.descriptor_pool().get_file_by_name("schema.proto")
}

/// A page view in V2's form, framed under `id` with the message indexes [1].
pub(super) fn v2_page_view(
    id: u32,
    event_id: &str,
    page: &str,
    minute: u32,
    duration: Option<i64>,
) -> Vec<u8> {
    let file = compile(V2).unwrap();
    let event = file.messages().nth(1).unwrap();
    let mut message = DynamicMessage::new(event.clone());
    let millis = 1_767_398_400_000 + i64::from(minute) * 60_000; // 2026-01-03
    message.set_field_by_name("ts", Proto::I64(millis));
    let mut referrer = DynamicMessage::new(file.messages().next().unwrap());
    referrer.set_field_by_name("url", Proto::String("https://example.org/\u{1F600}".into()));
    message.set_field_by_name("referrer", Proto::Message(referrer));
    for (name, value) in [
        ("event_id", event_id),
        ("event_type", "page_view"),
        ("user_id", "u-proto"),
        ("page", page),
        ("country", "NL"),
        ("device", "mobile"),
    ] {
        message.set_field_by_name(name, Proto::String(value.into()));
    }
    if let Some(ms) = duration {
        message.set_field_by_name("duration_ms", Proto::I64(ms));
    }
    message.set_field_by_name("is_new_user", Proto::Bool(true));
    let mut payload = vec![0];
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(&[2, 2]); // one index, 1 (zig-zag)
    payload.extend_from_slice(&message.encode_to_vec());
    payload
}

/// A decoded message as the JSON a JSON producer would have sent: fields with presence only
/// when present, the others always (their default when absent, as Protobuf defines).
fn to_json(message: &DynamicMessage) -> Json {
    let mut object = serde_json::Map::new();
    for field in message.descriptor().fields() {
        if field.supports_presence() && !message.has_field(&field) {
            continue;
        }
        let value = message.get_field(&field);
        object.insert(field.name().to_string(), value_json(&field.kind(), &value));
    }
    Json::Object(object)
}

fn value_json(kind: &Kind, value: &Proto) -> Json {
    match value {
        Proto::Bool(b) => Json::Bool(*b),
        Proto::I32(i) => Json::from(*i),
        Proto::I64(i) => Json::from(*i),
        Proto::U32(i) => Json::from(*i),
        Proto::U64(i) => Json::from(*i),
        Proto::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Proto::F32(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Proto::String(s) => Json::String(s.clone()),
        Proto::EnumNumber(n) => match kind {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or(Json::from(*n), |v| Json::String(v.name().into())),
            _ => Json::from(*n),
        },
        Proto::Message(inner) => match inner.descriptor().full_name() {
            "google.protobuf.Timestamp" => {
                let seconds = inner
                    .get_field_by_name("seconds")
                    .unwrap()
                    .as_i64()
                    .unwrap();
                let nanos = inner.get_field_by_name("nanos").unwrap().as_i32().unwrap();
                let micros = seconds * 1_000_000 + i64::from(nanos).div_euclid(1_000);
                // Whole milliseconds as epoch milliseconds, others as RFC 3339.
                match chrono::DateTime::from_timestamp_micros(micros) {
                    Some(time) if micros % 1_000 != 0 => {
                        Json::String(time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    }
                    _ => Json::from(micros.div_euclid(1_000)),
                }
            }
            name if name.starts_with("google.protobuf.") && name.ends_with("Value") => {
                let field = inner.descriptor().get_field_by_name("value").unwrap();
                value_json(&field.kind(), &inner.get_field(&field))
            }
            _ => to_json(inner),
        },
        other => panic!("the demo schemas hold no {other:?}"),
    }
}

/// The message Confluent's message indexes at the start of `body` name, and the rest.
fn indexed<'b>(
    file: &prost_reflect::FileDescriptor,
    mut body: &'b [u8],
) -> Option<(MessageDescriptor, &'b [u8])> {
    let zigzag = |v: u64| ((v >> 1) as i64) ^ -((v & 1) as i64);
    let count = zigzag(prost::encoding::decode_varint(&mut body).ok()?);
    let path: Vec<i64> = match count {
        0 => vec![0],
        1..=64 => (0..count)
            .map(|_| prost::encoding::decode_varint(&mut body).ok().map(zigzag))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    let mut message = file.messages().nth(usize::try_from(path[0]).ok()?)?;
    for &index in &path[1..] {
        // Confluent counts the declared nested messages: not map entries or group types.
        let groups: Vec<String> = message
            .fields()
            .filter(|field| field.is_group())
            .filter_map(|field| match field.kind() {
                Kind::Message(group) => Some(group.full_name().to_string()),
                _ => None,
            })
            .collect();
        let child = message
            .child_messages()
            .filter(|child| !child.is_map_entry() && !groups.iter().any(|g| g == child.full_name()))
            .nth(usize::try_from(index).ok()?)?;
        message = child;
    }
    Some((message, body))
}

async fn decode(
    payload: &[u8],
    files: &mut BTreeMap<u32, Option<prost_reflect::FileDescriptor>>,
) -> Decoded {
    let (id, body) = match header(payload) {
        Ok(split) => split,
        Err(code) => return Decoded::Refused(code),
    };
    if let std::collections::btree_map::Entry::Vacant(entry) = files.entry(id) {
        let text = schema_text(id).await;
        entry.insert(text.map(|text| compile(&text).expect("the registry's schema compiles")));
    }
    let Some(file) = &files[&id] else {
        return Decoded::Refused("unknown_schema_id");
    };
    let Some((message, body)) = indexed(file, body) else {
        return Decoded::Refused("undecodable");
    };
    match DynamicMessage::decode(message, body) {
        Ok(decoded) => Decoded::Json(to_json(&decoded).to_string().into_bytes()),
        Err(_) => Decoded::Refused("undecodable"),
    }
}

/// The messages as the oracle sees them: the decodable ones in their JSON form and the
/// refusals every layer must dead-letter.
pub(super) async fn oracle_of(
    messages: &[RawMessage],
) -> (Vec<RawMessage>, BTreeSet<(i32, i64, String)>) {
    let mut files = BTreeMap::new();
    let mut decoded = Vec::new();
    for message in messages {
        decoded.push(decode(&message.payload, &mut files).await);
    }
    oracle_of_decoded(messages, decoded, oracle::refusal)
}

#[sqlx::test(migrations = false)]
async fn protobuf_streams_agree_with_an_independent_decoding_in_both_layers(pool: PgPool) {
    // Protobuf's own: a byte left over (field number 0), message indexes naming no message.
    streams_agree_with_an_independent_decoding(pool, TestFormat::Protobuf, 37, |valid| {
        let mut no_such_message = valid.to_vec();
        no_such_message[5..7].copy_from_slice(&[2, 40]); // index 20
        vec![[valid, &[0]].concat(), no_such_message]
    })
    .await;
}

#[sqlx::test(migrations = false)]
async fn a_registry_that_is_down_delays_protobuf_topics_and_refuses_nothing(pool: PgPool) {
    registry_down_delays_both_layers(pool, TestFormat::Protobuf).await;
}
