//! What the evaluator and its receivers read: the rules, the views they watch and the
//! `[alerting]` section, built by the binary from the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use schemas::alert::AlertRule;
use schemas::config::{KafkaConfig, WebhookConfig};
use schemas::view::View;

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

/// How a failed delivery is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts (1, 2, ...): initial · 2^(attempts-1), capped.
    pub fn backoff(self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::RetryPolicy;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap() {
        let retry = RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
        };
        let waits: Vec<u128> = (1..=6).map(|a| retry.backoff(a).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 4000, 4000]);
    }
}
