//! Kafka client settings shared by Braid's producers and consumers.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use schemas::config::KafkaConfig;

/// A client config with the brokers and every pass-through option of `[kafka.options]`.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.options {
        config.set(key, value);
    }
    config
}

/// A consumer's client config: [`client_config`] plus fetch sizes that suit a consumer that
/// processes records quickly. librdkafka fetches at most 1 MiB per partition by default, which
/// capped the speed layer near 140k records/s on a local broker (docs/benchmarks.md). Options
/// given in `[kafka.options]` win.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = client_config(kafka);
    // Both layers read committed records only: aborted records and transaction markers are
    // skipped alike. The config refuses any other value.
    config.set("isolation.level", "read_committed");
    for (key, value) in [
        ("max.partition.fetch.bytes", "10485760"),
        ("fetch.max.bytes", "104857600"),
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
pub async fn refuse_compacted_source(kafka: &KafkaConfig) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka).create()?;
    let results = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(&kafka.topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .with_context(|| format!("describing topic {} (kafka.brokers)", kafka.topic))?;
    for result in results {
        let resource = match result {
            Ok(resource) => resource,
            Err(RDKafkaErrorCode::UnknownTopicOrPartition) => continue,
            Err(code) => anyhow::bail!("describing topic {}: {code}", kafka.topic),
        };
        let policy = resource
            .get("cleanup.policy")
            .and_then(|entry| entry.value.clone())
            .unwrap_or_default();
        anyhow::ensure!(
            !policy.contains("compact"),
            "kafka.topic `{}` has cleanup.policy={policy}: compaction removes records at different \
             moments for the speed layer and the sink, so the same offsets would mean different \
             records to them and no answer could be exact. Use a topic with cleanup.policy=delete",
            kafka.topic
        );
    }
    Ok(())
}

/// Creates `topic` with `partitions` partitions unless it exists. Returns whether it was created.
pub async fn ensure_topic(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<bool> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka).create()?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((name, code))) => anyhow::bail!("cannot create Kafka topic {name}: {code}"),
        None => anyhow::bail!("Kafka returned no result for creating topic {topic}"),
    }
}

/// The (low, high) watermarks of every partition of `topic`. Blocking: call off the runtime.
pub fn watermarks(
    kafka: &KafkaConfig,
    topic: &str,
) -> anyhow::Result<std::collections::BTreeMap<i32, (i64, i64)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = client_config(kafka).create()?;
    let timeout = std::time::Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
        anyhow::anyhow!(
            "reading the partitions of {topic} from {}: {e}",
            kafka.brokers
        )
    })?;
    let mut marks = std::collections::BTreeMap::new();
    for found in metadata.topics() {
        if let Some(error) = found.error() {
            anyhow::bail!("Kafka topic {topic}: {error:?}");
        }
        for partition in found.partitions() {
            let marks_of = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
            marks.insert(partition.id(), marks_of);
        }
    }
    Ok(marks)
}
