//! The speed layer's settings from the configuration: its consumer (`[kafka]`, `[speed]`, the
//! event schema) and the views it aggregates.

use schemas::BraidConfig;

/// The speed layer's settings: its consumer group, flushes and dead letters (`[speed]`), and
/// every view.
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
            schema_registry: config.schema_registry.clone(),
        },
        views: config.views.clone(),
    }
}
