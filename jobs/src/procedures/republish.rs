//! `replay publish`: records of an event-time range from the lake back into a Kafka topic,
//! resumable and each once: every record carries its source position and the replay's id in
//! headers, and a run first reads the target back to skip what an earlier run of the same
//! replay already published.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batch_layer::lake::{Lake, LakeRecord, RecordsRead};
use chrono::{DateTime, Utc};
use ingest::kafka::{QuietEof, Watermarks};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use schemas::config::KafkaConfig;
use sqlx::PgPool;

use super::ProcedureError;
use crate::history::{self, JobReport};

/// Header naming the replay a republished record belongs to.
pub const REPLAY_ID_HEADER: &str = "braid-replay-id";
/// Header holding the record's source position, `partition:offset`.
pub const SOURCE_HEADER: &str = "braid-source";

/// What a republish is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// Inclusive start of the event-time range (RFC 3339).
    pub from: String,
    /// Exclusive end (RFC 3339).
    pub to: String,
    /// The target topic.
    pub topic: String,
    /// Records per second at most.
    pub rate: Option<u32>,
    /// The replay id; default from the source topic and range.
    pub id: Option<String>,
}

impl PublishRequest {
    /// The range as instants, and a check of everything that can be checked without Kafka:
    /// both ends are RFC 3339 and in order, the topic is a legal Kafka topic name. The admin
    /// API calls it before starting the job, so that a bad request is a 400 naming the
    /// parameter rather than a job that fails later.
    pub fn checked_range(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), ProcedureError> {
        let from = instant("from", &self.from)?;
        let to = instant("to", &self.to)?;
        if from >= to {
            return Err(ProcedureError::BadRequest {
                parameter: "from",
                message: format!("{} must be before to {}", self.from, self.to),
            });
        }
        if !schemas::config::is_topic_name(&self.topic) {
            return Err(ProcedureError::BadRequest {
                parameter: "topic",
                message: format!(
                    "`{}` is not a Kafka topic name: 1 to 249 characters of letters, digits, `.`, `_` and `-`",
                    self.topic
                ),
            });
        }
        Ok((from, to))
    }
}

/// How far a republish got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Records of the range in the lake.
    pub selected: u64,
    /// Records this run sent (the others were already there).
    pub sent: u64,
}

/// The job-history report of a republish.
pub fn report(published: &Published) -> JobReport {
    JobReport {
        rows_read: Some(published.selected as i64),
        rows_written: Some(published.sent as i64),
        ..Default::default()
    }
}

fn instant(parameter: &'static str, text: &str) -> Result<DateTime<Utc>, ProcedureError> {
    Ok(DateTime::parse_from_rfc3339(text)
        .map_err(|_| ProcedureError::BadRequest {
            parameter,
            message: format!("`{text}` is not an RFC 3339 instant"),
        })?
        .with_timezone(&Utc))
}

