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
#[cfg(test)]
mod rules_window_tests;

use deltalake::parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use ingest::IngestSettings;
use schemas::config::Compression;

use crate::lake::Lake;

pub use consumer::run;
pub use error::SinkError;

/// Parquet writer settings for the configured compression. The Kafka key column (binary) gets
/// no statistics: nothing prunes by it, and delta-rs warns once per file about binary columns
/// that have them.
pub fn writer_properties(compression: Compression) -> WriterProperties {
    let codec = match compression {
        Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
        Compression::Snappy => ParquetCompression::SNAPPY,
    };
    WriterProperties::builder()
        .set_compression(codec)
        .set_column_statistics_enabled(
            ColumnPath::from(schemas::arrow::KEY),
            EnabledStatistics::None,
        )
        .build()
}

/// What the sink needs to run.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// The ingest loop's settings (topic, group — not the speed layer's —, flush interval and
    /// input bytes, schema).
    pub ingest: IngestSettings,
    /// The table.
    pub lake: Lake,
    /// Parquet compression.
    pub compression: Compression,
}

/// Totals of one run.
pub type SinkSummary = ingest::consumer::Summary;
