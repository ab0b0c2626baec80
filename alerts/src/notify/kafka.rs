//! A Kafka topic: one message per transition, keyed by the instance's fingerprint (so that one
//! instance's transitions stay in order in one partition), the body as value.

use std::time::Duration;

use crate::store::Transition;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::config::KafkaConfig;

use super::payload::{IDEMPOTENCY_HEADER, body, idempotency_key};
use crate::error::AlertError;

/// Partitions of an alert topic Braid creates.
const ALERT_TOPIC_PARTITIONS: i32 = 1;

/// A producer for one topic.
pub struct KafkaTopic {
    receiver: String,
    topic: String,
    producer: FutureProducer,
}

impl KafkaTopic {
    /// Creates the topic if it is missing and an idempotent producer.
    pub async fn new(
        kafka: &KafkaConfig,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self, AlertError> {
        let receiver = format!("kafka:{topic}");
        let failed = |reason: String| AlertError::Receiver {
            receiver: receiver.clone(),
            reason,
        };
        ingest::kafka::ensure_topic(kafka, topic, ALERT_TOPIC_PARTITIONS)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let producer = ingest::kafka::client_config(kafka)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create()
            .map_err(|e| failed(e.to_string()))?;
        Ok(Self {
            receiver,
            topic: topic.to_string(),
            producer,
        })
    }

    /// Produces `transition` and waits for the broker's acknowledgement.
    pub async fn send(&self, transition: &Transition) -> Result<(), String> {
        let key = idempotency_key(transition, &self.receiver);
        let payload = body(transition, &self.receiver).to_string();
        let record = FutureRecord::to(&self.topic)
            .key(&transition.fingerprint)
            .payload(&payload)
            .headers(OwnedHeaders::new().insert(Header {
                key: IDEMPOTENCY_HEADER,
                value: Some(&key),
            }));
        self.producer
            .send(record, Duration::from_secs(0))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }
}
