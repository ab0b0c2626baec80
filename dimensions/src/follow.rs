//! `braid dimensions follow`: keeps the tables of the dimensions whose source is a compacted
//! Kafka topic current. Each topic's partitions are assigned directly (no consumer group) at the
//! positions stored in PostgreSQL; each batch of messages is applied in one transaction together
//! with the positions it covers, so a SIGKILL loses nothing and applies nothing twice. Within a
//! batch the last message of a key wins; a message with no payload (a tombstone) deletes the key.
//! A message that is not a JSON object of the key and attributes is a dead letter (layer
//! `dimension`) with its reason, and the follower goes on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use schemas::config::KafkaConfig;
use schemas::dimension::{Dimension, DimensionSource};
use schemas::pg::{DeadLetter, Layer};
use schemas::record::Rejection;
use serde_json::Value;
use sqlx::PgPool;

use crate::rows::{DimensionRows, RawValue};

/// Messages applied per transaction at most.
const BATCH_MESSAGES: usize = 10_000;
/// The longest a message waits before its batch is applied.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// A refused message keeps this much of its payload.
const DEAD_LETTER_PAYLOAD_BYTES: usize = 4096;

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Kafka refused the client or the assignment.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The database failed (the batch was not applied; it is read again).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a follower did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FollowSummary {
    /// Rows upserted.
    pub upserted: u64,
    /// Keys deleted by tombstones.
    pub deleted: u64,
    /// Messages refused.
    pub dead_letters: u64,
}

/// The dimensions with a Kafka source.
pub fn followed(dimensions: &[Dimension]) -> Vec<&Dimension> {
    dimensions
        .iter()
        .filter(|d| matches!(d.source, DimensionSource::KafkaTopic(_)))
        .collect()
}

/// One pending change of a key.
enum Change {
    Upsert(Vec<Value>),
    Delete,
}

/// Follows every Kafka-sourced dimension until `stop`.
pub async fn follow(
    pool: &PgPool,
    kafka: &KafkaConfig,
    dimensions: &[Dimension],
    stop: Arc<AtomicBool>,
) -> Result<FollowSummary, FollowError> {
    let mut summary = FollowSummary::default();
    let mut followers = Vec::new();
    for dimension in followed(dimensions) {
        followers.push(Follower::start(pool, kafka, dimension).await?);
    }
    if followers.is_empty() {
        tracing::info!("no dimension has a kafka_topic source; nothing to follow");
        return Ok(summary);
    }
    while !stop.load(Ordering::Relaxed) {
        for follower in &mut followers {
            follower.step(pool, &mut summary).await?;
        }
    }
    Ok(summary)
}

struct Follower {
    dimension: Dimension,
    topic: String,
    consumer: StreamConsumer,
    /// The next offset per partition after the messages read so far.
    read: BTreeMap<i32, i64>,
}

impl Follower {
    async fn start(
        pool: &PgPool,
        kafka: &KafkaConfig,
        dimension: &Dimension,
    ) -> Result<Self, FollowError> {
        let DimensionSource::KafkaTopic(topic) = &dimension.source else {
            unreachable!("followed() keeps Kafka sources");
        };
        let consumer: StreamConsumer = ingest::kafka::client_config(kafka)
            .set("group.id", format!("braid-dimension-{}", dimension.name))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let stored = schemas::pg::dimensions::load_positions(pool, &dimension.name, topic).await?;
        let mut assignment = TopicPartitionList::new();
        for &p in &partitions {
            let offset = stored
                .get(&p)
                .map_or(Offset::Beginning, |&o| Offset::Offset(o));
            assignment.add_partition_offset(topic, p, offset)?;
        }
        consumer.assign(&assignment)?;
        tracing::info!(dimension = dimension.name, topic, partitions = partitions.len(), stored = ?stored, "following a dimension topic");
        Ok(Self {
            dimension: dimension.clone(),
            topic: topic.clone(),
            consumer,
            read: stored,
        })
    }

