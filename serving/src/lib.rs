//! Braid's serving layer.
//!
//! - [`sql`]: one SQL view per configured view in the `serving` schema, returning the exact
//!   merge of the active batch run and the speed rows at or above its covered epoch, with avg
//!   derived; and a read-only role for BI tools that can read those views and nothing else.
//! - [`api`]: the REST API (axum) over the same merge, with provenance on every answer.

pub mod api;
pub mod sql;

pub use api::{AppState, ServingSettings, app};
