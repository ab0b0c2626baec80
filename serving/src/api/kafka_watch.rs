//! A background watch on Kafka: whether the brokers answer, and the topic's high watermarks,
//! so that /readyz and the offset lag in every answer cost no broker round trip.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
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
    /// Each watched consumer group's committed positions, by layer (`speed`, `sink`).
    pub committed: BTreeMap<String, BTreeMap<i32, CommittedPosition>>,
}

/// A consumer group's committed position on one partition, as its layer committed it for
/// monitoring (never used to resume).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommittedPosition {
    /// The next offset the layer will read.
    pub next_offset: i64,
    /// When the layer committed it (from the commit's metadata), if it said.
    pub committed_at: Option<DateTime<Utc>>,
}

/// A consumer group whose committed positions the watch reads.
#[derive(Debug, Clone)]
pub struct WatchedGroup {
    /// The layer that commits as this group: `speed` or `sink`.
    pub layer: String,
    /// The group's id (kafka.speed_group, kafka.sink_group).
    pub group: String,
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
        groups: Vec<WatchedGroup>,
        every: Duration,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer: BaseConsumer = config.create()?;
        // One consumer per group, never subscribed: it only fetches the group's commits.
        let group_consumers = groups
            .into_iter()
            .map(|watched| {
                let consumer: BaseConsumer = config
                    .clone()
                    .set("group.id", &watched.group)
                    .set("enable.auto.commit", "false")
                    .create()?;
                Ok((watched.layer, consumer))
            })
            .collect::<Result<Vec<_>, rdkafka::error::KafkaError>>()?;
        let watch = Self::default();
        let status: Weak<RwLock<KafkaStatus>> = Arc::downgrade(&watch.status);
        std::thread::Builder::new()
            .name("kafka-watch".into())
            .spawn(move || {
                while let Some(status) = status.upgrade() {
                    let timeout = every.max(Duration::from_secs(1));
                    let checked = check(&consumer, &topic, timeout);
                    let committed = checked.as_ref().ok().map(|marks| {
                        group_consumers
                            .iter()
                            .filter_map(|(layer, consumer)| {
                                committed_positions(consumer, &topic, marks, timeout)
                                    .map(|positions| (layer.clone(), positions))
                            })
                            .collect()
                    });
                    let mut status = status.write().unwrap_or_else(|e| e.into_inner());
                    status.checked_at = Some(Utc::now());
                    match checked {
                        Ok(marks) => {
                            status.reachable = true;
                            status.error = None;
                            status.high_watermarks = marks;
                            status.committed = committed.unwrap_or_default();
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

/// `group`'s committed positions on the partitions of `marks`; `None` when the brokers did not
/// answer (the previous check's positions are then dropped rather than shown as current).
fn committed_positions(
    consumer: &BaseConsumer,
    topic: &str,
    marks: &Positions,
    timeout: Duration,
) -> Option<BTreeMap<i32, CommittedPosition>> {
    let mut wanted = TopicPartitionList::new();
    for &partition in marks.keys() {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(wanted, timeout).ok()?;
    Some(
        committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                rdkafka::Offset::Offset(next_offset) => Some((
                    element.partition(),
                    CommittedPosition {
                        next_offset,
                        committed_at: commit_time(element),
                    },
                )),
                _ => None,
            })
            .collect(),
    )
}

/// The commit time a Braid layer wrote into the metadata. rdkafka panics on metadata that is
/// not UTF-8, which another tool committing as the group could write: that reads as no time.
fn commit_time(
    element: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>,
) -> Option<DateTime<Utc>> {
    let metadata = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        element.metadata().to_string()
    }))
    .ok()?;
    schemas::position::monitoring_commit_ms(&metadata).and_then(DateTime::from_timestamp_millis)
}
