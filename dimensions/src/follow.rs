//! `braid dimensions follow`: keeps the tables of the dimensions whose source is a compacted
//! Kafka topic current. Each topic's partitions are assigned directly (no consumer group) at the
//! positions stored in PostgreSQL; each batch of messages is applied in one transaction together
//! with the positions it covers, so a SIGKILL loses nothing and applies nothing twice. Within a
//! batch the last message of a key wins; a message with no payload (a tombstone) deletes the key.
//! Every message is applied or is a dead letter (layer `dimension`) with its reason, and the
//! follower goes on: a message is typed by the rules of [`crate::rows`] (the ones a loaded
//! file follows), and a batch the database refuses all the same is applied again one message at
//! a time, in order, each refused message a dead letter (`refused_by_database`), so that a key's
//! earlier change in the batch stands where its last one is refused.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::Cell;
use ingest::Expected;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use schemas::config::KafkaConfig;
use schemas::dimension::{Dimension, DimensionSource, VALID_FROM};
use schemas::pg::{DeadLetter, Layer};
use schemas::position::Positions;
use schemas::record::Rejection;
use serde_json::Value;
use sqlx::PgPool;

use crate::rows::{DimensionRows, RawValue, TypedRow, typed_key, typed_row, typed_valid_from};

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

/// One message's change of a key.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// The key's row, typed.
    Upsert(TypedRow),
    /// A tombstone: the key, typed (every version of a versioned dimension's key).
    Delete(Cell),
    /// A versioned dimension's tombstone keyed `<key>@<valid_from>`: that one version.
    DeleteVersion(Cell, DateTime<Utc>),
}

/// One message's change within a batch, with where it came from (for a dead letter, should the
/// database refuse it).
struct Pending {
    change: Change,
    partition: i32,
    offset: i64,
    /// What a dead letter keeps of the payload (or of a tombstone's key), and its length.
    kept: Vec<u8>,
    kept_len: i32,
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
    /// The stored position of every partition of the topic, as this follower last stored or
    /// loaded it (the ingest loop's bookkeeping; `None`: nothing stored, read from the start).
    expected: Expected,
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
        let stored = crate::store::load_positions(pool, &dimension.name, topic).await?;
        let expected = Expected::assigned(
            partitions
                .iter()
                .map(|&p| (p, stored.get(&p).copied()))
                .collect(),
        );
        let mut assignment = TopicPartitionList::new();
        for (p, start) in expected.starts() {
            assignment.add_partition_offset(topic, p, start.kafka_offset())?;
        }
        consumer.assign(&assignment)?;
        tracing::info!(dimension = dimension.name, topic, partitions = partitions.len(), stored = ?stored, "following a dimension topic");
        Ok(Self {
            dimension: dimension.clone(),
            topic: topic.clone(),
            consumer,
            expected,
        })
    }

    /// Reads up to a batch of messages (or for [`BATCH_WAIT`]) and applies them.
    async fn step(
        &mut self,
        pool: &PgPool,
        summary: &mut FollowSummary,
    ) -> Result<(), FollowError> {
        let started = Instant::now();
        // Every valid message's change, in the order read.
        let mut changes: Vec<Pending> = Vec::new();
        let mut letters = Vec::new();
        // The next offset of every partition the batch read.
        let mut ends = Positions::new();
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
            ends.insert(message.partition(), message.offset() + 1);
            // A dead letter keeps the payload, or a tombstone's key (bounded).
            let kept = match message.payload() {
                Some(payload) => payload,
                None => message.key().unwrap_or_default(),
            };
            match parse(&self.dimension, message.key(), message.payload()) {
                Ok(change) => changes.push(Pending {
                    change,
                    partition: message.partition(),
                    offset: message.offset(),
                    kept: kept[..kept.len().min(DEAD_LETTER_PAYLOAD_BYTES)].to_vec(),
                    kept_len: i32::try_from(kept.len()).unwrap_or(i32::MAX),
                }),
                Err(rejection) => letters.push(DeadLetter::new(
                    message.partition(),
                    message.offset(),
                    rejection,
                    kept,
                    DEAD_LETTER_PAYLOAD_BYTES,
                )),
            }
        }
        let stored = self.expected.stored();
        let mut positions = stored.clone();
        positions.extend(&ends);
        if positions == stored {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        let applied = apply_or_isolate(&mut tx, &self.dimension, &changes, &mut letters).await?;
        schemas::pg::insert_dead_letters(&mut tx, Layer::Dimension, &self.topic, &letters).await?;
        crate::store::store_positions(&mut tx, &self.dimension.name, &self.topic, &positions)
            .await?;
        tx.commit().await?;
        summary.upserted += applied.upserted;
        summary.deleted += applied.deleted;
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
            upserted = applied.upserted,
            deleted = applied.deleted,
            "applied"
        );
        self.expected.advance(&ends);
        Ok(())
    }
}

