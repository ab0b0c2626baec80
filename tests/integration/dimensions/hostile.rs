//! A followed dimension topic of hostile messages (issue 35, item 2), end to end with the real
//! binary and a real compacted topic: every message is applied or dead-lettered with a reason,
//! the follower keeps going, and the table equals the last valid value of each key, computed
//! here independently of Braid's typing.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use sqlx::PgPool;

use super::{start_follower, wait_followed, write_config};
use crate::support::{Pipeline, kafka_brokers, stderr};

/// schema.max_group_value_bytes of the demo.
pub(crate) const MAX_KEY_BYTES: usize = 512;
/// A section the test's CHECK constraint refuses: the database, not the typing, refuses it.
pub(crate) const REFUSED_SECTION: &str = "refused-by-check";

/// A row of the table: section, weight, score.
pub(crate) type Row = (Option<String>, Option<i64>, Option<f64>);

/// A row as read: page, section, weight, score.
pub(crate) type TableRow = (String, Option<String>, Option<i64>, Option<f64>);

/// One message: its key (as Kafka delivers it) and payload (None: a tombstone).
pub(crate) type Message = (Option<Vec<u8>>, Option<Vec<u8>>);

fn message(key: &[u8], payload: Option<&[u8]>) -> Message {
    (Some(key.to_vec()), payload.map(<[u8]>::to_vec))
}

fn json(value: Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

/// A key the table can hold: UTF-8 text without NUL, at most the group-value limit.
fn good_key(text: &str) -> bool {
    !text.contains('\0') && text.len() <= MAX_KEY_BYTES
}

/// The test's own reading of a message: the change it makes (key, and the row or None for a
/// deletion), or None if it must be refused.
pub(crate) fn expected_change(message: &Message) -> Option<(String, Option<Row>)> {
    let (key, payload) = message;
    let Some(payload) = payload else {
        let key = std::str::from_utf8(key.as_deref()?).ok()?;
        return good_key(key).then(|| (key.to_string(), None));
    };
    let object: serde_json::Map<String, Value> = serde_json::from_slice(payload).ok()?;
    let page = object.get("page")?.as_str()?;
    if !good_key(page) {
        return None;
    }
    let section = match object.get("section") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.contains('\0') && s != REFUSED_SECTION => Some(s.clone()),
        Some(_) => return None,
    };
    let weight = match object.get("weight") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64()?),
    };
    let score = match object.get("score") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().filter(|f| f.is_finite())?),
    };
    Some((page.to_string(), Some((section, weight, score))))
}

