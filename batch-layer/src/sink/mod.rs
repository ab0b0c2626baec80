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

/// Rows per Parquet row group in the files the sink and compaction write (DuckDB writes
/// 122,880). A reader decodes a row group's columns whole (Polars a few row groups at a time),
/// so this bounds what a batch holds per row group it reads: with parquet's default of
/// 1,048,576 rows, compaction's joining of a partition's small files (each under
/// [`crate::lake::maintenance::SMALL_FILE_BYTES`]) was one row group, and the batch's memory
/// grew with the table.
pub const ROW_GROUP_ROWS: usize = 131_072;

/// Parquet writer settings for the configured compression. The Kafka key column (binary) gets
/// no statistics: nothing prunes by it, and delta-rs warns once per file about binary columns
/// that have them. Row groups hold at most [`ROW_GROUP_ROWS`] rows.
pub fn writer_properties(compression: Compression) -> WriterProperties {
    let codec = match compression {
        Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
        Compression::Snappy => ParquetCompression::SNAPPY,
    };
    WriterProperties::builder()
        .set_compression(codec)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
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
