//! `braid replay publish`: records from the lake back into Kafka, resumable, each once.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ingest::kafka::Watermarks;
use batch_layer::lake::records::{LakeRecord, records_between};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use schemas::BraidConfig;

use crate::progress::Progress;
use crate::stop::StopFlag;

/// Header naming the replay a republished record belongs to.
pub const REPLAY_ID_HEADER: &str = "braid-replay-id";
/// Header holding the record's source position, `partition:offset`.
pub const SOURCE_HEADER: &str = "braid-source";

/// What `braid replay publish` was asked to do.
#[derive(Debug, Clone)]
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

fn instant(flag: &str, text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("--{flag}: `{text}` is not an RFC 3339 instant"))?
        .with_timezone(&Utc))
}

/// The source positions the target topic already holds for `replay_id`. Blocking.
///
/// Reads each partition up to the high watermark taken first. A partition is done when a record
/// at or past that mark arrives or the consumer reaches its end: transaction markers, aborted
/// records and compacted gaps occupy offsets that never arrive as records, so counting records
/// would wait for ever.
fn already_published(
    config: &BraidConfig,
    topic: &str,
    replay_id: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let marks = ingest::kafka::watermarks(&config.kafka, topic)?;
    let consumer: BaseConsumer = ingest::kafka::consumer_config(&config.kafka)
        .set("group.id", format!("braid-replay-publish-check:{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
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
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} back took more than 5 minutes (partitions {reading:?} unfinished)"
        );
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
) -> anyhow::Result<()> {
    use futures::StreamExt;
    for _ in 0..count {
        match pending.next().await {
            None => break,
            Some(Ok(Ok(_))) => {}
            Some(Ok(Err((error, _)))) => {
                anyhow::bail!("Kafka refused a republished record: {error}")
            }
            Some(Err(_)) => anyhow::bail!("a delivery report was lost (the producer closed)"),
        }
    }
    Ok(())
}

/// Runs the republish from the command line, recorded as a job.
pub async fn run(config: &BraidConfig, request: PublishRequest) -> anyhow::Result<ExitCode> {
    let pool = super::connect(config).await?;
    super::migrate(&pool, config).await?;
    let job = jobs::history::start(&pool, "replay_publish", "cli").await?;
    let (selected, sent) = execute(config, &pool, job, &request).await?;
    println!(
        "published {sent} records to {} ({selected} selected, {} already there from an earlier run of this replay); job {job}",
        request.topic,
        selected - sent
    );
    Ok(ExitCode::SUCCESS)
}

/// Republishes under the job `job` (already recorded as running) and records how it ended.
/// Returns (records selected, records sent by this run).
pub async fn execute(
    config: &BraidConfig,
    pool: &sqlx::PgPool,
    job: i64,
    request: &PublishRequest,
) -> anyhow::Result<(u64, u64)> {
    super::replay::recorded(
        pool,
        "replay_publish",
        job,
        checked(config, pool, job, request),
        |(selected, sent)| jobs::history::JobReport {
            rows_read: Some(*selected as i64),
            rows_written: Some(*sent as i64),
            ..Default::default()
        },
    )
    .await
}

async fn checked(
    config: &BraidConfig,
    pool: &sqlx::PgPool,
    job: i64,
    request: &PublishRequest,
) -> anyhow::Result<(u64, u64)> {
    let from = instant("from", &request.from)?;
    let to = instant("to", &request.to)?;
    anyhow::ensure!(
        from < to,
        "--from {} must be before --to {}",
        request.from,
        request.to
    );
    let source = &config.kafka.topic;
    anyhow::ensure!(
        request.topic != *source,
        "--topic must differ from the source topic {source}"
    );
    let replay_id = request
        .id
        .clone()
        .unwrap_or_else(|| format!("{source}:{}:{}", request.from, request.to));
    publish(
        config,
        pool,
        job,
        from,
        to,
        &request.topic,
        request.rate,
        &replay_id,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    config: &BraidConfig,
    pool: &sqlx::PgPool,
    job: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    topic: &str,
    rate: Option<u32>,
    replay_id: &str,
) -> anyhow::Result<(u64, u64)> {
    let (version, records) =
        records_between(&batch_layer::lake::Lake::of(config), from, to).await?;
    let selected = records.len() as u64;
    let source_partitions = ingest::kafka::watermarks(&config.kafka, &config.kafka.topic)
        .map(|m| m.len() as i32)
        .unwrap_or(1)
        .max(1);
    ingest::kafka::ensure_topic(&config.kafka, topic, source_partitions).await?;
    let seen = {
        let (config, topic, replay_id) = (config.clone(), topic.to_string(), replay_id.to_string());
        tokio::task::spawn_blocking(move || already_published(&config, &topic, &replay_id))
            .await??
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
    let target_partitions = ingest::kafka::watermarks(&config.kafka, topic)?.len().max(1) as i32;
    let producer: FutureProducer = ingest::kafka::client_config(&config.kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .create()?;
    let stop = StopFlag::default();
    stop.stop_on_signals();
    let mut progress = Progress::new("replay publish", todo.len() as u64);
    let started = Instant::now();
    let mut last_recorded = Instant::now();
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut sent = 0u64;
    for record in &todo {
        if stop.is_stopped() {
            break;
        }
        if let Some(rate) = rate {
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
                value: Some(replay_id),
            })
            .insert(Header {
                key: SOURCE_HEADER,
                value: Some(&source),
            })
            .insert(Header {
                key: "braid-source-topic",
                value: Some(&config.kafka.topic),
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
                Err((error, _)) => anyhow::bail!("Kafka refused a republished record: {error}"),
            }
        }
        sent += 1;
        if pending.len() >= 10_000 {
            settle(&mut pending, 1_000).await?;
        }
        progress.update(sent);
        if last_recorded.elapsed() >= Duration::from_secs(1) {
            last_recorded = Instant::now();
            let state = serde_json::json!({ "selected": selected, "already": seen.len(), "sent": sent, "to_send": todo.len() });
            jobs::history::set_progress(pool, job, &state.to_string()).await?;
        }
    }
    let remaining = pending.len();
    settle(&mut pending, remaining).await?;
    producer.flush(Duration::from_secs(30))?;
    progress.finish(sent);
    anyhow::ensure!(
        !stop.is_stopped(),
        "interrupted after {sent} of {} records; run the same command again to resume",
        todo.len()
    );
    Ok((selected, sent))
}