/// Rows written by one application.
#[derive(Debug, Default, Clone, Copy)]
struct Applied {
    upserted: u64,
    deleted: u64,
}

/// The last change of each key among `pending` (in message order): what applying them one
/// after the other leaves.
/// A versioned dimension's change is per key and version; a tombstone drops every version of
/// its key, so it replaces the key's earlier changes (it is applied before the upserts).
fn last_of_each_key(pending: &[Pending]) -> Vec<&Pending> {
    let mut last: HashMap<(String, Option<i64>), &Pending> = HashMap::new();
    for one in pending {
        match &one.change {
            Change::Upsert(row) => {
                let version = row.valid_from.map(|t| t.timestamp_micros());
                last.insert((format!("{:?}", row.key), version), one);
            }
            Change::Delete(key) => {
                let key = format!("{key:?}");
                last.retain(|(k, _), _| *k != key);
                last.insert((key, None), one);
            }
            Change::DeleteVersion(key, from) => {
                last.insert((format!("{key:?}"), Some(from.timestamp_micros())), one);
            }
        }
    }
    last.into_values().collect()
}

/// Applies the changes of `pending` (every valid message of a batch, in message order) in
/// `tx`: the last of each key at once. Should the database refuse that for its values (a data
/// error), every message is applied again alone, in order, under a savepoint, and each it
/// refuses is a dead letter: a key's earlier change then stands where its last is refused, as
/// if the messages had been applied one by one (the last change alone would lose the earlier
/// ones, neither applied nor dead-lettered).
async fn apply_or_isolate(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    dimension: &Dimension,
    pending: &[Pending],
    letters: &mut Vec<DeadLetter>,
) -> Result<Applied, sqlx::Error> {
    let error = match savepointed(tx, dimension, last_of_each_key(pending).into_iter()).await? {
        Ok(applied) => return Ok(applied),
        Err(error) => error,
    };
    tracing::warn!(
        dimension = dimension.name,
        error = schemas::pg::database_message(&error),
        "the database refused a batch of dimension changes; applying them one at a time"
    );
    let mut applied = Applied::default();
    for one in pending {
        match savepointed(tx, dimension, std::iter::once(one)).await? {
            Ok(a) => {
                applied.upserted += a.upserted;
                applied.deleted += a.deleted;
            }
            Err(error) => letters.push(DeadLetter {
                partition: one.partition,
                offset: one.offset,
                rejection: Rejection::RefusedByDatabase {
                    detail: schemas::pg::database_message(&error),
                },
                payload_prefix: one.kept.clone(),
                payload_len: one.kept_len,
            }),
        }
    }
    Ok(applied)
}

