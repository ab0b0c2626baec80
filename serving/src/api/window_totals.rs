//! The merged totals over a rolling window ending now, typed, for readers other than the
//! HTTP handlers (the alert evaluator, `braid alerts test`): the same statement, and so the same
//! exact merge and provenance, as GET /v1/views/{view}/rolling.

use chrono::{DateTime, Duration, Utc};
use schemas::view::{FilterValues, View};
use serde_json::{Map, Value};
use sqlx::PgPool;

use super::error::ApiError;
use super::params::{Selection, floor_to};
use super::query;

/// Where a window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEnd {
    /// At the end of the bucket holding `now`: the current, partial bucket counts (what
    /// GET /v1/views/{view}/rolling answers).
    CurrentBucket,
    /// At the start of the bucket holding `now`: complete buckets only (what alert rules
    /// compare), so a steady stream has the same value all through a bucket.
    CompleteBuckets,
}

/// Keys ranked by one output column before the group fields (`None`: group-field order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankBy {
    /// The output column, e.g. `count`.
    pub column: String,
    /// Largest first.
    pub descending: bool,
}

/// A window query.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRequest {
    /// The window's width in seconds, a multiple of the view's bucket.
    pub window_seconds: i64,
    /// Group fields and attributes kept (index into [`View::served_names`]).
    pub group_by: Vec<usize>,
    /// Equality filters on group fields.
    pub filters: Vec<(usize, FilterValues)>,
    /// The time the window ends at (rounded up to the end of its bucket); decayed metrics are
    /// decayed to it.
    pub now: DateTime<Utc>,
    /// The most rows returned.
    pub limit: i64,
    /// Where the window ends.
    pub end: WindowEnd,
    /// Which keys come first (and so which are kept when more than `limit` match).
    pub rank_by: Option<RankBy>,
}

/// The answer: one JSON object per kept key (group fields, metrics, averages), and the
/// provenance read in the same snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTotals {
    /// The window's first bucket start.
    pub window_start: DateTime<Utc>,
    /// The window's end (exclusive): the end of the bucket holding `now`, or its start.
    pub window_end: DateTime<Utc>,
    /// Rows, in group-field order.
    pub rows: Vec<Map<String, Value>>,
    /// Whether more keys matched than the limit.
    pub truncated: bool,
    /// The active batch run, JSON, if any.
    pub batch: Option<String>,
    /// The speed layer's stored positions, JSON.
    pub speed: String,
}

/// The window of `seconds` ending at the end of the bucket holding `now`.
pub fn window_bounds(
    view: &View,
    now: DateTime<Utc>,
    seconds: i64,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let bucket = view.bucket.seconds();
    let end = floor_to(now, bucket) + Duration::seconds(bucket);
    (end - Duration::seconds(seconds), end)
}

/// The window of `seconds` of complete buckets: it ends at the start of the bucket holding `now`.
pub fn complete_window_bounds(
    view: &View,
    now: DateTime<Utc>,
    seconds: i64,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = floor_to(now, view.bucket.seconds());
    (end - Duration::seconds(seconds), end)
}

/// Runs `request` over `view`, reading the speed positions of `topic`.
pub async fn window_totals(
    pool: &PgPool,
    view: &View,
    topic: &str,
    request: &WindowRequest,
) -> Result<WindowTotals, ApiError> {
    let (from, to) = match request.end {
        WindowEnd::CurrentBucket => window_bounds(view, request.now, request.window_seconds),
        WindowEnd::CompleteBuckets => {
            complete_window_bounds(view, request.now, request.window_seconds)
        }
    };
    let ranked = request
        .rank_by
        .iter()
        .map(|r| (r.column.clone(), r.descending));
    let selection = Selection {
        from,
        to,
        granularity: None,
        group_by: request.group_by.clone(),
        filters: request.filters.clone(),
        order: ranked
            .chain(
                request
                    .group_by
                    .iter()
                    .map(|&i| (view.served_name(i).to_string(), false)),
            )
            .collect(),
        limit: request.limit,
        decayed_to: request.now,
        parts: false,
    };
    let answer = query::run(pool, view, &selection, topic).await?;
    let rows: Vec<Map<String, Value>> = serde_json::from_str(&answer.rows)
        .map_err(|e| ApiError::Internal(format!("reading back the rows' JSON: {e}")))?;
    Ok(WindowTotals {
        window_start: from,
        window_end: to,
        rows,
        truncated: answer.truncated,
        batch: answer.batch,
        speed: answer.speed,
    })
}
