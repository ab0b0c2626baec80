//! Kafka client settings shared by Braid's producers and consumers.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
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
