//! A dimension's rows, column by column, typed like the table (`text`, `bigint`,
//! `double precision`, `boolean`), so that they are bound as arrays.

use chrono::{DateTime, Utc};

use crate::store::ColumnValues;
use schemas::FieldType;
use schemas::dimension::{Dimension, VALID_FROM};
use schemas::record::{Rejection, STORABLE_TIME_MAX_MICROS, STORABLE_TIME_MIN_MICROS, quote_input};
use serde_json::Value;

/// Why a value was refused: the row, the column and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}, column `{column}`: {problem}")]
pub struct RowError {
    /// The row (1 is the first data row; 0 for a message).
    pub row: usize,
    /// The column.
    pub column: String,
    /// What was wrong.
    pub problem: RowProblem,
}

/// What was wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    /// The key is absent or null.
    #[error("the key is missing")]
    MissingKey,
    /// Text holds a NUL character, which PostgreSQL `text` cannot store.
    #[error("text with a NUL character at byte {at} (PostgreSQL cannot store it)")]
    Nul {
        /// The byte position of the first NUL.
        at: usize,
    },
    /// A text key is longer than `schema.max_group_value_bytes`.
    #[error(
        "the key is {size} bytes, over schema.max_group_value_bytes = {limit} (no event can have it, \
         and the table's key index cannot hold it)"
    )]
    KeyTooLong {
        /// Its length in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A versioned dimension's row without `valid_from`.
    #[error("a version needs valid_from (an RFC 3339 time or epoch milliseconds)")]
    MissingValidFrom,
    /// A `valid_from` outside the years 1 to 9999 (PostgreSQL's timestamptz would refuse some).
    #[error("valid_from {value} is outside the years 1 to 9999")]
    ValidFromOutOfRange {
        /// The value, quoted.
        value: String,
    },
    /// A value that is not of the column's type.
    #[error("{found} is not a {expected} value")]
    WrongType {
        /// The column's type (`i64`, a finite `f64`, ...).
        expected: &'static str,
        /// The value, quoted.
        found: String,
    },
}

impl RowError {
    /// The same refusal as a dead letter's reason (a message of a followed topic).
    pub fn rejection(&self) -> Rejection {
        let field = self.column.clone();
        match &self.problem {
            RowProblem::MissingKey | RowProblem::MissingValidFrom => {
                Rejection::MissingField { field }
            }
            RowProblem::ValidFromOutOfRange { value } => Rejection::TimestampOutOfRange {
                field,
                value: value.clone(),
            },
            RowProblem::Nul { at } => Rejection::UnstorableText { field, at: *at },
            RowProblem::KeyTooLong { size, limit } => Rejection::StringTooLong {
                field,
                size: *size,
                limit: *limit,
            },
            RowProblem::WrongType { expected, found } => Rejection::WrongType {
                field,
                expected,
                found: found.clone(),
            },
        }
    }
}

/// The rows: the key column, one column per attribute in the dimension's order, and a
/// versioned dimension's `valid_from`s.
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionRows {
    /// The keys (never null).
    pub keys: ColumnValues,
    /// The attributes.
    pub attributes: Vec<ColumnValues>,
    /// When each version starts (a versioned dimension's rows; empty for the others).
    pub valid_from: Vec<DateTime<Utc>>,
}

fn empty(t: FieldType) -> ColumnValues {
    match t {
        FieldType::I64 => ColumnValues::Int(Vec::new()),
        FieldType::F64 => ColumnValues::Float(Vec::new()),
        FieldType::Bool => ColumnValues::Bool(Vec::new()),
        _ => ColumnValues::Text(Vec::new()),
    }
}

