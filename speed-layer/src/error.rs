//! The speed layer's errors: whose fault, and whether to retry.

use schemas::pg::Fenced;
use schemas::position::Partition;

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
        partition: Partition,
    },
    /// A flush updated other than the stored rows it had read and locked for a view whose
    /// sketches the writer merges (a bug: the rows are updated by the tuple ids that read
    /// returned). Nothing was committed.
    #[error(
        "the flush of view {view} updated {updated} of the {expected} stored rows it had locked; nothing was committed"
    )]
    MergedRowsMoved {
        /// The view.
        view: String,
        /// Rows read, locked and merged.
        expected: u64,
        /// Rows the update changed.
        updated: u64,
    },
    /// The ingest loop failed: Kafka, an assignment, or a retention gap (Kafka no longer holds
    /// records the speed layer still needs; the operator decides: `braid recover --from-lake`
    /// moves the speed layer to the sink's positions and lets the next batch run cover the gap).
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// Checking the validation rules failed: they differ from the ones recorded for the topic
    /// (the other layer would accept other records; the operator's to fix, not retried), or
    /// the database could not be asked (retried).
    #[error(transparent)]
    Rules(#[from] schemas::pg::RulesError),
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
            SpeedError::Rules(e) => e.is_retryable(),
            _ => false,
        }
    }
}