    /// Reads up to a batch of messages (or for [`BATCH_WAIT`]) and applies them.
    async fn step(
        &mut self,
        pool: &PgPool,
        summary: &mut FollowSummary,
    ) -> Result<(), FollowError> {
        let started = Instant::now();
        let mut changes: HashMap<String, (Value, Change)> = HashMap::new();
        let mut letters = Vec::new();
        let mut positions = self.read.clone();
        let mut messages = 0;
        while messages < BATCH_MESSAGES && started.elapsed() < BATCH_WAIT {
            let wait = BATCH_WAIT.saturating_sub(started.elapsed());
            let Ok(message) = tokio::time::timeout(wait, self.consumer.recv()).await else {
                break;
            };
            let message = match message {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(dimension = self.dimension.name, %error, "reading the dimension topic; going on");
                    continue;
                }
            };
            messages += 1;
            positions.insert(message.partition(), message.offset() + 1);
            match parse(&self.dimension, message.key(), message.payload()) {
                Ok((key, change)) => {
                    changes.insert(key.to_string(), (key, change));
                }
                Err(rejection) => letters.push(DeadLetter::new(
                    message.partition(),
                    message.offset(),
                    rejection,
                    message.payload().unwrap_or_default(),
                    DEAD_LETTER_PAYLOAD_BYTES,
                )),
            }
        }
        if positions == self.read {
            return Ok(());
        }
        let mut upserts = DimensionRows::new(&self.dimension);
        let mut deletes = DimensionRows::new(&self.dimension);
        for (key, change) in changes.values() {
            match change {
                Change::Upsert(attributes) => {
                    let values: Vec<RawValue<'_>> = attributes.iter().map(raw).collect();
                    upserts
                        .push(0, &self.dimension, raw(key), &values)
                        .expect("typed when parsed");
                }
                Change::Delete => {
                    let nulls = vec![RawValue::Null; self.dimension.attributes.len()];
                    deletes
                        .push(0, &self.dimension, raw(key), &nulls)
                        .expect("typed when parsed");
                }
            }
        }
        let mut tx = pool.begin().await?;
        let upserted = schemas::pg::dimensions::upsert(
            &mut tx,
            &self.dimension,
            &upserts.keys,
            &upserts.attributes,
        )
        .await?;
        let deleted =
            schemas::pg::dimensions::delete(&mut tx, &self.dimension, &deletes.keys).await?;
        schemas::pg::insert_dead_letters(&mut tx, Layer::Dimension, &self.topic, &letters).await?;
        schemas::pg::dimensions::store_positions(
            &mut tx,
            &self.dimension.name,
            &self.topic,
            &positions,
        )
        .await?;
        tx.commit().await?;
        summary.upserted += upserted;
        summary.deleted += deleted;
        summary.dead_letters += letters.len() as u64;
        if !letters.is_empty() {
            tracing::warn!(
                dimension = self.dimension.name,
                refused = letters.len(),
                "dimension messages refused; see braid_internal.dead_letters (layer 'dimension')"
            );
        }
        tracing::debug!(
            dimension = self.dimension.name,
            messages,
            upserted,
            deleted,
            "applied"
        );
        self.read = positions;
        Ok(())
    }
}

fn raw(value: &Value) -> RawValue<'_> {
    match value {
        Value::Null => RawValue::Null,
        Value::String(s) => RawValue::Text(s),
        Value::Bool(b) => RawValue::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(RawValue::Int)
            .or_else(|| n.as_f64().map(RawValue::Float))
            .unwrap_or(RawValue::Null),
        _ => RawValue::Null,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks that `value` can be stored as `t`: the same rules the loaders apply.
fn check(field: &str, t: schemas::FieldType, value: &Value) -> Result<(), Rejection> {
    if value.is_null() {
        return Ok(());
    }
    let fits = match (t, value) {
        (schemas::FieldType::String, Value::String(s)) => {
            if let Some(at) = s.find('\0') {
                return Err(Rejection::UnstorableText {
                    field: field.to_string(),
                    at,
                });
            }
            true
        }
        (schemas::FieldType::I64, Value::Number(n)) => n.is_i64(),
        (schemas::FieldType::F64, Value::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
        (schemas::FieldType::Bool, Value::Bool(_)) => true,
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(Rejection::WrongType {
            field: field.to_string(),
            expected: t.name(),
            found: kind(value).to_string(),
        })
    }
}

/// A message's change: the key (typed) and its attributes, or a tombstone.
fn parse(
    dimension: &Dimension,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<(Value, Change), Rejection> {
    let Some(payload) = payload else {
        // A tombstone: the message key is the dimension's key, as text.
        let text = key.map(String::from_utf8_lossy).unwrap_or_default();
        let wrong = |expected: &'static str| Rejection::WrongType {
            field: dimension.key.clone(),
            expected,
            found: format!("the message key `{}`", schemas::record::quote_input(&text)),
        };
        let key = match dimension.key_type {
            schemas::FieldType::I64 => text
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| wrong("i64"))?,
            schemas::FieldType::Bool => text
                .trim()
                .parse::<bool>()
                .map(Value::from)
                .map_err(|_| wrong("bool"))?,
            _ => Value::from(text.into_owned()),
        };
        return Ok((key, Change::Delete));
    };
    let value: Value = serde_json::from_slice(payload).map_err(|e| Rejection::NotJson {
        detail: e.to_string(),
    })?;
    let Value::Object(mut object) = value else {
        return Err(Rejection::NotObject {
            found: kind(&value),
        });
    };
    let key = object
        .remove(&dimension.key)
        .filter(|k| !k.is_null())
        .ok_or_else(|| Rejection::MissingField {
            field: dimension.key.clone(),
        })?;
    check(&dimension.key, dimension.key_type, &key)?;
    let mut attributes = Vec::with_capacity(dimension.attributes.len());
    for a in &dimension.attributes {
        let value = object.remove(&a.name).unwrap_or(Value::Null);
        check(&a.name, a.attribute_type, &value)?;
        attributes.push(value);
    }
    Ok((key, Change::Upsert(attributes)))
}
