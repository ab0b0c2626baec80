//! What can go wrong reading a merged view, and whose fault it is ([`ReadError::fault`]).

use chrono::{DateTime, Utc};
use schemas::event_schema::FieldType;

/// The part of a selection an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The group fields and attributes kept.
    GroupBy,
    /// The filters.
    Filter,
    /// The time range.
    Range,
    /// The rollup's bucket width.
    Granularity,
    /// A rolling window's width.
    Window,
    /// The most rows returned.
    Limit,
    /// The order.
    Order,
    /// The quantile levels.
    Quantiles,
}

/// A selection the merged read cannot take (the caller's fault). Each names what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectionError {
    /// A field index past the view's group fields and attributes.
    #[error("field #{field} does not exist: the view serves {served} group fields and attributes")]
    NoSuchField {
        /// Where it was asked for.
        span: Span,
        /// The index.
        field: usize,
        /// How many fields the view serves.
        served: usize,
    },
    /// An answer column named twice, or past PostgreSQL's 63 bytes (a quantile level's column).
    #[error(
        "answer column `{column}` is named twice or is longer than 63 bytes: ask another quantile level"
    )]
    AnswerColumnName {
        /// The column.
        column: String,
    },
    /// A quantile level asked twice.
    #[error("quantile level {level} is asked twice")]
    LevelTwice {
        /// The level.
        level: String,
    },
    /// A field kept twice.
    #[error("`{field}` is kept twice")]
    KeptTwice {
        /// The field.
        field: String,
    },
    /// Filter values of another type than the field's.
    #[error("the values of the filter on `{field}` are not of its type ({})", field_type.name())]
    FilterType {
        /// The field.
        field: String,
        /// Its type.
        field_type: FieldType,
    },
    /// A range that holds no time.
    #[error("the range is empty or reversed: from {from} is not before to {to}")]
    EmptyRange {
        /// Its start.
        from: DateTime<Utc>,
        /// Its end.
        to: DateTime<Utc>,
    },
    /// A bucket width or window that is not a positive multiple of the view's bucket.
    #[error("{seconds} s is not a positive multiple of the view's bucket ({bucket} s)")]
    NotBucketMultiple {
        /// Granularity or window.
        span: Span,
        /// The width asked.
        seconds: i64,
        /// The view's bucket.
        bucket: i64,
    },
    /// A limit below 1.
    #[error("the limit {limit} is below 1")]
    Limit {
        /// The limit asked.
        limit: i64,
    },
    /// An order term that is not an answer column.
    #[error("`{column}` is not a column of the answer")]
    NotAnAnswerColumn {
        /// The column asked.
        column: String,
    },
}

impl SelectionError {
    /// The part of the selection it is about.
    pub fn span(&self) -> Span {
        match self {
            Self::NoSuchField { span, .. } | Self::NotBucketMultiple { span, .. } => *span,
            Self::KeptTwice { .. } => Span::GroupBy,
            Self::FilterType { .. } => Span::Filter,
            Self::EmptyRange { .. } => Span::Range,
            Self::Limit { .. } => Span::Limit,
            Self::NotAnAnswerColumn { .. } => Span::Order,
            Self::LevelTwice { .. } | Self::AnswerColumnName { .. } => Span::Quantiles,
        }
    }
}

/// Whose fault a [`ReadError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The selection's: the same selection fails again.
    Selection,
    /// The database is away or too slow right now: the same read may succeed later.
    Unavailable,
    /// Braid's (a bug, or a database error it did not expect).
    Internal,
}

/// Why a merged read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The selection cannot be read.
    #[error("bad selection: {0}")]
    Selection(#[from] SelectionError),
    /// The database cannot be reached (a pool timeout, a lost connection, a shutdown).
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The statement ran into the database's `statement_timeout`.
    #[error("the statement took longer than the database's statement_timeout")]
    TimedOut(#[source] sqlx::Error),
    /// Any other database error (a bug: the statements are built from validated identifiers).
    #[error("the database refused the merged read: {0}")]
    Database(#[source] sqlx::Error),
    /// The statement returned no head row.
    #[error("the merged read returned no head row")]
    NoHeadRow,
    /// The head row's provenance is not the JSON array the statement builds.
    #[error("the merged read's provenance `{text}` is not [batch, speed, backfilling]: {source}")]
    Provenance {
        /// What the head row held.
        text: String,
        /// Why it could not be read.
        source: serde_json::Error,
    },
    /// A column of the answer could not be decoded as its type.
    #[error("column `{column}` could not be read: {source}")]
    Column {
        /// The column.
        column: String,
        /// The decoding error.
        source: sqlx::Error,
    },
    /// An integer sum (a `numeric` column) that is not an integer.
    #[error("column `{column}` holds `{text}`, not an integer sum")]
    NotAnIntegerSum {
        /// The column.
        column: String,
        /// What it holds.
        text: String,
    },
}

impl ReadError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Selection(_) => Fault::Selection,
            Self::Unavailable(_) | Self::TimedOut(_) => Fault::Unavailable,
            Self::Database(_)
            | Self::NoHeadRow
            | Self::Provenance { .. }
            | Self::Column { .. }
            | Self::NotAnIntegerSum { .. } => Fault::Internal,
        }
    }
}

impl From<sqlx::Error> for ReadError {
    /// Sorts a database error: unreachable (retry), timed out (retry narrower), or other.
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(error),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // query_canceled: the statement timeout fired.
                Some("57014") => Self::TimedOut(error),
                // admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions.
                Some(code) if code.starts_with("57P") || code.starts_with("08") => {
                    Self::Unavailable(error)
                }
                _ => Self::Database(error),
            },
            _ => Self::Database(error),
        }
    }
}
