//! The master dataset: the Delta table every valid record lands in, and everything that reads
//! or maintains it — the sink, batch runs, compaction, vacuum, `as-of`, `publish` and `recover`.
//!
//! - [`table`]: open or create the table, evolve its schema, read the positions in its log;
//! - [`pinned`]: the files of one version, scanned with that version's schema, one topic's
//!   records only;
//! - [`records`]: records read back for republishing;
//! - [`maintenance`]: compaction and vacuum;
//! - [`store`]: local folder or S3, and the conditional-put check concurrent writers rely on.
//!
//! [`Lake`] is the handle through which all of them are reached.

pub mod maintenance;
pub mod pinned;
pub mod records;
pub mod store;
pub mod table;

pub use maintenance::{CompactReport, VacuumReport};
pub use pinned::{AsOf, PinnedFiles};
pub use records::{LakeRecord, RecordsRead};
pub use table::{app_id, positions_in_log};

use std::collections::{BTreeMap, HashMap};

use schemas::EventSchema;
use schemas::config::secrets::RedactedOptions;

/// The one handle to the master dataset: the Delta table (where it is, how to reach it, the
/// schema its files are written with) and the topic whose records Braid reads from it. Built
/// once from the settings; every operation on the table is a method that returns what it did
/// ([`Lake::open`], [`Lake::pinned`], [`Lake::pinned_as_of`], [`Lake::records_between`],
/// [`Lake::compact`], [`Lake::vacuum`]), so that no caller passes the URI, the storage options
/// and the schema around in parts.
#[derive(Debug, Clone)]
pub struct Lake {
    settings: LakeSettings,
}

/// What a [`Lake`] is built from (`[lake]`, `[schema]` and `kafka.topic`). Printed with the
/// secret storage options hidden, as `[lake]` itself is.
#[derive(Clone)]
pub struct LakeSettings {
    /// The table: a local path or an s3:// URI, as configured (`lake.uri`).
    pub uri: String,
    /// Object-store options for the table (`[lake.storage_options]`).
    pub storage_options: HashMap<String, String>,
    /// The event schema: the table's columns are its fields and the lineage columns.
    pub schema: EventSchema,
    /// The source topic: records of any other topic in the table are left out of reads.
    pub topic: String,
}

impl std::fmt::Debug for LakeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<String, String> = self
            .storage_options
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        f.debug_struct("LakeSettings")
            .field("uri", &self.uri)
            .field("storage_options", &RedactedOptions(&options))
            .field("schema", &self.schema)
            .field("topic", &self.topic)
            .finish()
    }
}

impl Lake {
    /// The handle of the table the settings describe (nothing is opened yet).
    pub fn new(settings: LakeSettings) -> Self {
        Self { settings }
    }

    /// The table's URI, as configured.
    pub fn uri(&self) -> &str {
        &self.settings.uri
    }

    /// The table's object-store options.
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.settings.storage_options
    }

    /// The event schema.
    pub fn schema(&self) -> &EventSchema {
        &self.settings.schema
    }

    /// The source topic.
    pub fn topic(&self) -> &str {
        &self.settings.topic
    }

    /// The local table in `dir`, with the schema and topic of `config` (tests).
    #[cfg(test)]
    pub(crate) fn in_folder(dir: &std::path::Path, config: &schemas::BraidConfig) -> Self {
        Self::new(LakeSettings {
            uri: dir.to_str().expect("a UTF-8 path").to_string(),
            storage_options: HashMap::new(),
            schema: config.schema.clone(),
            topic: config.kafka.topic.clone(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every settings struct that carries the lake (the sink's, the batch runs', the jobs')
    /// prints it: the secret storage options must not show, whatever case their keys are in.
    #[test]
    fn a_printed_lake_hides_its_secret_storage_options() {
        let text =
            "[schema]\nevent_time = \"ts\"\nfields = [{ name = \"ts\", type = \"timestamp\" }]\n";
        let config = schemas::BraidConfig::load_from(Some(("lake.toml", text)), []).unwrap();
        let options: HashMap<String, String> = [
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-key-value"),
            ("aws_session_token", "t0ken-value"),
            ("AWS_ACCESS_KEY_ID", "AKIDPUBLIC"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:19000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let lake = Lake::new(LakeSettings {
            uri: "S3://Bucket/events".into(),
            storage_options: options,
            schema: config.schema.clone(),
            topic: "events".into(),
        });
        let printed = format!("{lake:?}");
        for secret in ["s3cr3t-key-value", "t0ken-value"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        for shown in [
            "S3://Bucket/events",
            "AKIDPUBLIC",
            "http://127.0.0.1:19000",
            "AWS_SECRET_ACCESS_KEY",
            "\"events\"",
        ] {
            assert!(printed.contains(shown), "{shown} not printed: {printed}");
        }
    }
}
