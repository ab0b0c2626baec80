//! Braid's ingest protocol, written once for both layers.
//!
//! - [`kafka`]: client settings, watermarks, topic creation and the source-topic checks;
//! - [`layer`]: what a layer provides — a buffer (add a record or a dead letter, skip to a
//!   position, size, take) and a store (load positions, write a taken buffer fenced on the
//!   expected positions, classify its errors): PostgreSQL for the speed layer, the Delta log
//!   for the sink;
//! - [`expected`]: the position bookkeeping: the stored position of every assigned partition;
//! - [`pipeline`]: the commit pipeline: a write in the background, settled by the next commit,
//!   a failed buffer kept and written again first, the reload after a fence or a move;
//! - [`consumer`]: the loop: poll, validate or dead-letter, positions set in the rebalance
//!   callback, due commits, fences, retries with backoff, revokes, retention gaps, the end of
//!   partitions, and isolating a record the layer's store refuses;
//! - [`caught_up`]: whether everything the brokers hold has been read (early commits);
//! - [`error`]: errors classified as fenced, data refused, retryable or fatal;
//! - [`registry`]: writer schemas fetched from a schema registry, for Avro topics;
//! - [`metrics`]: metric names, labelled by layer.

pub mod caught_up;
pub mod consumer;
pub mod error;
pub mod expected;
pub mod kafka;
pub mod layer;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod validator;
mod wait;

pub use consumer::{IngestSettings, run};
pub use error::{Disposition, IngestError};
pub use expected::{Expected, StartAt};
pub use layer::{Buffer, Buffered, Committed, Received, Store, Taken};
pub use pipeline::Pipeline;
