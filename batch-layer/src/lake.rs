//! The master dataset as readers see it: where the Delta table is, how its records look, and
//! which topic's records count.

use std::collections::HashMap;

use schemas::{BraidConfig, EventSchema};

/// The Delta table and the topic whose records Braid reads from it.
#[derive(Debug, Clone)]
pub struct Lake {
    /// A local path or an s3:// URI.
    pub uri: String,
    /// Object-store options for the table.
    pub storage_options: HashMap<String, String>,
    /// The event schema.
    pub schema: EventSchema,
    /// The source topic: records of any other topic in the table are left out.
    pub topic: String,
}

impl Lake {
    /// The lake of a configuration.
    pub fn of(config: &BraidConfig) -> Self {
        Self {
            uri: config.lake.uri.clone(),
            storage_options: config.lake.storage_options.clone().into_iter().collect(),
            schema: config.schema.clone(),
            topic: config.kafka.topic.clone(),
        }
    }
}
