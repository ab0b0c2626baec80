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
//! - [`consumer`]: the speed layer's store (PostgreSQL) and buffer (the micro-batch) for the
//!   ingest loop, which keeps the positions, runs one flush in the background while the next
//!   micro-batch is read, retries, fences and reloads (`ingest::pipeline`);
//! - [`metrics`]: metric names.

pub mod aggregate;
pub mod consumer;
pub mod error;
pub mod flush;
pub mod metrics;

pub use consumer::{SpeedBuffer, SpeedSettings, SpeedStore, SpeedSummary, run};
pub use error::SpeedError;
