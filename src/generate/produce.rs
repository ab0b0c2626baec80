//! Producing the demo stream to Kafka at a steady rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use schemas::config::KafkaConfig;

use super::encode::Encoder;
use super::{EventClock, check_args};
use crate::cli::GenerateArgs;
use crate::stop::StopFlag;

/// What a producing run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceSummary {
    /// Messages handed to the producer.
    pub sent: u64,
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Messages that could not be delivered.
    pub failed: u64,
    /// Malformed messages among those sent.
    pub malformed: u64,
}

#[derive(Default)]
struct DeliveryCounts {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct CountingContext(Arc<DeliveryCounts>);

impl ClientContext for CountingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        ingest::kafka::report_client_log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        ingest::kafka::report_client_error(&error, reason);
    }
}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err((error, _)) => {
                tracing::warn!(%error, "a demo message could not be delivered; it is counted as failed and not resent");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Produces the stream to `topic` until `args.count` messages are sent or `stop` is set, as
/// JSON, or as Avro or Protobuf by `encoder`. Waits for every delivery before returning.
pub async fn produce(
    args: &GenerateArgs,
    kafka: &KafkaConfig,
    topic: &str,
    encoder: Option<&Encoder>,
    stop: StopFlag,
) -> anyhow::Result<ProduceSummary> {
    check_args(args)?;
    let clock = EventClock::for_args(args)?;
    let mut stream = super::stream(args);
    let counts = Arc::new(DeliveryCounts::default());
    let producer: ThreadedProducer<CountingContext> = ingest::kafka::client_config(kafka)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .create_with_context(CountingContext(counts.clone()))
        .context("creating the Kafka producer")?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut summary = ProduceSummary::default();
    tracing::info!(
        topic,
        rate = args.rate,
        count = args.count,
        "producing generated events"
    );
    while args.count.is_none_or(|count| summary.sent < count) && !stop.is_stopped() {
        if args.rate > 0 {
            let due = (started.elapsed().as_secs_f64() * f64::from(args.rate)) as u64;
            if summary.sent >= due {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        }
        let message = stream.next_message(clock.at(summary.sent));
        // What the format cannot carry goes as its JSON bytes (refused as wrong_magic_byte).
        let encoded = encoder.and_then(|encoder| encoder.encode(&message.payload));
        let payload = encoded.as_deref().unwrap_or(&message.payload);
        let mut record = BaseRecord::to(topic).key(&message.key).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((error, _)) => return Err(error).context("producing to Kafka"),
            }
        }
        summary.sent += 1;
        summary.malformed += u64::from(message.malformed.is_some());
        if summary.sent % 1024 == 0 {
            tokio::task::yield_now().await;
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                let rate = summary.sent as f64 / started.elapsed().as_secs_f64();
                tracing::info!(
                    sent = summary.sent,
                    delivered = counts.delivered.load(Ordering::Relaxed),
                    rate = rate as u64,
                    "producing"
                );
            }
        }
    }
    let flushed = tokio::task::spawn_blocking(move || {
        producer.flush(Duration::from_secs(60)).map(|()| producer)
    })
    .await
    .context("joining the flush")?;
    drop(flushed.context("waiting for Kafka to acknowledge every message")?);
    summary.delivered = counts.delivered.load(Ordering::Relaxed);
    summary.failed = counts.failed.load(Ordering::Relaxed);
    tracing::info!(
        sent = summary.sent,
        delivered = summary.delivered,
        failed = summary.failed,
        malformed = summary.malformed,
        seconds = started.elapsed().as_secs_f64(),
        "produced"
    );
    Ok(summary)
}
