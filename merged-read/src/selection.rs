//! What to read of a view: a time range, an optional rollup, the group fields and attributes
//! kept, equality filters, an order, a limit, the time decayed metrics are decayed to, and
//! whether each row says which parts it merges. Typed values, checked against the view before
//! any statement is built ([`Selection::check`]).

use chrono::{DateTime, Duration, TimeZone, Utc};
use schemas::event_schema::FieldType;
use schemas::quantile::QuantileLevel;
use schemas::view::View;

use crate::error::{SelectionError, Span};

pub use schemas::view::FilterValues;

/// An equality filter: the rows whose `field` is one of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The group field or attribute, as an index into [`View::served_names`].
    pub field: usize,
    /// The accepted values, typed like the field.
    pub values: FilterValues,
}

/// One term of an answer's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    /// An answer column, e.g. `count` or `bucket_start`.
    pub column: String,
    /// Largest first.
    pub descending: bool,
}

impl OrderTerm {
    /// `column`, smallest first.
    pub fn ascending(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            descending: false,
        }
    }
}

/// A query over one view.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Rows with bucket_start ≥ from ...
    pub from: DateTime<Utc>,
    /// ... and bucket_start < to.
    pub to: DateTime<Utc>,
    /// Bucket width of the answer in seconds (the view's bucket or a multiple); `None` sums the
    /// whole range.
    pub granularity: Option<i64>,
    /// Group fields and attributes kept, as indexes into [`View::served_names`].
    pub group_by: Vec<usize>,
    /// Equality filters on group fields and attributes.
    pub filters: Vec<Filter>,
    /// The answer's order; each column is an answer column.
    pub order: Vec<OrderTerm>,
    /// Most rows to return (at least 1).
    pub limit: i64,
    /// The time decayed metrics are decayed to.
    pub decayed_to: DateTime<Utc>,
    /// Whether each row says which parts (batch, speed) it merges.
    pub parts: bool,
    /// The quantiles each quantile metric answers, one column each
    /// (`<metric>_p50`, [`QuantileLevel::column`]).
    pub quantiles: Vec<QuantileLevel>,
    /// Whether sample metrics are answered (their merged records, one column each); other
    /// reads leave them out.
    pub samples: bool,
}

impl Selection {
    /// Whether the read joins a dimension table (a kept or filtered attribute): such tables
    /// change without a view-change notification.
    pub fn joins_dimensions(&self, view: &View) -> bool {
        self.group_by
            .iter()
            .chain(self.filters.iter().map(|f| &f.field))
            .any(|&i| view.served_attribute(i).is_some())
    }

    /// Checks the selection against `view` (all but its order, which
    /// `AnswerColumn::check_order` checks against the answer's columns): what the statement builders take for granted.
    pub(crate) fn check(&self, view: &View) -> Result<(), SelectionError> {
        let served = view.group_by.len() + view.attributes.len();
        for (n, &field) in self.group_by.iter().enumerate() {
            if field >= served {
                return Err(SelectionError::NoSuchField {
                    span: Span::GroupBy,
                    field,
                    served,
                });
            }
            if self.group_by[..n].contains(&field) {
                return Err(SelectionError::KeptTwice {
                    field: view.served_name(field).to_string(),
                });
            }
        }
        for filter in &self.filters {
            if filter.field >= served {
                return Err(SelectionError::NoSuchField {
                    span: Span::Filter,
                    field: filter.field,
                    served,
                });
            }
            let fits = matches!(
                (view.served_type(filter.field), &filter.values),
                (FieldType::I64, FilterValues::Int(_))
                    | (FieldType::Bool, FilterValues::Bool(_))
                    | (
                        FieldType::String | FieldType::Timestamp,
                        FilterValues::Text(_)
                    )
            );
            if !fits {
                return Err(SelectionError::FilterType {
                    field: view.served_name(filter.field).to_string(),
                    field_type: view.served_type(filter.field),
                });
            }
        }
        if self.from >= self.to {
            return Err(SelectionError::EmptyRange {
                from: self.from,
                to: self.to,
            });
        }
        if let Some(seconds) = self.granularity {
            check_bucket_multiple(view, Span::Granularity, seconds)?;
        }
        if self.limit < 1 {
            return Err(SelectionError::Limit { limit: self.limit });
        }
        for (n, level) in self.quantiles.iter().enumerate() {
            if self.quantiles[..n]
                .iter()
                .any(|l| l.suffix() == level.suffix())
            {
                return Err(SelectionError::LevelTwice {
                    level: level.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Refuses a span of `seconds` that is not a positive multiple of `view`'s bucket.
pub(crate) fn check_bucket_multiple(
    view: &View,
    span: Span,
    seconds: i64,
) -> Result<(), SelectionError> {
    let bucket = view.bucket.seconds();
    if seconds <= 0 || seconds % bucket != 0 {
        return Err(SelectionError::NotBucketMultiple {
            span,
            seconds,
            bucket,
        });
    }
    Ok(())
}

/// `time` rounded down to a multiple of `seconds` since the Unix epoch.
pub fn floor_to(time: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    let micros = seconds * 1_000_000;
    Utc.timestamp_micros(time.timestamp_micros().div_euclid(micros) * micros)
        .single()
        .unwrap_or(time)
}

/// `time` rounded up to a multiple of `seconds` since the Unix epoch.
pub fn ceil_to(time: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    let floor = floor_to(time, seconds);
    if floor == time {
        time
    } else {
        floor + Duration::seconds(seconds)
    }
}