/// Applies changes under a savepoint: `Ok(Err(_))` when the database refused their values (the
/// savepoint is rolled back), `Err(_)` when it failed otherwise.
async fn savepointed<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    dimension: &Dimension,
    pending: impl Iterator<Item = &'a Pending>,
) -> Result<Result<Applied, sqlx::Error>, sqlx::Error> {
    sqlx::query("SAVEPOINT dimension_changes")
        .execute(&mut **tx)
        .await?;
    match apply(tx, dimension, pending).await {
        Ok(applied) => {
            sqlx::query("RELEASE SAVEPOINT dimension_changes")
                .execute(&mut **tx)
                .await?;
            Ok(Ok(applied))
        }
        Err(error) if schemas::pg::is_data_error(&error) => {
            sqlx::query("ROLLBACK TO SAVEPOINT dimension_changes")
                .execute(&mut **tx)
                .await?;
            Ok(Err(error))
        }
        Err(error) => Err(error),
    }
}

async fn apply<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    dimension: &Dimension,
    pending: impl Iterator<Item = &'a Pending>,
) -> Result<Applied, sqlx::Error> {
    let mut upserts = DimensionRows::new(dimension);
    let mut deletes = DimensionRows::new(dimension);
    let mut version_deletes = DimensionRows::new(dimension);
    let gone = |key: &Cell, valid_from| TypedRow {
        key: key.clone(),
        attributes: vec![Cell::Null; dimension.attributes.len()],
        valid_from,
    };
    for one in pending {
        match &one.change {
            Change::Upsert(row) => upserts.push_typed(row.clone()),
            Change::Delete(key) => deletes.push_typed(gone(key, None)),
            Change::DeleteVersion(key, from) => version_deletes.push_typed(gone(key, Some(*from))),
        }
    }
    // Deletes first: a tombstone followed by a new version of its key keeps the version.
    let deleted = crate::store::delete(tx, dimension, &deletes.keys).await?
        + crate::store::delete_versions(
            tx,
            dimension,
            &version_deletes.keys,
            &version_deletes.valid_from,
        )
        .await?;
    let upserted = crate::store::upsert(
        tx,
        dimension,
        &upserts.keys,
        &upserts.attributes,
        &upserts.valid_from,
    )
    .await?;
    Ok(Applied { upserted, deleted })
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

/// A message's change: its row typed by the rules of [`crate::rows`], or a tombstone of its
/// key (the message key, as text, typed by the same rules).
fn parse(
    dimension: &Dimension,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<Change, Rejection> {
    let Some(payload) = payload else {
        let key = match key.map(std::str::from_utf8) {
            None => RawValue::Null,
            Some(Ok(text)) => RawValue::Text(text),
            Some(Err(_)) => {
                return Err(Rejection::WrongType {
                    field: dimension.key.clone(),
                    expected: "UTF-8 text",
                    found: "a tombstone whose message key is not UTF-8".into(),
                });
            }
        };
        // A versioned dimension's message keyed `<key>@<valid_from>` (what compaction keeps
        // apart): its tombstone deletes that version.
        if let RawValue::Text(text) = key
            && dimension.versioned
            && let Some((key, from)) = text.rsplit_once('@')
            && let Ok(Some(from)) = typed_valid_from(0, dimension, &RawValue::Text(from))
        {
            return typed_key(0, dimension, &RawValue::Text(key))
                .map(|key| Change::DeleteVersion(key, from))
                .map_err(|e| e.rejection());
        }
        return typed_key(0, dimension, &key)
            .map(Change::Delete)
            .map_err(|e| e.rejection());
    };
    let value: Value = serde_json::from_slice(payload).map_err(|e| Rejection::NotJson {
        detail: e.to_string(),
    })?;
    let Value::Object(object) = &value else {
        return Err(Rejection::NotObject {
            found: kind(&value),
        });
    };
    let raw = |name: &str| object.get(name).map_or(RawValue::Null, RawValue::from_json);
    let attributes: Vec<RawValue<'_>> = dimension.attributes.iter().map(|a| raw(&a.name)).collect();
    let mut row =
        typed_row(0, dimension, &raw(&dimension.key), &attributes).map_err(|e| e.rejection())?;
    row.valid_from = typed_valid_from(0, dimension, &raw(VALID_FROM)).map_err(|e| e.rejection())?;
    Ok(Change::Upsert(row))
}

#[cfg(test)]
mod db_tests;
#[cfg(test)]
mod tests;
