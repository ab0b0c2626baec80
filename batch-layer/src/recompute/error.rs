//! The batch layer's errors: whose fault, and whether to retry.

/// Why a batch run failed. Nothing is published by a failed run.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Another batch run holds the lock; this one did nothing.
    #[error("another batch run is in progress; this one did nothing")]
    AlreadyRunning,
    /// The Delta sink did not reach the cut in time.
    #[error(
        "the Delta sink has not reached the cut after {waited_s} s on partitions {lagging} (partition: committed / needed); is `braid sink` running?"
    )]
    SinkBehind {
        /// How long the run waited.
        waited_s: u64,
        /// The lagging partitions, `p: committed / needed`.
        lagging: String,
    },
    /// `--view` named a view that is not configured.
    #[error("no view named `{0}` in the configuration")]
    UnknownView(String),
    /// The database failed; retry.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Creating the views' tables failed.
    #[error(transparent)]
    Store(#[from] schemas::pg::StoreError),
    /// The Delta table could not be read; retry.
    #[error("delta table error: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// The Polars computation failed.
    #[error("polars error: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// A computation on a blocking thread ended without reporting (it panicked).
    #[error("a batch computation failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// `replay as-of` asked for a version that holds no records.
    #[error("version {version} of the table holds no records")]
    EmptyVersion {
        /// The version.
        version: i64,
    },
    /// The output file's extension names no format Braid writes.
    #[error("--out {path}: the file must end in .parquet or .csv")]
    OutputFormat {
        /// The path given.
        path: String,
    },
    /// Writing the output file failed.
    #[error("writing {path}: {source}")]
    WriteOutput {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A computed frame held a value of a type its column cannot have (a bug).
    #[error("column `{column}` of a computed view holds an unexpected value {value}")]
    UnexpectedValue {
        /// The column.
        column: String,
        /// The value, printed.
        value: String,
    },
    /// At publish, the run was no longer `running`: another run cleaned it up as interrupted
    /// (this run had lost its lock). Nothing was published.
    #[error(
        "batch run {run_id} is no longer running (another run cleaned it up); nothing was published"
    )]
    RunNoLongerRunning {
        /// The run.
        run_id: i64,
    },
    /// At publish, an active run of the view already covered this run's epoch: a newer cut was
    /// published meanwhile. Nothing was published.
    #[error(
        "view `{view}`: an active run already covers epoch {active_covered}, at or past this run's {covered}; nothing was published"
    )]
    NewerCutPublished {
        /// The view.
        view: String,
        /// The active run's covered epoch.
        active_covered: i64,
        /// This run's covered epoch.
        covered: i64,
    },
    /// The table could not be opened or read.
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    /// spark-submit could not be started (not installed, not on PATH): the operator's to fix.
    #[error(
        "cannot start `{program}` (batch.spark.submit): {source}; install Spark (pip install pyspark) or set batch.spark.submit to its spark-submit"
    )]
    SparkStart {
        /// The program.
        program: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// The Spark job failed; nothing was published. Retried like any failed run.
    #[error("the Spark job failed ({status}): {error}")]
    SparkFailed {
        /// How the process ended.
        status: String,
        /// The job's own error text (the last error lines of its output).
        error: String,
    },
    /// The Spark job ran past `batch.spark.timeout_s` and was killed; nothing was published.
    #[error("the Spark job ran past batch.spark.timeout_s ({seconds} s) and was killed")]
    SparkTimedOut {
        /// The limit.
        seconds: u64,
    },
    /// Preparing or reading the job's files failed (the job file, the staged rows).
    #[error("{operation}: {source}")]
    SparkFiles {
        /// What Braid was doing.
        operation: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Listing or deleting the staged rows failed.
    #[error("{operation}: {source}")]
    Staging {
        /// What Braid was doing.
        operation: String,
        /// The object store's error.
        source: object_store::Error,
    },
    /// A configured URI did not parse (configuration validation refuses it first).
    #[error("{key}: {source}")]
    LakeUri {
        /// The configuration key.
        key: &'static str,
        /// Why.
        #[source]
        source: schemas::lake_uri::LakeUriError,
    },
    /// A staging folder recorded on a run is not one Braid creates for that run
    /// (`…/_braid_staging/run-<N>`); nothing was deleted.
    #[error(
        "refusing to remove the staging folder {uri}: {reason}; Braid removes only the `_braid_staging/run-<N>` folders it recorded"
    )]
    StagingRefused {
        /// The recorded folder.
        uri: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The Spark job ended but its manifest is not in its staging folder (the folder is not
    /// where Braid reads it, or the job did not finish writing); nothing was published.
    #[error(
        "the Spark job's manifest {uri} was not found: its output cannot be checked, so nothing was published (does Braid reach batch.spark.staging_uri where Spark writes it?)"
    )]
    SparkManifestMissing {
        /// Where it was looked for.
        uri: String,
    },
    /// The Spark job's manifest is not what the job writes; nothing was published.
    #[error("the Spark job's manifest {uri} is unreadable: {source}")]
    SparkManifestInvalid {
        /// The manifest.
        uri: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A view's rows found in the staging folder differ from what the job wrote; nothing was
    /// published.
    #[error(
        "the Spark job's output of view `{view}` is incomplete: {reason}; nothing was published"
    )]
    SparkOutputIncomplete {
        /// The view (empty: the whole output).
        view: String,
        /// What differs.
        reason: String,
    },
}

impl BatchError {
    /// Whether running again later may succeed. A data error from the database (SQLSTATE
    /// class 22, 23 or 54) fails the same way again, so it is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            BatchError::Database(e) => !schemas::pg::is_data_error(e),
            BatchError::Lake(e) => e.is_retryable(),
            BatchError::Store(e) => e.is_retryable(),
            other => matches!(
                other,
                BatchError::SinkBehind { .. }
                    | BatchError::Delta(_)
                    | BatchError::SparkFailed { .. }
                    | BatchError::SparkTimedOut { .. }
                    | BatchError::Staging { .. }
                    | BatchError::SparkManifestMissing { .. }
                    | BatchError::SparkOutputIncomplete { .. }
            ),
        }
    }
}
