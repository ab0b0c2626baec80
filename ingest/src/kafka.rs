//! Kafka client settings shared by Braid's producers and consumers, watermarks, topic creation,
//! and the check that refuses a compacted source topic.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use schemas::config::KafkaConfig;
use schemas::position::Partition;

/// How long an admin request (describing the source topic's configs) may take.
const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a metadata or watermark request of [`watermarks`] may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Reports librdkafka's errors, except reaching the end of a partition: a consumer with
/// `enable.partition.eof` gets that as an event of its own, and it is no error.
pub fn report_client_error(error: &KafkaError, reason: &str) {
    match error {
        KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_) => {
            tracing::trace!(reason, "end of partition");
        }
        KafkaError::Global(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            tracing::warn!(
                reason,
                "the topic does not exist (yet): waiting for it; create it (or start its producer), or check kafka.topic"
            );
        }
        other => tracing::error!(
            error = %other,
            reason,
            "librdkafka reported an error; it reconnects and retries on its own: check kafka.brokers and the brokers if this repeats"
        ),
    }
}

/// librdkafka's warnings about states it resolves itself by retrying: a fresh broker still
/// loading its coordinators, a coordinator that moved. They are INFO, not WARN, so that the
/// first start of a broker does not page anyone.
const SELF_RESOLVING: &[&str] = &[
    "Coordinator load in progress",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "Not coordinator",
    "NOT_COORDINATOR",
    "Coordinator not available",
    "COORDINATOR_NOT_AVAILABLE",
];

/// Forwards one librdkafka log line to tracing at its level, except that warnings about
/// states librdkafka retries on its own ([`SELF_RESOLVING`]) are INFO.
pub fn report_client_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    let self_resolving = SELF_RESOLVING.iter().any(|s| message.contains(s));
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Warning if !self_resolving => {
            tracing::warn!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// A client context that reports errors with [`report_client_error`] and logs with
/// [`report_client_log`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        report_client_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// Kafka's first and next offsets of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// The first offset Kafka still holds.
    pub low: i64,
    /// The offset the next record will get.
    pub high: i64,
}

/// Why talking to Kafka about a topic failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// The brokers could not be asked (unreachable, refused).
    #[error("asking Kafka at {brokers} (kafka.brokers): {source}")]
    Client {
        /// The brokers.
        brokers: String,
        /// What failed.
        #[source]
        source: KafkaError,
    },
    /// Kafka answered with an error about the topic.
    #[error("Kafka topic {topic}: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// Kafka's error.
        code: RDKafkaErrorCode,
    },
    /// The source topic is compacted.
    #[error(
        "kafka.topic `{topic}` has cleanup.policy={policy}: compaction removes records at different \
         moments for the speed layer and the sink, so the same offsets would mean different records \
         to them and no answer could be exact. Use a topic with cleanup.policy=delete"
    )]
    CompactedSource {
        /// The topic.
        topic: String,
        /// Its cleanup policy.
        policy: String,
    },
}

fn client_error(kafka: &KafkaConfig) -> impl Fn(KafkaError) -> KafkaSetupError + '_ {
    move |source| KafkaSetupError::Client {
        brokers: kafka.brokers.clone(),
        source,
    }
}

/// A client config with the brokers and every pass-through option of `[kafka.options]`.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.options {
        config.set(key, value);
    }
    config
}

/// A consumer's client config: [`client_config`] plus fetch settings that suit a consumer that
/// processes records quickly (measured in docs/benchmarks.md, "Round three"):
/// - `fetch.queue.backoff.ms = 10`: librdkafka postpones a partition's next fetch by this long
///   once its queue holds `queued.min.messages` (100,000) or more; its default of 1 s left the
///   layers waiting for data between fetches (at 1 MiB per partition the speed layer read
///   135k records/s with the machine a third idle; with 10 ms, 320-390k/s).
/// - `max.partition.fetch.bytes` stays librdkafka's 1 MiB: larger fetches deliver one
///   partition's records in long runs (190,000 in a row at 10 MiB), so a micro-batch held one
///   partition at a time, and the rows of partitions that share a key and bucket were written once
///   per partition (676k rows against 342k for the same 3 M YSB events). The held fetches also
///   set most of a layer's memory: 404-420 MiB peak at 10 MiB, 136 MiB at 1 MiB.
/// - `fetch.max.bytes = 32 MiB` bounds one fetch response over many partitions.
///
/// Options given in `[kafka.options]` win.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = client_config(kafka);
    // Both layers read committed records only: aborted records and transaction markers are
    // skipped alike. The config refuses any other value.
    config.set("isolation.level", "read_committed");
    for (key, value) in [
        ("fetch.queue.backoff.ms", "10"),
        ("fetch.max.bytes", "33554432"),
    ] {
        if !kafka.options.contains_key(key) {
            config.set(key, value);
        }
    }
    config
}