/// The source positions the target topic already holds for `replay_id`. Blocking.
///
/// Reads each partition up to the high watermark taken first. A partition is done when a record
/// at or past that mark arrives or the consumer reaches its end: transaction markers, aborted
/// records and compacted gaps occupy offsets that never arrive as records, so counting records
/// would wait for ever.
fn already_published(
    kafka: &KafkaConfig,
    topic: &str,
    replay_id: &str,
) -> Result<BTreeSet<String>, ProcedureError> {
    let marks = ingest::kafka::watermarks(kafka, topic)?;
    let consumer: BaseConsumer<QuietEof> = ingest::kafka::consumer_config(kafka)
        .set("group.id", format!("braid-replay-publish-check:{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(QuietEof)?;
    let mut assignment = TopicPartitionList::new();
    let mut reading: BTreeSet<i32> = BTreeSet::new();
    for (&partition, &Watermarks { low, high }) in &marks {
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            reading.insert(partition);
        }
    }
    let mut seen = BTreeSet::new();
    if reading.is_empty() {
        return Ok(seen);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !reading.is_empty() {
        if Instant::now() >= deadline {
            return Err(ProcedureError::ReadBackTimeout {
                topic: topic.to_string(),
                unfinished: reading.into_iter().collect(),
            });
        }
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                reading.remove(&partition);
                continue;
            }
            Some(other) => other?,
        };
        let end = marks[&message.partition()].high;
        if message.offset() + 1 >= end {
            reading.remove(&message.partition());
        }
        if message.offset() >= end {
            continue;
        }
        let Some(headers) = message.headers() else {
            continue;
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if header(REPLAY_ID_HEADER).as_deref() == Some(replay_id)
            && let Some(source) = header(SOURCE_HEADER)
        {
            seen.insert(source);
        }
    }
    Ok(seen)
}

/// Waits for the `count` oldest deliveries; fails on the first refused one.
async fn settle(
    pending: &mut futures::stream::FuturesOrdered<rdkafka::producer::DeliveryFuture>,
    count: usize,
) -> Result<(), ProcedureError> {
    use futures::StreamExt;
    for _ in 0..count {
        match pending.next().await {
            None => break,
            Some(Ok(Ok(_))) => {}
            Some(Ok(Err((error, _)))) => return Err(ProcedureError::Refused(error)),
            Some(Err(_)) => return Err(ProcedureError::DeliveryLost),
        }
    }
    Ok(())
}

/// Republishes as the job `job` (recorded as running), reporting `(sent, to send)` to
/// `progress` as it goes and stopping early when `stop` is set.
pub async fn republish(
    kafka: &KafkaConfig,
    lake: &Lake,
    pool: &PgPool,
    job: i64,
    request: &PublishRequest,
    progress: &mut (dyn FnMut(u64, u64) + Send),
    stop: &AtomicBool,
) -> Result<Published, ProcedureError> {
    let (from, to) = request.checked_range()?;
    let source = &kafka.topic;
    if request.topic == *source {
        return Err(ProcedureError::BadRequest {
            parameter: "topic",
            message: format!("must differ from the source topic {source}"),
        });
    }
    let replay_id = request
        .id
        .clone()
        .unwrap_or_else(|| format!("{source}:{}:{}", request.from, request.to));
    let topic = request.topic.as_str();
    let RecordsRead { version, records } = lake.records_between(from, to).await?;
    let selected = records.len() as u64;
    let source_partitions = ingest::kafka::watermarks(kafka, &kafka.topic)
        .map(|m| m.len() as i32)
        .unwrap_or(1)
        .max(1);
    ingest::kafka::ensure_topic(kafka, topic, source_partitions).await?;
    let seen = {
        let (kafka, topic, replay_id) = (kafka.clone(), topic.to_string(), replay_id.clone());
        tokio::task::spawn_blocking(move || already_published(&kafka, &topic, &replay_id)).await??
    };
    let todo: Vec<&LakeRecord> = records
        .iter()
        .filter(|r| !seen.contains(&format!("{}:{}", r.partition, r.offset)))
        .collect();
    tracing::info!(
        version,
        selected,
        already = seen.len(),
        to_send = todo.len(),
        topic,
        "republishing from the lake"
    );
    let target_partitions = ingest::kafka::watermarks(kafka, topic)?.len().max(1) as i32;
    let producer: FutureProducer<QuietEof> = ingest::kafka::client_config(kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .create_with_context(QuietEof)?;
    let started = Instant::now();
    let mut last_recorded = Instant::now();
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut sent = 0u64;
    let total = todo.len() as u64;
    for record in &todo {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(rate) = request.rate {
            let due = Duration::from_secs_f64(sent as f64 / f64::from(rate.max(1)));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let source = format!("{}:{}", record.partition, record.offset);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "braid-replayed",
                value: Some("true"),
            })
            .insert(Header {
                key: REPLAY_ID_HEADER,
                value: Some(&replay_id),
            })
            .insert(Header {
                key: SOURCE_HEADER,
                value: Some(&source),
            })
            .insert(Header {
                key: "braid-source-topic",
                value: Some(&kafka.topic),
            });
        let mut message = FutureRecord::to(topic)
            .payload(&record.payload)
            .partition(record.partition % target_partitions)
            .headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        // Enqueue now (the rate applies to sending); when librdkafka's queue is full, wait
        // for the oldest deliveries and try again.
        loop {
            match producer.send_result(message) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    message = returned;
                    settle(&mut pending, 1).await?;
                }
                Err((error, _)) => return Err(ProcedureError::Refused(error)),
            }
        }
        sent += 1;
        if pending.len() >= 10_000 {
            settle(&mut pending, 1_000).await?;
        }
        progress(sent, total);
        if last_recorded.elapsed() >= Duration::from_secs(1) {
            last_recorded = Instant::now();
            let state = serde_json::json!({ "selected": selected, "already": seen.len(), "sent": sent, "to_send": total });
            history::set_progress(pool, job, &state.to_string()).await?;
        }
    }
    let remaining = pending.len();
    settle(&mut pending, remaining).await?;
    producer.flush(Duration::from_secs(30))?;
    if stop.load(Ordering::Relaxed) {
        return Err(ProcedureError::Interrupted { sent, total });
    }
    Ok(Published { selected, sent })
}
