//! A background watch on Kafka: whether the brokers answer, and the topic's high watermarks,
//! so that /readyz and the offset lag in every answer cost no broker round trip.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use schemas::position::Positions;

/// What the last check found.
#[derive(Debug, Clone, Default)]
pub struct KafkaStatus {
    /// When the last check finished; `None` before the first.
    pub checked_at: Option<DateTime<Utc>>,
    /// Whether the last check reached the brokers.
    pub reachable: bool,
    /// Why the last check failed.
    pub error: Option<String>,
    /// The topic's high watermark per partition, from the last successful check.
    pub high_watermarks: Positions,
}

/// A shared, periodically refreshed [`KafkaStatus`]. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct KafkaWatch {
    status: Arc<RwLock<KafkaStatus>>,
}

impl KafkaWatch {
    /// A watch that never checks: readiness reports Kafka as not checked. For tests and for
    /// servers started without Kafka.
    pub fn unwatched() -> Self {
        Self::default()
    }

    /// Checks `topic` on the brokers of `config` every `every`, on a thread of its own that
    /// ends when the last clone of the watch is dropped.
    pub fn spawn(
        config: &ClientConfig,
        topic: String,
        every: Duration,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer: BaseConsumer = config.create()?;
        let watch = Self::default();
        let status: Weak<RwLock<KafkaStatus>> = Arc::downgrade(&watch.status);
        std::thread::Builder::new()
            .name("kafka-watch".into())
            .spawn(move || {
                while let Some(status) = status.upgrade() {
                    let checked = check(&consumer, &topic, every.max(Duration::from_secs(1)));
                    let mut status = status.write().unwrap_or_else(|e| e.into_inner());
                    status.checked_at = Some(Utc::now());
                    match checked {
                        Ok(marks) => {
                            status.reachable = true;
                            status.error = None;
                            status.high_watermarks = marks;
                        }
                        Err(error) => {
                            if status.reachable {
                                tracing::warn!(%error, "Kafka is unreachable; answers still come from PostgreSQL, /readyz reports it, and it is checked again shortly: check kafka.brokers");
                            }
                            status.reachable = false;
                            status.error = Some(error.to_string());
                        }
                    }
                    drop(status);
                    std::thread::sleep(every);
                }
            })
            .map_err(|e| {
                rdkafka::error::KafkaError::ClientCreation(format!("starting the Kafka watch: {e}"))
            })?;
        Ok(watch)
    }

    /// The last check's result.
    pub fn status(&self) -> KafkaStatus {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn check(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Positions, rdkafka::error::KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut marks = BTreeMap::new();
    for found in metadata.topics() {
        for partition in found.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
            marks.insert(partition.id(), high);
        }
    }
    Ok(marks)
}
