//! Braid's batch layer.
//!
//! - [`sink`]: the master dataset. Every valid record lands in a Delta Lake table, exactly
//!   once, with its Kafka lineage; positions live in the Delta log as application transactions.
//! - [`maintenance`]: compaction and vacuum of the Delta table.
//! - [`recompute`]: batch recomputes with Polars over a pinned Delta version, published
//!   atomically against a cut of the speed layer.

pub mod lake;
pub mod lake_records;
pub mod maintenance;
pub mod recompute;
pub mod sink;
