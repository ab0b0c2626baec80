//! Braid's dimensions: the rows of the dimension tables Braid keeps.
//!
//! - [`store`]: the tables: created, checked (a user's own), written, and the followed
//!   topics' positions (`braid_internal.dimension_positions`); the only code with their SQL;
//! - [`rows`]: a dimension's rows, typed column by column as the table is;
//! - [`load`]: `braid dimensions load NAME`: a CSV (header row) or Parquet file replaces the
//!   table's rows in one transaction;
//! - [`follow`]: `braid dimensions follow`: a compacted Kafka topic kept current in the table,
//!   with its positions stored in the same transactions.
//!
//! A dimension from a PostgreSQL table the user owns is read in place and never loaded.

pub mod follow;
pub mod load;
pub mod rows;
pub mod store;

pub use follow::{FollowError, FollowSummary, follow, followed};
pub use load::{LoadError, load};
pub use rows::{DimensionRows, RowError};

#[cfg(test)]
mod testing;
