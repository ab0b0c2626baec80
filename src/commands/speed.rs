//! `braid speed`: the speed layer.

use schemas::BraidConfig;

use crate::stop::StopFlag;

/// The speed layer's settings from the configuration.
pub fn settings(config: &BraidConfig) -> speed_layer::SpeedSettings {
    speed_layer::SpeedSettings {
        ingest: ingest::IngestSettings {
            topic: config.kafka.topic.clone(),
            group: config.kafka.speed_group.clone(),
            client: ingest::kafka::consumer_config(&config.kafka),
            flush_interval: config.speed.flush_interval_ms.duration(),
            flush_when_caught_up: Some(
                config
                    .speed
                    .flush_min_interval_ms
                    .duration()
                    .min(config.speed.flush_interval_ms.duration()),
            )
            .filter(|d| !d.is_zero()),
            flush_max_records: Some(config.speed.flush_max_records),
            flush_max_bytes: None,
            dead_letter_max_payload_bytes: config.speed.dead_letter_max_payload_bytes,
            schema: config.schema.clone(),
        },
        views: config.views.clone(),
    }
}

/// Runs the speed layer on a dedicated thread and waits for it.
pub async fn spawn(
    config: &BraidConfig,
    pool: sqlx::PgPool,
    stop: StopFlag,
) -> anyhow::Result<speed_layer::SpeedSummary> {
    ingest::kafka::refuse_compacted_source(&config.kafka).await?;
    let settings = settings(config);
    let runtime = tokio::runtime::Handle::current();
    super::on_thread("speed", move || {
        speed_layer::run(settings, pool, runtime, stop.shared())
    })
    .await
}
