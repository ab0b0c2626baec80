//! Metric names of the speed layer. Units are in the names.

/// Messages read from Kafka (valid and refused).
pub const EVENTS_CONSUMED_TOTAL: &str = "braid_speed_events_consumed_total";
/// Valid records committed to PostgreSQL.
pub const EVENTS_FLUSHED_TOTAL: &str = "braid_speed_events_flushed_total";
/// Refused records committed to the dead-letter table, labelled by `reason`.
pub const DEAD_LETTERS_TOTAL: &str = "braid_speed_dead_letters_total";
/// Rows upserted (distinct view, key and bucket per flush).
pub const ROWS_UPSERTED_TOTAL: &str = "braid_speed_rows_upserted_total";
/// Duration of each flush transaction.
pub const FLUSH_DURATION_SECONDS: &str = "braid_speed_flush_duration_seconds";
/// Records between the stored position and the high watermark, labelled by `partition`.
pub const PARTITION_LAG_RECORDS: &str = "braid_speed_partition_lag_records";
/// Flushes that failed and were retried.
pub const FLUSH_RETRIES_TOTAL: &str = "braid_speed_flush_retries_total";
/// Records that passed validation but that PostgreSQL refused to store (a data error found by
/// isolating a refused flush); each is a dead letter with reason `refused_by_database`.
pub const REFUSED_BY_DATABASE_TOTAL: &str = "braid_speed_refused_by_database_total";
/// Flushes the database refused for their data, which started an isolation re-read.
pub const ISOLATIONS_TOTAL: &str = "braid_speed_isolations_total";