/// Refuses a source topic whose `cleanup.policy` includes `compact`. Compaction deletes records
/// behind the two layers' backs at different moments, so an offset would name a record one
/// layer read and the other never saw, and the merged answer could not be exact. A topic that
/// does not exist yet passes (it is created without compaction).
pub async fn refuse_compacted_source(kafka: &KafkaConfig) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<QuietEof> = client_config(kafka)
        .create_with_context(QuietEof)
        .map_err(client_error(kafka))?;
    let results = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(&kafka.topic)],
            &AdminOptions::new().request_timeout(Some(ADMIN_REQUEST_TIMEOUT)),
        )
        .await
        .map_err(client_error(kafka))?;
    for result in results {
        let resource = match result {
            Ok(resource) => resource,
            Err(RDKafkaErrorCode::UnknownTopicOrPartition) => continue,
            Err(code) => {
                return Err(KafkaSetupError::Topic {
                    topic: kafka.topic.clone(),
                    code,
                });
            }
        };
        let policy = resource
            .get("cleanup.policy")
            .and_then(|entry| entry.value.clone())
            .unwrap_or_default();
        if policy.contains("compact") {
            return Err(KafkaSetupError::CompactedSource {
                topic: kafka.topic.clone(),
                policy,
            });
        }
    }
    Ok(())
}

/// Creates `topic` with `partitions` partitions unless it exists. Returns whether it was created.
pub async fn ensure_topic(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> Result<bool, KafkaSetupError> {
    ensure_topic_with(kafka, topic, partitions, &[]).await
}

/// [`ensure_topic`] with topic configs for a new topic, e.g. `cleanup.policy = compact`.
pub async fn ensure_topic_with(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<bool, KafkaSetupError> {
    let admin: AdminClient<QuietEof> = client_config(kafka)
        .create_with_context(QuietEof)
        .map_err(client_error(kafka))?;
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (name, value) in configs {
        new_topic = new_topic.set(name, value);
    }
    let results = admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .map_err(client_error(kafka))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(KafkaSetupError::Topic {
            topic: topic.to_string(),
            code,
        }),
        None => Err(KafkaSetupError::Topic {
            topic: topic.to_string(),
            code: RDKafkaErrorCode::Unknown,
        }),
    }
}

/// The watermarks of every partition of `topic`. Blocking: call off the runtime.
pub fn watermarks(
    kafka: &KafkaConfig,
    topic: &str,
) -> Result<BTreeMap<Partition, Watermarks>, KafkaSetupError> {
    let consumer: BaseConsumer<QuietEof> = client_config(kafka)
        .create_with_context(QuietEof)
        .map_err(client_error(kafka))?;
    let timeout = METADATA_TIMEOUT;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(client_error(kafka))?;
    let mut marks = BTreeMap::new();
    for found in metadata.topics() {
        if let Some(error) = found.error() {
            return Err(KafkaSetupError::Topic {
                topic: topic.to_string(),
                code: RDKafkaErrorCode::from(error),
            });
        }
        for partition in found.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), timeout)
                .map_err(client_error(kafka))?;
            marks.insert(partition.id(), Watermarks { low, high });
        }
    }
    Ok(marks)
}

#[cfg(test)]
mod log_tests {
    use std::sync::{Arc, Mutex};

    use rdkafka::config::RDKafkaLogLevel;
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

    use super::report_client_log;

    struct Levels(Arc<Mutex<Vec<Level>>>);

    impl<S: Subscriber> Layer<S> for Levels {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            self.0.lock().unwrap().push(*event.metadata().level());
        }
    }

    #[test]
    fn warnings_librdkafka_resolves_itself_are_info_and_others_stay_warnings() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Levels(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            // Logged by every idempotent producer on a broker that has just started.
            report_client_log(
                RDKafkaLogLevel::Warning,
                "GETPID",
                "Failed to acquire idempotence PID from broker localhost:9092/1: Broker: Coordinator load in progress: retrying",
            );
            report_client_log(
                RDKafkaLogLevel::Warning,
                "CONFWARN",
                "Configuration property x is deprecated",
            );
            report_client_log(RDKafkaLogLevel::Error, "FAIL", "all brokers are down");
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [Level::INFO, Level::WARN, Level::ERROR]
        );
    }
}
