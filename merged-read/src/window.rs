//! The merged totals over a rolling window ending now, typed and owned, for readers other than
//! the HTTP handlers (the alert evaluator, `braid alerts test`): the statement
//! GET /v1/views/{view}/rolling runs, and so the same exact merge and provenance.

use chrono::{DateTime, Duration, Utc};
use schemas::quantile::QuantileLevel;
use schemas::view::View;
use sqlx::PgPool;

use crate::columns::AnswerColumn;
use crate::error::{ReadError, Span};
use crate::read::{CellValue, ReadStatement};
use crate::selection::{Filter, OrderTerm, Selection, check_bucket_multiple, floor_to};

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

/// A window: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowBounds {
    /// The first bucket start.
    pub start: DateTime<Utc>,
    /// The end (exclusive).
    pub end: DateTime<Utc>,
}

impl WindowBounds {
    /// The window of `seconds` of `view` that ends where `end` says for `now`.
    pub fn of(view: &View, now: DateTime<Utc>, seconds: i64, end: WindowEnd) -> Self {
        let bucket = view.bucket.seconds();
        let end = match end {
            WindowEnd::CurrentBucket => floor_to(now, bucket) + Duration::seconds(bucket),
            WindowEnd::CompleteBuckets => floor_to(now, bucket),
        };
        Self {
            start: end - Duration::seconds(seconds),
            end,
        }
    }
}

/// A window query.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRequest {
    /// The window's width in seconds, a multiple of the view's bucket.
    pub window_seconds: i64,
    /// Group fields and attributes kept (index into [`View::served_names`]).
    pub group_by: Vec<usize>,
    /// Equality filters on group fields.
    pub filters: Vec<Filter>,
    /// The time the window ends at (see `end`); decayed metrics are decayed to it.
    pub now: DateTime<Utc>,
    /// The most rows returned.
    pub limit: i64,
    /// Where the window ends.
    pub end: WindowEnd,
    /// Which keys come first (and so which are kept when more than `limit` match), before
    /// the group fields; `None`: group-field order.
    pub rank_by: Option<OrderTerm>,
    /// The quantiles each quantile metric answers (one column each).
    pub quantiles: Vec<QuantileLevel>,
}

/// One row of window totals: one value per column of [`WindowTotals::columns`].
#[derive(Debug, Clone, PartialEq)]
pub struct TotalsRow {
    /// The values, in column order.
    pub values: Vec<CellValue>,
}

/// The answer: one row per kept key (group fields, metrics, averages), and the provenance
/// read in the same snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTotals {
    /// The window's first bucket start.
    pub window_start: DateTime<Utc>,
    /// The window's end (exclusive): the end of the bucket holding `now`, or its start.
    pub window_end: DateTime<Utc>,
    /// The columns of the rows.
    pub columns: Vec<AnswerColumn>,
    /// Rows, in the request's order.
    pub rows: Vec<TotalsRow>,
    /// Whether more keys matched than the limit.
    pub truncated: bool,
    /// The active batch run, JSON, if any.
    pub batch: Option<String>,
    /// The speed layer's stored positions, JSON.
    pub speed: String,
}

impl WindowTotals {
    /// The value of column `name` in `row`, if the answer has that column.
    pub fn value<'a>(&self, row: &'a TotalsRow, name: &str) -> Option<&'a CellValue> {
        let index = self.columns.iter().position(|c| c.name == name)?;
        row.values.get(index)
    }
}

/// The selection `request` makes over `view`, and its window.
pub fn window_selection(view: &View, request: &WindowRequest) -> (Selection, WindowBounds) {
    let bounds = WindowBounds::of(view, request.now, request.window_seconds, request.end);
    let selection = Selection {
        from: bounds.start,
        to: bounds.end,
        granularity: None,
        group_by: request.group_by.clone(),
        filters: request.filters.clone(),
        order: request
            .rank_by
            .iter()
            .cloned()
            .chain(
                request
                    .group_by
                    .iter()
                    .map(|&i| OrderTerm::ascending(view.served_name(i))),
            )
            .collect(),
        limit: request.limit,
        decayed_to: request.now,
        parts: false,
        quantiles: request.quantiles.clone(),
        samples: false,
    };
    (selection, bounds)
}

/// Runs `request` over `view`, reading the speed positions of `topic`.
pub async fn window_totals(
    pool: &PgPool,
    view: &View,
    topic: &str,
    request: &WindowRequest,
) -> Result<WindowTotals, ReadError> {
    check_bucket_multiple(view, Span::Window, request.window_seconds)?;
    let (selection, bounds) = window_selection(view, request);
    let answer = ReadStatement::new(view, &selection, topic)?
        .run(pool)
        .await?;
    let rows = answer
        .rows
        .iter()
        .map(|row| {
            Ok(TotalsRow {
                values: row
                    .cells()
                    .map(|cell| cell.map(|c| c.to_value()))
                    .collect::<Result<_, ReadError>>()?,
            })
        })
        .collect::<Result<_, ReadError>>()?;
    Ok(WindowTotals {
        window_start: bounds.start,
        window_end: bounds.end,
        columns: answer.rows.columns().to_vec(),
        rows,
        truncated: answer.truncated,
        batch: answer.provenance.batch,
        speed: answer.provenance.speed,
    })
}
