//! Metric names of the speed layer beyond the ingest loop's (`ingest::metrics`, labelled
//! `layer="speed"`). Units are in the names.

/// Rows upserted (distinct view, key and bucket per flush).
pub const ROWS_UPSERTED_TOTAL: &str = "braid_speed_rows_upserted_total";
