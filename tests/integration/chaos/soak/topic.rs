//! The records of a topic as an independent reader sees them (`read_committed`, as the layers
//! read), kept across checkpoints and read on from where the last read stopped, so that a
//! checkpoint an hour in does not read the whole topic again. Partitions added while the soak
//! runs are picked up at the next read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::oracle::RawMessage;
use crate::support::kafka_brokers;

/// Partition → next offset (the API's and the tables' positions).
pub type Positions = BTreeMap<i32, i64>;

/// Every committed record read so far, per partition in offset order.
pub struct TopicCache {
    topic: String,
    partitions: BTreeMap<i32, Vec<RawMessage>>,
    /// Per partition, where the next read starts.
    next: Positions,
}

impl TopicCache {
    pub fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_string(),
            partitions: BTreeMap::new(),
            next: Positions::new(),
        }
    }

    /// Reads what was committed since the last read, up to the high watermarks as they are
    /// now (the last stable offset, where a transaction is open).
    pub fn refresh(&mut self) -> Result<(), String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("group.id", format!("{}.soak-oracle", self.topic))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|e| format!("metadata of {}: {e}", self.topic))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .first()
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        let mut assignment = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, partition, timeout)
                .map_err(|e| format!("watermarks of {}/{partition}: {e}", self.topic))?;
            let start = self.next.get(&partition).copied().unwrap_or(low).max(low);
            if start < high {
                assignment
                    .add_partition_offset(&self.topic, partition, Offset::Offset(start))
                    .map_err(|e| e.to_string())?;
                ends.insert(partition, high);
            }
        }
        if ends.is_empty() {
            return Ok(());
        }
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        let mut reading: BTreeSet<i32> = ends.keys().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !reading.is_empty() {
            if Instant::now() > deadline {
                return Err(format!(
                    "partitions {reading:?} of {} did not reach their end in 120 s",
                    self.topic
                ));
            }
            let message = match consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    reading.remove(&partition);
                    continue;
                }
                Some(Err(e)) => return Err(format!("reading {}: {e}", self.topic)),
                Some(Ok(message)) => message,
            };
            let partition = message.partition();
            let end = ends[&partition];
            if message.offset() + 1 >= end {
                reading.remove(&partition);
            }
            let next = self.next.entry(partition).or_insert(0);
            if message.offset() < *next || message.offset() >= end {
                continue;
            }
            *next = message.offset() + 1;
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| {
                            (
                                header.key.to_string(),
                                header.value.unwrap_or_default().to_vec(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            self.partitions
                .entry(partition)
                .or_default()
                .push(RawMessage {
                    partition,
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    headers,
                });
        }
        Ok(())
    }

    /// The records below `positions` (none of a partition the positions lack).
    pub fn below<'a>(&'a self, positions: &'a Positions) -> impl Iterator<Item = &'a RawMessage> {
        self.partitions
            .iter()
            .flat_map(move |(partition, messages)| {
                let end = positions.get(partition).copied().unwrap_or(0);
                messages.iter().take_while(move |m| m.offset < end)
            })
    }

    /// How many records were read.
    pub fn len(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }

    /// Per partition, the position after its last committed record read (where a layer that
    /// has read everything stands, before trailing transaction markers).
    pub fn committed_ends(&self) -> Positions {
        self.partitions
            .iter()
            .filter_map(|(p, m)| m.last().map(|m| (*p, m.offset + 1)))
            .collect()
    }
}

/// [`TopicCache::refresh`] on a blocking thread, so that the test's runtime (one thread) goes
/// on meanwhile.
pub async fn refresh(cache: &mut TopicCache) -> Result<(), String> {
    let mut taken = std::mem::replace(cache, TopicCache::new(&cache.topic));
    let (taken, result) = tokio::task::spawn_blocking(move || {
        let result = taken.refresh();
        (taken, result)
    })
    .await
    .unwrap();
    *cache = taken;
    result
}
