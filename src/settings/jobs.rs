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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use schemas::config::Compression;
    use schemas::duration::Hours;

    use super::*;

    /// Each of the jobs' settings comes from its own key: every value differs from the others
    /// and from the defaults, so that two keys swapped (the prune's two retentions, say) or a
    /// default read instead of the key fail.
    #[tokio::test]
    async fn each_job_setting_comes_from_its_own_key() {
        let text = r#"
[kafka]
topic = "jobs-settings"
brokers = "127.0.0.1:1"
[lake]
uri = "S3://Bucket/events"
[lake.storage_options]
AWS_ENDPOINT_URL = "http://127.0.0.1:2"
[sink]
compression = "snappy"
[speed]
dead_letter_retention_hours = 11
[alerting]
retention_hours = 7
[jobs]
retry_attempts = 5
retry_backoff_ms = 17
[jobs.batch]
wait_timeout_s = 19
[jobs.vacuum]
retention_hours = 13
[schema]
event_time = "ts"
fields = [{ name = "ts", type = "timestamp" }, { name = "n", type = "i64" }]
[[views]]
name = "per_minute"
bucket = "1m"
metrics = ["count", "sum(n)"]
"#;
        let config = BraidConfig::load_from(Some(("jobs.toml", text)), []).unwrap();
        let pool = sqlx::PgPool::connect_lazy("postgres://braid@127.0.0.1:1/unused").unwrap();
        let ctx = context(&config, pool);
        assert_eq!(
            ctx.retentions,
            Retentions {
                alerts: Hours(7),
                dead_letters: Hours(11)
            }
        );
        assert_eq!(ctx.vacuum_retention, Duration::from_secs(13 * 3600));
        assert_eq!(ctx.max_attempts, 5);
        assert_eq!(ctx.first_backoff, Duration::from_millis(17));
        assert_eq!(ctx.batch.wait_timeout, Duration::from_secs(19));
        assert_eq!(ctx.compression, Compression::Snappy);
        assert_eq!(ctx.kafka, config.kafka);
        assert_eq!(ctx.kafka.topic, "jobs-settings");
        // The lake: the URI as configured (its scheme's case too: the store check takes any
        // case), the storage options, the source topic and the event schema.
        let lake = &ctx.batch.lake;
        assert_eq!(lake.uri(), "S3://Bucket/events");
        assert_eq!(
            lake.storage_options()
                .get("AWS_ENDPOINT_URL")
                .map(String::as_str),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(lake.topic(), "jobs-settings");
        assert_eq!(lake.schema(), &config.schema);
        assert_eq!(ctx.batch.views, config.views);
        assert!(batch_layer::lake::store::is_object_store(lake.uri()));
    }
}
