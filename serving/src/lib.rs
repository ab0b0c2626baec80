//! Braid's serving layer.
//!
//! - [`sql`]: one SQL view per configured view in the `serving` schema, returning the exact
//!   merge of the active batch run and the speed rows at or above its covered epoch, with avg
//!   derived; and a read-only role for BI tools that can read those views and nothing else.
//!
//! The REST API is not built yet.

pub mod sql;
