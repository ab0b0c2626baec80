//! The batch layer's settings from the configuration: the lake handle every user of the Delta
//! table shares (the sink, batch runs, table maintenance, time travel, republish, recover), the
//! batch runs' settings and the Delta sink's.

use std::num::NonZeroU64;
use std::time::Duration;

use batch_layer::lake::{Lake, LakeSettings};
use batch_layer::recompute::{BatchSettings, Engine};
use batch_layer::sink::SinkSettings;
use schemas::BraidConfig;
use schemas::config::BatchEngine;

/// The Delta table of `lake.uri` with `[lake.storage_options]`, the event schema and the
/// source topic.
pub fn lake(config: &BraidConfig) -> Lake {
    Lake::new(LakeSettings {
        uri: config.lake.uri.clone(),
        storage_options: config.lake.storage_options.clone().into_iter().collect(),
        schema: config.schema.clone(),
        topic: config.kafka.topic.clone(),
    })
}

/// The batch runs' settings: the lake, every view, the engine, and how long a run waits for the
/// sink to reach its cut.
pub fn batch(config: &BraidConfig, wait_timeout: Duration) -> BatchSettings {
    BatchSettings {
        lake: lake(config),
        views: config.views.clone(),
        wait_timeout,
        engine: match config.batch.engine {
            BatchEngine::Polars => Engine::Polars,
            BatchEngine::Spark => Engine::Spark(config.batch.spark.clone()),
        },
        slice_records: NonZeroU64::new(config.batch.slice_records)
            .expect("config validation requires batch.slice_records >= 1"),
    }
}

/// The Delta sink's settings: its consumer group and flushes (`[sink]`), the lake and the
/// compression of its files.
pub fn sink(config: &BraidConfig) -> SinkSettings {
    SinkSettings {
        ingest: ingest::IngestSettings {
            topic: config.kafka.topic.clone(),
            group: config.kafka.sink_group.clone(),
            client: ingest::kafka::consumer_config(&config.kafka),
            flush_interval: config.sink.flush_interval_ms.duration(),
            // Delta commits stay large: a file per small flush would bloat the table.
            flush_when_caught_up: None,
            flush_max_records: None,
            flush_max_bytes: Some(config.sink.flush_max_bytes),
            dead_letter_max_payload_bytes: config.sink.dead_letter_max_payload_bytes,
            schema: config.schema.clone(),
            schema_registry: config.schema_registry.clone(),
        },
        lake: lake(config),
        compression: config.sink.compression,
    }
}

#[cfg(test)]
mod tests {
    use schemas::BraidConfig;

    #[test]
    fn the_sink_keeps_its_own_dead_letter_payload_bound() {
        let demo = include_str!("../../braid.toml");
        let env = [
            (
                "BRAID__SPEED__DEAD_LETTER_MAX_PAYLOAD_BYTES".to_string(),
                "11".to_string(),
            ),
            (
                "BRAID__SINK__DEAD_LETTER_MAX_PAYLOAD_BYTES".to_string(),
                "9".to_string(),
            ),
        ];
        let config = BraidConfig::load_from(Some(("braid.toml", demo)), env).unwrap();
        assert_eq!(super::sink(&config).ingest.dead_letter_max_payload_bytes, 9);
        assert_eq!(
            crate::settings::speed_layer::settings(&config)
                .ingest
                .dead_letter_max_payload_bytes,
            11
        );
    }
}
