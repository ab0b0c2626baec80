//! The master dataset: the Delta table every valid record lands in, and everything that reads
//! or maintains it — the sink, batch runs, compaction, vacuum, `as-of`, `publish` and `recover`.
//!
//! - [`table`]: open or create the table, evolve its schema, read the positions in its log;
//! - [`pinned`]: the files of one version, scanned with that version's schema, one topic's
//!   records only;
//! - [`records`]: records read back for republishing;
//! - [`maintenance`]: compaction and vacuum;
//! - [`store`]: local folder or S3, and the conditional-put check concurrent writers rely on.

pub mod maintenance;
pub mod pinned;
pub mod records;
pub mod store;
pub mod table;

pub use pinned::PinnedFiles;
pub use table::{app_id, open_or_create, positions_in_log};

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

/// Why reading, creating or maintaining the table failed.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// Reading or writing the Delta table failed; retry.
    #[error("delta table error: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// Building or reading Arrow data failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    /// A Polars read of the table failed.
    #[error("polars error: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// A blocking read ended without reporting (it panicked).
    #[error("reading the table failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The table's schema cannot take the configured schema (only additive, optional fields
    /// can be added to an existing table).
    #[error("the Delta table at {uri} cannot take the configured schema: {reason}")]
    SchemaMismatch {
        /// The table.
        uri: String,
        /// What differs.
        reason: String,
    },
    /// The table has a column of a type the sink never writes (someone else wrote to it).
    #[error(
        "the Delta table's column `{column}` has type {delta_type}, which Braid does not read; is `lake.uri` another table?"
    )]
    UnreadableColumn {
        /// The column.
        column: String,
        /// Its Delta type.
        delta_type: String,
    },
    /// The object store refused or failed an operation Braid made directly (not through
    /// delta-rs); retry.
    #[error("object store error while {operation}: {source}")]
    Store {
        /// What Braid was doing.
        operation: &'static str,
        /// The store's error.
        source: object_store::Error,
    },
    /// The object store overwrote an object on a second conditional put: concurrent commits
    /// to it would lose data. The operator's fault (configuration), not retryable.
    #[error(
        "the object store of {uri} does not enforce conditional writes (a second PUT with If-None-Match: * overwrote the first), so two writers could overwrite each other's Delta commits; use a store that does (AWS S3, MinIO, versitygw, Cloudflare R2, ...), or, if only one process ever writes the table, set lake.storage_options.AWS_S3_ALLOW_UNSAFE_RENAME = \"true\""
    )]
    NoConditionalPut {
        /// The table.
        uri: String,
    },
    /// A file of the table has a partition value that is not a date (someone else wrote it).
    #[error("partition value `{value}` of {column} is not a date (YYYY-MM-DD)")]
    BadPartitionValue {
        /// The partition column.
        column: &'static str,
        /// The value found.
        value: String,
    },
}

impl LakeError {
    /// Whether running again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LakeError::Delta(_) | LakeError::Store { .. })
    }
}
