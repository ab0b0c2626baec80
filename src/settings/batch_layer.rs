//! The batch layer's settings from the configuration: the lake handle every user of the Delta
//! table shares (the sink, batch runs, table maintenance, time travel, republish, recover).

use batch_layer::lake::{Lake, LakeSettings};
use schemas::BraidConfig;

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
