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
    /// The Delta table could not be read; retry.
    #[error("delta table error: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// The Polars computation failed.
    #[error("polars error: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// Loading rows failed.
    #[error("loading batch rows failed: {0}")]
    Load(String),
    /// At publish, the run was no longer `running`: another run cleaned it up as interrupted
    /// (this run had lost its lock). Nothing was published.
    #[error("batch run {run_id} is no longer running (another run cleaned it up); nothing was published")]
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
    /// The table has a column of a type the sink never writes (someone else wrote to it).
    #[error("the Delta table's column `{column}` has type {delta_type}, which Braid does not read; is `lake.uri` another table?")]
    UnreadableColumn {
        /// The column.
        column: String,
        /// Its Delta type.
        delta_type: String,
    },
    /// The sink's table could not be opened.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
}

impl BatchError {
    /// Whether running again later may succeed. A data error from the database (SQLSTATE
    /// class 22, 23 or 54) fails the same way again, so it is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            BatchError::Database(e) => !schemas::pg::is_data_error(e),
            other => matches!(other, BatchError::SinkBehind { .. } | BatchError::Delta(_)),
        }
    }
}
