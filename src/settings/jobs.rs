//! The jobs' settings from the configuration: the context every job runs in, whether the
//! scheduler, the CLI or the admin API starts it.

use std::sync::Arc;

use jobs::JobContext;
use jobs::procedures::prune::Retentions;
use schemas::BraidConfig;

/// The jobs' context: the batch settings (with the lake), maintenance, retries, Kafka for the
/// operators' procedures and the prune's retentions.
pub fn context(config: &BraidConfig, pool: sqlx::PgPool) -> JobContext {
    JobContext {
        pool,
        batch: super::batch_layer::batch(config, config.jobs.batch.wait_timeout_s.duration()),
        vacuum_retention: config.jobs.vacuum.retention_hours.duration(),
        compression: config.sink.compression,
        max_attempts: config.jobs.retry_attempts,
        first_backoff: config.jobs.retry_backoff_ms.duration(),
        kafka: config.kafka.clone(),
        retentions: Retentions {
            alerts: config.alerting.retention_hours,
            dead_letters: config.speed.dead_letter_retention_hours,
        },
        stop: Arc::default(),
        progress: None,
    }
}
