//! Braid's serving layer: the clients of the merged read (`merged_read`) that BI tools and
//! HTTP callers use.
//!
//! - [`sql`]: one SQL view per configured view in the `serving` schema, returning the exact
//!   merge of the active batch run and the speed rows at or above its covered epoch, with avg
//!   derived; and a read-only role for BI tools that can read those views and nothing else.
//! - [`api`]: the REST API (axum) over the same merge, with provenance on every answer: requests
//!   parsed into the merged read's selection, its rows written as JSON, recent answers cached.

pub mod api;
pub mod sql;

pub use api::{AppState, ServingSettings, app};
