//! Braid's batch layer.
//!
//! - [`lake`]: the master dataset's Delta table: opening, creating and evolving it, the
//!   positions in its log, reading a pinned version's records, compaction and vacuum.
//! - [`sink`]: the ingest layer that writes every valid record into the table, exactly once,
//!   with its Kafka lineage; positions live in the Delta log as application transactions.
//! - [`recompute`]: batch recomputes with Polars over a pinned Delta version, published
//!   atomically against a cut of the speed layer.

pub mod lake;
pub mod recompute;
pub mod sink;
