//! The alerts' settings from the configuration: the rules, their views, `[alerting]` and the
//! receivers, and the evaluator's context.

use std::sync::Arc;

use alerts::{AlertSettings, EvaluatorContext, ReceiverSettings, RetryPolicy};
use chrono::Utc;
use schemas::BraidConfig;

/// The rules (`[[alerts]]`), their views and the source topic, `[alerting]` and the receivers.
pub fn settings(config: &BraidConfig) -> AlertSettings {
    let alerting = &config.alerting;
    AlertSettings {
        rules: config.alerts.clone(),
        views: config.views.clone(),
        topic: config.kafka.topic.clone(),
        evaluation_interval: alerting.evaluation_interval_ms.duration(),
        min_interval: alerting.min_interval_ms.duration(),
        max_instances: alerting.max_instances,
        retry: RetryPolicy {
            initial: alerting.retry_initial_ms.duration(),
            max: alerting.retry_max_ms.duration(),
        },
        receivers: ReceiverSettings {
            webhooks: alerting.webhooks.clone(),
            timeout: alerting.webhook_timeout_ms.duration(),
            kafka: config.kafka.clone(),
        },
    }
}

/// The evaluator's context from the configuration, with the wall clock.
pub fn context(config: &BraidConfig, pool: sqlx::PgPool) -> EvaluatorContext {
    EvaluatorContext {
        pool,
        settings: Arc::new(settings(config)),
        clock: Arc::new(Utc::now),
    }
}