/// A value as read from a file or a message, before it is typed.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue<'a> {
    /// Absent or null.
    Null,
    /// Text (a CSV cell, a JSON string, a message key).
    Text(&'a str),
    /// A JSON number or a typed Parquet integer.
    Int(i64),
    /// A JSON or Parquet float (a JSON integer past i64 too).
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A Parquet timestamp or date, in microseconds since the epoch (only `valid_from` takes
    /// one).
    Micros(i64),
    /// A value of no column type (a JSON array or object), named by its kind.
    Other(&'static str),
}

impl<'a> RawValue<'a> {
    /// A JSON value, as it is typed.
    pub fn from_json(value: &'a Value) -> Self {
        match value {
            Value::Null => RawValue::Null,
            Value::String(s) => RawValue::Text(s),
            Value::Bool(b) => RawValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => RawValue::Int(i),
                // serde_json reads every other number as f64 or u64, both finite.
                None => RawValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Array(_) => RawValue::Other("an array"),
            Value::Object(_) => RawValue::Other("an object"),
        }
    }

    /// The value quoted for a refusal (control characters escaped, bounded).
    fn quoted(&self) -> String {
        match self {
            RawValue::Null => "null".into(),
            RawValue::Text(s) => format!("`{}`", quote_input(s)),
            RawValue::Int(i) => i.to_string(),
            // Bounded: 1e308 written out is 309 digits.
            RawValue::Float(f) if f.abs() >= 1e21 || (*f != 0.0 && f.abs() < 1e-6) => {
                format!("{f:e}")
            }
            RawValue::Float(f) => f.to_string(),
            RawValue::Bool(b) => b.to_string(),
            RawValue::Micros(micros) => schemas::record::micros_to_rfc3339(*micros),
            RawValue::Other(kind) => (*kind).to_string(),
        }
    }
}

/// One row, typed: the key (never null), the attributes in the dimension's order, and when
/// the version starts (a versioned dimension's; `None` for the others).
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRow {
    /// The key.
    pub key: Cell,
    /// The attributes.
    pub attributes: Vec<Cell>,
    /// When this version starts.
    pub valid_from: Option<DateTime<Utc>>,
}

impl DimensionRows {
    /// No rows, typed for `dimension`.
    pub fn new(dimension: &Dimension) -> Self {
        Self {
            keys: empty(dimension.key_type),
            attributes: dimension
                .attributes
                .iter()
                .map(|a| empty(a.attribute_type))
                .collect(),
            valid_from: Vec::new(),
        }
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one row: the key, the attributes in order, and a versioned dimension's
    /// `valid_from` (ignored for the others). A row whose key is null or any value of the
    /// wrong type is refused whole, naming the column.
    pub fn push(
        &mut self,
        row: usize,
        dimension: &Dimension,
        key: RawValue<'_>,
        attributes: &[RawValue<'_>],
        valid_from: RawValue<'_>,
    ) -> Result<(), RowError> {
        let mut typed = typed_row(row, dimension, &key, attributes)?;
        typed.valid_from = typed_valid_from(row, dimension, &valid_from)?;
        self.push_typed(typed);
        Ok(())
    }

    /// Appends a row typed by [`typed_row`] for the same dimension.
    pub fn push_typed(&mut self, row: TypedRow) {
        self.keys.push(row.key);
        for (column, value) in self.attributes.iter_mut().zip(row.attributes) {
            column.push(value);
        }
        self.valid_from.extend(row.valid_from);
    }
}

/// Types one row for `dimension`: the rules every source (a file, a followed topic) follows.
/// The key must be present and, as text, at most `dimension.max_key_bytes`; every value must
/// be of its column's type (text without NUL, a finite f64). A missing attribute is null.
pub fn typed_row(
    row: usize,
    dimension: &Dimension,
    key: &RawValue<'_>,
    attributes: &[RawValue<'_>],
) -> Result<TypedRow, RowError> {
    let key = typed_key(row, dimension, key)?;
    let attributes = dimension
        .attributes
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let value = attributes.get(i).unwrap_or(&RawValue::Null);
            typed_value(row, &a.name, a.attribute_type, value)
        })
        .collect::<Result<_, _>>()?;
    Ok(TypedRow {
        key,
        attributes,
        valid_from: None,
    })
}

/// When a versioned dimension's row starts: an RFC 3339 time (text), integer epoch
/// milliseconds, or a Parquet timestamp or date, in the years 1 to 9999 (`None` for a dimension that is not versioned, whatever is given).
pub fn typed_valid_from(
    row: usize,
    dimension: &Dimension,
    value: &RawValue<'_>,
) -> Result<Option<DateTime<Utc>>, RowError> {
    if !dimension.versioned {
        return Ok(None);
    }
    let refused = |problem| RowError {
        row,
        column: VALID_FROM.to_string(),
        problem,
    };
    let micros = match value {
        RawValue::Null => return Err(refused(RowProblem::MissingValidFrom)),
        RawValue::Text(text) if text.contains('\0') => {
            return Err(refused(RowProblem::Nul {
                at: text.find('\0').unwrap_or(0),
            }));
        }
        // Text is RFC 3339 only: digits could be milliseconds, seconds or 20260303.
        RawValue::Text(text) => schemas::rfc3339::parse_micros(text.trim()).ok(),
        RawValue::Int(millis) => millis.checked_mul(1_000),
        // A Parquet timestamp or date column.
        RawValue::Micros(micros) => Some(*micros),
        _ => None,
    }
    .ok_or_else(|| {
        refused(RowProblem::WrongType {
            expected: "RFC 3339 time (text) or epoch milliseconds (an integer)",
            found: value.quoted(),
        })
    })?;
    if !(STORABLE_TIME_MIN_MICROS..STORABLE_TIME_MAX_MICROS).contains(&micros) {
        return Err(refused(RowProblem::ValidFromOutOfRange {
            value: value.quoted(),
        }));
    }
    DateTime::from_timestamp_micros(micros)
        .map(Some)
        .ok_or_else(|| {
            refused(RowProblem::ValidFromOutOfRange {
                value: value.quoted(),
            })
        })
}

/// Types a key alone (a tombstone's): present, of the key's type, and not too long.
pub fn typed_key(row: usize, dimension: &Dimension, key: &RawValue<'_>) -> Result<Cell, RowError> {
    let refused = |problem| RowError {
        row,
        column: dimension.key.clone(),
        problem,
    };
    if *key == RawValue::Null {
        return Err(refused(RowProblem::MissingKey));
    }
    let cell = typed_value(row, &dimension.key, dimension.key_type, key)?;
    if let Cell::Text(text) = &cell
        && text.len() > dimension.max_key_bytes
    {
        return Err(refused(RowProblem::KeyTooLong {
            size: text.len(),
            limit: dimension.max_key_bytes,
        }));
    }
    Ok(cell)
}

/// A typed cell.
pub use crate::store::Cell;

fn typed_value(
    row: usize,
    column: &str,
    t: FieldType,
    value: &RawValue<'_>,
) -> Result<Cell, RowError> {
    let refused = |problem| RowError {
        row,
        column: column.to_string(),
        problem,
    };
    let wrong = || {
        refused(RowProblem::WrongType {
            expected: match t {
                FieldType::F64 => "finite f64",
                other => other.name(),
            },
            found: value.quoted(),
        })
    };
    if let RawValue::Text(s) = value
        && let Some(at) = s.find('\0')
    {
        return Err(refused(RowProblem::Nul { at }));
    }
    let cell = match (t, value) {
        (_, RawValue::Null) => Cell::Null,
        (FieldType::String, RawValue::Text(s)) => Cell::Text((*s).to_string()),
        (FieldType::String, RawValue::Int(i)) => Cell::Text(i.to_string()),
        (FieldType::I64, RawValue::Int(i)) => Cell::Int(*i),
        (FieldType::I64, RawValue::Text(s)) => Cell::Int(s.trim().parse().map_err(|_| wrong())?),
        (FieldType::F64, RawValue::Float(f)) => Cell::Float(*f),
        (FieldType::F64, RawValue::Int(i)) => Cell::Float(*i as f64),
        (FieldType::F64, RawValue::Text(s)) => Cell::Float(s.trim().parse().map_err(|_| wrong())?),
        (FieldType::Bool, RawValue::Bool(b)) => Cell::Bool(*b),
        (FieldType::Bool, RawValue::Text(s)) => Cell::Bool(match s.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(wrong()),
        }),
        _ => return Err(wrong()),
    };
    if let Cell::Float(f) = cell
        && !f.is_finite()
    {
        return Err(wrong());
    }
    Ok(cell)
}

#[cfg(test)]
mod tests;
