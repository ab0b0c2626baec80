//! Braid's batch layer.
//!
//! - [`sink`]: the master dataset. Every valid record lands in a Delta Lake table, exactly
//!   once, with its Kafka lineage; positions live in the Delta log as application transactions.
//!
//! Batch recomputes (Polars over a pinned Delta version) are not built yet.

pub mod sink;
