//! Metric names of the Delta sink. Units are in the names.

/// Messages read from Kafka.
pub const RECORDS_CONSUMED_TOTAL: &str = "braid_sink_records_consumed_total";
/// Valid records committed to the Delta table.
pub const RECORDS_COMMITTED_TOTAL: &str = "braid_sink_records_committed_total";
/// Refused records stored as dead letters, labelled by `reason`.
pub const DEAD_LETTERS_TOTAL: &str = "braid_sink_dead_letters_total";
/// Duration of each write-and-commit.
pub const COMMIT_DURATION_SECONDS: &str = "braid_sink_commit_duration_seconds";
/// Input bytes committed.
pub const INPUT_BYTES_TOTAL: &str = "braid_sink_input_bytes_total";
/// Commits that failed and were retried.
pub const COMMIT_RETRIES_TOTAL: &str = "braid_sink_commit_retries_total";
