//! Braid's speed layer.
//!
//! Consumes the source topic, validates every message with the shared validator, aggregates a
//! micro-batch in memory per view, group key and time bucket, and flushes it to PostgreSQL in
//! one transaction together with the next offset of every partition it covers and the dead
//! letters it found. Positions live only in PostgreSQL; Kafka's commits are for lag monitoring.
//!
//! - [`aggregate`]: the in-memory micro-batch;
//! - [`flush`]: the one-transaction write (epoch under a shared lock, fenced positions,
//!   dead letters, upserts);
//! - [`in_flight`]: a flush running while the next micro-batch is read (one at a time);
//! - [`consumer`]: the Kafka side: positions set in the rebalance callback, flush on revoke,
//!   out-of-range offsets stop the partition with an error;
//! - [`metrics`]: metric names.

pub mod aggregate;
pub mod consumer;
pub mod error;
pub mod flush;
pub mod in_flight;
pub mod metrics;

pub use consumer::{SpeedSettings, SpeedSummary, run};
pub use error::SpeedError;
