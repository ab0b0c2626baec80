//! What the evaluator and its receivers read: the rules, the views they watch and the
//! `[alerting]` section, built by the binary from the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use schemas::alert::AlertRule;
use schemas::config::{KafkaConfig, WebhookConfig};
use schemas::view::View;

use crate::notify::RetryPolicy;

/// The alerts' settings.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The rules (`[[alerts]]`), validated against the views.
    pub rules: Vec<AlertRule>,
    /// The views the rules watch (`[[views]]`).
    pub views: Vec<View>,
    /// The source topic whose speed positions the merged window is read at (`kafka.topic`).
    pub topic: String,
    /// Every rule is evaluated at least this often (`alerting.evaluation_interval_ms`).
    pub evaluation_interval: Duration,
    /// A rule whose view changed is evaluated at most this often (`alerting.min_interval_ms`).
    pub min_interval: Duration,
    /// The most keys one evaluation keeps (`alerting.max_instances`).
    pub max_instances: u32,
    /// How a failed delivery is retried (`alerting.retry_initial_ms`, `alerting.retry_max_ms`).
    pub retry: RetryPolicy,
    /// Where the transitions go.
    pub receivers: ReceiverSettings,
}

/// What the receivers' senders are built from.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// The declared webhooks, by name (`[alerting.webhooks.<name>]`).
    pub webhooks: BTreeMap<String, WebhookConfig>,
    /// How long a webhook request or a Kafka send may take (`alerting.webhook_timeout_ms`).
    pub timeout: Duration,
    /// The Kafka cluster of the `kafka:` receivers (`[kafka]`).
    pub kafka: KafkaConfig,
}