pub(crate) fn hostile_messages() -> Vec<Message> {
    let long = "k".repeat(5_000);
    let at_limit = "é".repeat(MAX_KEY_BYTES / 2);
    vec![
        message(
            b"/good-1",
            json(
                serde_json::json!({"page": "/good-1", "section": "s1", "weight": 1, "score": 0.5}),
            )
            .as_deref(),
        ),
        message(
            b"/gone",
            json(serde_json::json!({"page": "/gone", "section": "s1"})).as_deref(),
        ),
        // Tombstones with a hostile key.
        message(b"/a\0b", None),
        message(long.as_bytes(), None),
        message(&[0xff, 0xfe, 0x00], None),
        // Keys in the payload: NUL, 5,000 bytes, exactly at the limit.
        message(
            b"k1",
            json(serde_json::json!({"page": "/n\u{0}", "section": "s"})).as_deref(),
        ),
        message(
            b"k2",
            json(serde_json::json!({"page": long, "section": "s"})).as_deref(),
        ),
        message(
            b"k3",
            json(serde_json::json!({"page": at_limit, "section": "at the limit"})).as_deref(),
        ),
        // A NUL in a string attribute.
        message(
            b"/good-2",
            json(serde_json::json!({"page": "/good-2", "section": "a\u{0}b"})).as_deref(),
        ),
        // An empty key (the payload names the key), a tombstone of the empty key.
        message(
            b"",
            json(serde_json::json!({"page": "/empty-key", "section": "s2"})).as_deref(),
        ),
        message(b"", None),
        // An empty value, a value that is not JSON, JSON that is not an object.
        message(b"/good-1", Some(b"")),
        message(b"/good-1", Some(b"\x00\x01 not json {")),
        message(b"/good-1", Some(b"[\"/good-1\"]")),
        // Numbers at the extremes.
        message(
            b"/x1",
            Some(br#"{"page": "/x1", "score": 1e308, "weight": -9223372036854775808}"#),
        ),
        message(
            b"/x2",
            Some(br#"{"page": "/x2", "score": 5e-324, "weight": 9223372036854775807}"#),
        ),
        message(
            b"/x3",
            Some(br#"{"page": "/x3", "weight": 9223372036854775808}"#),
        ),
        message(
            b"/x4",
            Some(br#"{"page": "/x4", "score": 9223372036854775808}"#),
        ),
        message(b"/x5", Some(br#"{"page": "/x5", "score": 1e400}"#)),
        message(b"/x6", Some(br#"{"page": "/x6", "weight": 1.5}"#)),
        // A value the database refuses (the test's CHECK constraint), in the same batch as
        // good ones.
        message(
            b"/r",
            json(serde_json::json!({"page": "/r", "section": REFUSED_SECTION})).as_deref(),
        ),
        // Good messages after all of them.
        message(b"/gone", None),
        message(
            b"/good-1",
            json(serde_json::json!({"page": "/good-1", "section": "s9"})).as_deref(),
        ),
        message(
            b"/good-3",
            json(serde_json::json!({"page": "/good-3", "section": "s3", "weight": 3})).as_deref(),
        ),
    ]
}

#[sqlx::test(migrations = false)]
async fn hostile_messages_are_dead_lettered_and_the_follower_goes_on(pool: PgPool) {
    let mut pipeline = Pipeline::new("dimensions-hostile", &pool).await;
    let dimension_topic = format!("{}.pages", pipeline.topic);
    crate::kafka_admin::create_topic_with(&dimension_topic, 1, &[("cleanup.policy", "compact")])
        .await;
    pipeline.config = Some(write_config(
        &pipeline,
        &format!(
            "[[dimensions]]\nname = \"pages\"\nkey = \"page\"\n\
             attributes = [{{ name = \"section\", type = \"string\" }}, {{ name = \"weight\", type = \"i64\" }}, \
             {{ name = \"score\", type = \"f64\" }}]\n\
             source = {{ kafka_topic = \"{dimension_topic}\", format = \"json\" }}\n"
        ),
    ));
    let migrated = crate::support::run(pipeline.braid().arg("migrate"));
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE braid_dimensions.pages ADD CONSTRAINT test_refused CHECK (section IS DISTINCT FROM '{REFUSED_SECTION}')"
    )))
    .execute(&pool)
    .await
    .unwrap();

    let mut messages = hostile_messages();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    for (key, payload) in &messages {
        let mut record = BaseRecord::<[u8], [u8]>::to(&dimension_topic);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = payload {
            record = record.payload(payload.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    // The keys as Kafka delivers them (an empty key may come back absent).
    let delivered = crate::support::read_topic(&dimension_topic);
    assert_eq!(delivered.len(), messages.len());
    for (message, read) in messages.iter_mut().zip(&delivered) {
        message.0.clone_from(&read.key);
    }

    let mut follower = start_follower(&pipeline, "hostile");
    wait_followed(&pool, &dimension_topic, &mut follower).await;
    follower.assert_running("braid dimensions follow");

    // The independent fold: the last valid change of each key, in topic order.
    let mut expected: BTreeMap<String, Row> = BTreeMap::new();
    let mut refused = Vec::new();
    for (offset, message) in messages.iter().enumerate() {
        match expected_change(message) {
            Some((key, Some(row))) => {
                expected.insert(key, row);
            }
            Some((key, None)) => {
                expected.remove(&key);
            }
            None => refused.push(offset as i64),
        }
    }
    let rows: Vec<TableRow> =
        sqlx::query_as("SELECT page, section, weight, score FROM braid_dimensions.pages")
            .fetch_all(&pool)
            .await
            .unwrap();
    let table: BTreeMap<String, Row> = rows
        .into_iter()
        .map(|(page, section, weight, score)| (page, (section, weight, score)))
        .collect();
    assert_eq!(
        table, expected,
        "the table is the last valid value of each key"
    );
    assert!(table.contains_key("/good-3") && table["/good-1"].0.as_deref() == Some("s9"));

    let letters: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT \"offset\", reason_code, reason FROM braid_internal.dead_letters \
         WHERE layer = 'dimension' AND topic = $1 ORDER BY \"offset\"",
    )
    .bind(&dimension_topic)
    .fetch_all(&pool)
    .await
    .unwrap();
    let offsets: Vec<i64> = letters.iter().map(|(o, _, _)| *o).collect();
    assert_eq!(
        offsets, refused,
        "each refused message is one dead letter: {letters:?}"
    );
    for (_, code, reason) in &letters {
        assert!(!code.is_empty() && !reason.is_empty(), "{letters:?}");
    }
    let code_of = |offset: usize| {
        letters
            .iter()
            .find(|(o, _, _)| *o == offset as i64)
            .map(|(_, c, _)| c.as_str())
    };
    assert_eq!(
        code_of(2),
        Some("unstorable_text"),
        "a tombstone's key with a NUL"
    );
    assert_eq!(
        code_of(3),
        Some("string_too_long"),
        "a tombstone's key of 5,000 bytes"
    );
    assert_eq!(code_of(6), Some("string_too_long"), "a key of 5,000 bytes");
    assert_eq!(
        code_of(20),
        Some("refused_by_database"),
        "the CHECK constraint"
    );

    // Each keeps its payload (a tombstone: its key), bounded, and the whole length.
    let kept: Vec<(i64, Vec<u8>, i32)> = sqlx::query_as(
        "SELECT \"offset\", payload, payload_len FROM braid_internal.dead_letters \
         WHERE layer = 'dimension' AND topic = $1 ORDER BY \"offset\"",
    )
    .bind(&dimension_topic)
    .fetch_all(&pool)
    .await
    .unwrap();
    for (offset, payload, length) in kept {
        let (key, value) = &messages[offset as usize];
        let bytes = value.as_deref().or(key.as_deref()).unwrap_or_default();
        assert_eq!(length as usize, bytes.len(), "offset {offset}");
        assert_eq!(payload, bytes[..bytes.len().min(4096)], "offset {offset}");
    }
}
