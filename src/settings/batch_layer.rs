//! The batch layer's settings from the configuration: the lake handle every user of the Delta
//! table shares (the sink, batch runs, table maintenance, time travel, republish, recover), and
//! the batch runs' settings.

use std::time::Duration;

use batch_layer::lake::{Lake, LakeSettings};
use batch_layer::recompute::{BatchSettings, Engine};
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
    }
}
