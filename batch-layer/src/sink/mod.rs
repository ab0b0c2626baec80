//! The Delta sink: Kafka to the Delta table, exactly once.
//!
//! Each commit carries one application transaction per partition it covers (app id from topic
//! and partition, version = next offset). On assignment the consumer seeks to the positions in
//! the Delta log. A crash between writing Parquet files and committing leaves orphan files
//! that no version references (vacuum removes them), never duplicates or gaps.

#[cfg(test)]
mod agreement_tests;
pub(crate) mod columns;
mod commit;
mod consumer;
mod error;

use std::collections::HashMap;
use std::time::Duration;

use deltalake::parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use rdkafka::config::ClientConfig;
use schemas::EventSchema;
use schemas::config::Compression;

pub use consumer::run;
pub use error::SinkError;

/// Parquet writer settings for the configured compression.
pub fn writer_properties(compression: Compression) -> WriterProperties {
    let codec = match compression {
        Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
        Compression::Snappy => ParquetCompression::SNAPPY,
    };
    WriterProperties::builder().set_compression(codec).build()
}

/// What the sink needs to run.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// The source topic.
    pub topic: String,
    /// The consumer group (not the speed layer's).
    pub group: String,
    /// Kafka client settings: brokers and pass-through options.
    pub client: ClientConfig,
    /// The table: a local path or an s3:// URI.
    pub table_uri: String,
    /// Object-store options for the table.
    pub storage_options: HashMap<String, String>,
    /// Commit at least this often.
    pub flush_interval: Duration,
    /// Commit early once this many bytes of input are buffered.
    pub flush_max_bytes: u64,
    /// Parquet compression.
    pub compression: Compression,
    /// Dead letters keep at most this many payload bytes.
    pub dead_letter_max_payload_bytes: usize,
    /// The event schema.
    pub schema: EventSchema,
}

/// Totals of one run.
pub type SinkSummary = ingest::consumer::Summary;
