//! The speed layer's errors: whose fault, and whether to retry.

use schemas::pg::Fenced;

/// Why the speed layer stopped or a flush failed.
#[derive(Debug, thiserror::Error)]
pub enum SpeedError {
    /// The database failed; the flush is retried with backoff, nothing was committed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Another process advanced partitions this process was flushing (a missed rebalance).
    /// Nothing was committed; the process reloads its positions.
    #[error("flush fenced: {0}")]
    Fenced(Fenced),
    /// A batch held a partition this process has no stored position for (a bug).
    #[error("partition {partition} has no expected position")]
    UnassignedPartition {
        /// The partition.
        partition: i32,
    },
    /// The ingest loop failed: Kafka, an assignment, or a retention gap (Kafka no longer holds
    /// records the speed layer still needs; the operator decides: `braid recover --from-lake`
    /// moves the speed layer to the sink's positions and lets the next batch run cover the gap).
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// This process's validation rules differ from the ones recorded for the topic: the sink
    /// would accept other records than this layer. The operator's to fix; not retried.
    #[error(transparent)]
    RulesDiffer(#[from] schemas::pg::RulesDiffer),
    /// The recorded validation rules cannot be read (edited by hand?).
    #[error("the recorded validation rules cannot be read: {0}")]
    RulesUnreadable(serde_json::Error),
}

impl From<schemas::pg::RulesError> for SpeedError {
    fn from(error: schemas::pg::RulesError) -> Self {
        match error {
            schemas::pg::RulesError::Differ(differ) => SpeedError::RulesDiffer(differ),
            schemas::pg::RulesError::Database(db) => SpeedError::Database(db),
            schemas::pg::RulesError::Unreadable(e) => SpeedError::RulesUnreadable(e),
        }
    }
}

impl SpeedError {
    /// Whether retrying the same operation may succeed. A data error (the database refused
    /// the values) is not: the consumer isolates the record instead.
    pub fn is_retryable(&self) -> bool {
        match self {
            SpeedError::Database(e) if schemas::pg::is_data_error(e) => false,
            SpeedError::Database(e) => !matches!(
                e,
                sqlx::Error::Configuration(_)
                    | sqlx::Error::ColumnNotFound(_)
                    | sqlx::Error::TypeNotFound { .. }
            ),
            _ => false,
        }
    }
}
