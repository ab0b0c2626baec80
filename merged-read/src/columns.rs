//! The answer's columns: the kept group fields and attributes, `bucket_start` when bucketed,
//! the metrics, the averages, and `batch_part`/`speed_part` when asked; each with its type.

use schemas::pg_layout::{ViewLayout, merge, pg_type};
use schemas::quantile::QuantileLevel;
use schemas::view::{Metric, View};

use crate::error::SelectionError;
use crate::selection::Selection;

/// How a column's values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// `bigint`.
    Int,
    /// `double precision`.
    Float,
    /// `numeric` integer sums (read as their exact decimal text: sqlx has no i128).
    IntegerSum,
    /// `boolean`.
    Bool,
    /// `timestamptz`.
    Time,
    /// `jsonb` (a sample's records), read as its JSON text.
    Json,
    /// Text (and any other type, read as text).
    Text,
    /// An average the reader computes from two other columns of the answer (indexes into
    /// them): the sum over the count of the records that have the field, as
    /// `merge::row_average` computes it in SQL (see `read::average`). PostgreSQL converts a
    /// `numeric` sum to `double precision` through its text, twice a row; that was a third of
    /// an uncached read's time. An average an order term names stays in SQL.
    Average {
        /// The sum's column.
        sum: usize,
        /// The count's column.
        count: usize,
    },
}

impl CellKind {
    fn of(pg_type: &str) -> Self {
        match pg_type {
            "bigint" => Self::Int,
            "double precision" => Self::Float,
            "numeric" => Self::IntegerSum,
            "boolean" => Self::Bool,
            "timestamptz" => Self::Time,
            "jsonb" => Self::Json,
            _ => Self::Text,
        }
    }
}

/// One column of the answer: its name (a validated identifier) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerColumn {
    /// The name.
    pub name: String,
    /// Its PostgreSQL type, as in `schemas::pg_layout`.
    pub pg_type: &'static str,
    /// How its values are read.
    pub kind: CellKind,
}

impl AnswerColumn {
    /// A column named `name` of PostgreSQL type `pg_type`.
    pub fn new(name: &str, pg_type: &'static str) -> Self {
        Self {
            name: name.to_string(),
            pg_type,
            kind: CellKind::of(pg_type),
        }
    }

    /// Whether the statement returns the column (an average the reader computes is not
    /// returned: [`CellKind::Average`]).
    pub(crate) fn in_statement(&self) -> bool {
        !matches!(self.kind, CellKind::Average { .. })
    }

    /// Whether the statement returns the column of `columns` named `name`.
    pub(crate) fn returned(columns: &[Self], name: &str) -> bool {
        columns.iter().any(|c| c.name == name && c.in_statement())
    }

    /// The type the column has on the wire: `numeric` sums and `jsonb` samples travel as text.
    pub(crate) fn wire_type(&self) -> &'static str {
        match self.pg_type {
            "numeric" | "jsonb" => "text",
            other => other,
        }
    }

    /// The columns of the answer to `selection` over `view`, in order.
    pub fn of(view: &View, selection: &Selection) -> Vec<Self> {
        let layout = ViewLayout::of(view);
        let mut columns: Vec<Self> = selection
            .group_by
            .iter()
            .map(|&i| Self::new(view.served_name(i), pg_type(view.served_type(i))))
            .collect();
        if selection.granularity.is_some() {
            columns.push(Self::new("bucket_start", "timestamptz"));
        }
        for (metric, column) in view.metrics.iter().zip(&layout.metric_columns) {
            let answer_type = merge::answer_type(metric, column.pg_type);
            if merge::is_sample(metric) && !selection.samples {
                continue;
            }
            columns.extend(
                metric
                    .answer_columns(&selection.quantiles)
                    .iter()
                    .map(|name| Self::new(name, answer_type)),
            );
        }
        for average in view.averages() {
            let mut column = Self::new(&average.column, "double precision");
            let ordered = selection.order.iter().any(|t| t.column == average.column);
            let index = |name: &str| columns.iter().position(|c| c.name == name);
            if let (false, Some(sum), Some(count)) =
                (ordered, index(&average.sum), index(&average.count))
            {
                column.kind = CellKind::Average { sum, count };
            }
            columns.push(column);
        }
        if selection.parts {
            columns.push(Self::new("batch_part", "boolean"));
            columns.push(Self::new("speed_part", "boolean"));
        }
        columns
    }

    /// Refuses answer columns named twice or longer than PostgreSQL keeps: the config
    /// checks the default levels; a level asked (`q=0.25`) may name a group field or attribute
    /// (`quantile_latency_ms_p25`), or be too long for a long metric name.
    pub(crate) fn check_names(columns: &[Self]) -> Result<(), SelectionError> {
        for (n, column) in columns.iter().enumerate() {
            if column.name.len() > schemas::view::MAX_ANSWER_NAME_BYTES
                || columns[..n].iter().any(|c| c.name == column.name)
            {
                return Err(SelectionError::AnswerColumnName {
                    column: column.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuses an order term of `selection` that is not one of `columns` (which [`Self::of`]
    /// made of it): the terms are written into the statement.
    pub(crate) fn check_order(
        columns: &[Self],
        selection: &Selection,
    ) -> Result<(), SelectionError> {
        if let Some(term) = selection
            .order
            .iter()
            .find(|t| !columns.iter().any(|c| c.name == t.column))
        {
            return Err(SelectionError::NotAnAnswerColumn {
                column: term.column.clone(),
            });
        }
        Ok(())
    }
}

/// The names of the answer's columns without the parts: the kept fields (`group_by`, indexes
/// into [`View::served_names`]), `bucket_start` when `bucketed`, the metrics (a quantile
/// metric as one column per level of `quantiles`, no sample: [`metric_columns`]), the
/// averages.
pub fn column_names(
    view: &View,
    group_by: &[usize],
    bucketed: bool,
    quantiles: &[QuantileLevel],
) -> Vec<String> {
    group_by
        .iter()
        .map(|&i| view.served_name(i).to_string())
        .chain(bucketed.then(|| "bucket_start".to_string()))
        .chain(
            view.metrics
                .iter()
                .flat_map(|m| metric_columns(m, quantiles)),
        )
        .chain(view.averages().into_iter().map(|a| a.column))
        .collect()
}

/// The answer columns of `metric` in series, rolling and top answers: its own, one per level of
/// a quantile metric, none for a sample (read at GET /v1/views/{view}/sample).
pub fn metric_columns(metric: &Metric, quantiles: &[QuantileLevel]) -> Vec<String> {
    if merge::is_sample(metric) {
        Vec::new()
    } else {
        metric.answer_columns(quantiles)
    }
}
