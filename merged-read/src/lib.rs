//! Braid's merged read: the exact merge of a view's active batch run and the speed rows it
//! does not cover (the epochs at or above its covered epoch), read in one statement and so in
//! one snapshot, with the provenance of that snapshot. It knows no HTTP: its clients are the
//! REST API (`serving::api`), which parses requests into a [`Selection`] and writes the
//! [`MergedAnswer`]'s cells as JSON; the SQL views for BI tools (`serving::sql`, which install
//! [`merged_select`]); and the alert evaluator (`alerts`, through [`window_totals`]).
//!
//! - [`Selection`]: what to read, typed and checked against the view ([`SelectionError`]);
//! - [`ReadStatement`]: its statement, the whole-keys one when it applies, else the general
//!   one; [`ReadStatement::run`] answers typed [`Cell`]s, read where they were received;
//! - [`window_totals`]: the totals over a rolling window, owned ([`WindowTotals`]);
//! - [`ReadError`]: what went wrong and whose fault it is ([`Fault`]).
//!
//! Identifiers in the statements come from the validated view; every value is bound.

mod bi_view;
mod columns;
mod error;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
mod general;
mod read;
mod selection;
mod statement;
#[cfg(test)]
mod tests;
mod whole_keys;
mod window;

pub use bi_view::merged_select;
pub use columns::{AnswerColumn, CellKind, column_names, metric_columns};
pub use error::{Fault, ReadError, SelectionError, Span};
pub use read::{
    Cell, CellValue, MergedAnswer, MergedRow, MergedRows, Provenance, ReadStatement, Shape,
};
pub use selection::{Filter, FilterValues, OrderTerm, Selection, ceil_to, floor_to};
pub use statement::{Bind, BoundStatement, speed_state_sql};
pub use window::{
    TotalsRow, WindowBounds, WindowEnd, WindowRequest, WindowTotals, window_selection,
    window_totals,
};
