//! The sink's errors: whose fault, and whether to retry.

/// Why the sink stopped or a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Reading or writing the Delta table failed. Nothing was committed; retried with backoff.
    #[error("delta table error: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// Building the Arrow batch failed (a bug: validated records always fit the schema).
    #[error("arrow error: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    /// Storing dead letters failed; retried with backoff.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Another process committed positions this process was about to commit (a missed
    /// rebalance). Nothing was committed; the process re-reads from the Delta log's positions.
    #[error("partitions {partitions:?} were committed by another process")]
    Fenced {
        /// The partitions whose position in the Delta log moved.
        partitions: Vec<i32>,
    },
    /// Opening the table or reading its positions failed.
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    /// The ingest loop failed: Kafka, an assignment, or a retention gap (Kafka deleted records
    /// the sink has not written; nothing was skipped).
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// Checking the validation rules failed: they differ from the ones recorded for the topic
    /// (the other layer would accept other records; the operator's to fix, not retried), or
    /// the database could not be asked (retried).
    #[error(transparent)]
    Rules(#[from] schemas::pg::RulesError),
}

impl SinkError {
    /// Whether retrying the same operation may succeed. A data error from the database
    /// (SQLSTATE class 22, 23 or 54) fails the same way again, so it is not retried: the sink
    /// stops and says so. (Dead letters are the sink's only rows in PostgreSQL, and their
    /// values are made storable before they are written, so this is a last guard.)
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Database(e) => !schemas::pg::is_data_error(e),
            SinkError::Lake(e) => e.is_retryable(),
            SinkError::Rules(e) => e.is_retryable(),
            other => matches!(other, SinkError::Delta(_)),
        }
    }
}
