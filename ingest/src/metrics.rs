//! Metric names of the ingest loop, the same for both layers; each carries a `layer` label
//! (`speed` or `sink`).

/// Counter: messages read from Kafka.
pub const RECORDS_CONSUMED_TOTAL: &str = "braid_ingest_records_consumed_total";
/// Counter: valid records committed.
pub const RECORDS_COMMITTED_TOTAL: &str = "braid_ingest_records_committed_total";
/// Counter: dead letters committed, labelled by reason.
pub const DEAD_LETTERS_TOTAL: &str = "braid_ingest_dead_letters_total";
/// Counter: input bytes read.
pub const INPUT_BYTES_TOTAL: &str = "braid_ingest_input_bytes_total";
/// Histogram: how long a commit took, in seconds.
pub const COMMIT_DURATION_SECONDS: &str = "braid_ingest_commit_duration_seconds";
/// Counter: commits that failed and were retried.
pub const COMMIT_RETRIES_TOTAL: &str = "braid_ingest_commit_retries_total";
/// Counter: commits the store refused for their data, after which the records were re-read
/// one per commit.
pub const ISOLATIONS_TOTAL: &str = "braid_ingest_isolations_total";
/// Counter: records the store refused although they passed validation (dead-lettered as
/// `refused_by_database`).
pub const REFUSED_BY_STORE_TOTAL: &str = "braid_ingest_refused_by_store_total";
/// Gauge: records between the committed position and Kafka's high watermark, per partition.
pub const PARTITION_LAG_RECORDS: &str = "braid_ingest_partition_lag_records";
/// Counter: writer-schema fetches from the schema registry, labelled by outcome (`answered`:
/// a schema or a plain "no such id"; `failed`: down, slow or nonsense, retried).
pub const SCHEMA_FETCHES_TOTAL: &str = "braid_ingest_schema_fetches_total";
