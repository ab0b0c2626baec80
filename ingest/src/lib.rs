//! Braid's ingest protocol, written once for both layers.
//!
//! - [`kafka`]: client settings, watermarks, topic creation and the source-topic checks;
//! - [`layer`]: what a layer provides — where its positions are stored and fenced
//!   (PostgreSQL for the speed layer, the Delta log for the sink) and what its buffer becomes
//!   when committed;
//! - [`consumer`]: the loop: poll, validate or dead-letter, positions set in the rebalance
//!   callback, due commits, fences, retries with backoff, revokes, retention gaps, the end of
//!   partitions, and isolating a record the layer's store refuses;
//! - [`caught_up`]: whether everything the brokers hold has been read (early commits);
//! - [`error`]: errors classified as fenced, data refused, retryable or fatal;
//! - [`metrics`]: metric names, labelled by layer.

pub mod caught_up;
pub mod consumer;
pub mod error;
pub mod kafka;
pub mod layer;
pub mod metrics;

pub use consumer::{IngestSettings, run};
pub use error::{Disposition, IngestError};
pub use layer::{Buffered, Committed, Layer, Received, StartAt};
