//! Braid's alerts: rules over the exact merged views, evaluated by one active process.
//!
//! - [`state_machine`]: inactive → pending → firing → resolved, as Prometheus defines them;
//! - [`evaluate`]: one rule over the merged window (`merged_read::window_totals`, the
//!   statement the API's /rolling runs), written in one transaction fenced by the evaluator's
//!   lock;
//! - [`evaluator`]: leader and standby, evaluations on view changes and on an interval;
//! - [`notify`]: webhook and Kafka deliveries from an outbox, at least once, with retries;
//! - [`settings`]: what the evaluator and its receivers read, built by the binary from the
//!   configuration;
//! - [`json`]: instances and transitions as the API, the CLI and the notifications show them.
//!
//! State and history live in `braid_internal.alert_*`, whose SQL is [`store`] (the
//! `alerts-store` crate beside this one, which the API and the `prune` job use too).

mod error;
pub mod evaluate;
pub mod evaluator;
pub mod json;
pub mod notify;
mod outside_page;
#[cfg(test)]
mod record_tests;
pub mod settings;
pub mod state_machine;
#[cfg(test)]
mod tests;

pub use alerts_store as store;
pub use error::AlertError;
pub use evaluator::{Clock, EvaluatorContext, run_evaluator};
pub use settings::{AlertSettings, ReceiverSettings, RetryPolicy};
