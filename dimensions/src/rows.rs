//! A dimension's rows, column by column, typed like the table (`text`, `bigint`,
//! `double precision`, `boolean`), so that they are bound as arrays.

use schemas::FieldType;
use schemas::dimension::Dimension;
use schemas::pg::dimensions::ColumnValues;

/// Why a value was refused: the row, the column and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}, column `{column}`: {reason}")]
pub struct RowError {
    /// The row (1 is the first data row).
    pub row: usize,
    /// The column.
    pub column: String,
    /// Why.
    pub reason: String,
}

/// The rows: the key column and one column per attribute, in the dimension's order.
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionRows {
    /// The keys (never null).
    pub keys: ColumnValues,
    /// The attributes.
    pub attributes: Vec<ColumnValues>,
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
    /// Text (a CSV cell, a JSON string).
    Text(&'a str),
    /// A JSON number or a typed Parquet integer.
    Int(i64),
    /// A JSON or Parquet float.
    Float(f64),
    /// A boolean.
    Bool(bool),
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

    /// Appends one row: the key, then the attributes in order. A row whose key is null or any
    /// value of the wrong type is refused whole, naming the column.
    pub fn push(
        &mut self,
        row: usize,
        dimension: &Dimension,
        key: RawValue<'_>,
        attributes: &[RawValue<'_>],
    ) -> Result<(), RowError> {
        if key == RawValue::Null {
            return Err(RowError {
                row,
                column: dimension.key.clone(),
                reason: "the key is missing".into(),
            });
        }
        // Check every value before appending any, so that a refused row leaves no partial row.
        let mut typed = Vec::with_capacity(1 + attributes.len());
        typed.push(typed_value(row, &dimension.key, dimension.key_type, &key)?);
        for (a, value) in dimension.attributes.iter().zip(attributes) {
            typed.push(typed_value(row, &a.name, a.attribute_type, value)?);
        }
        let mut values = typed.into_iter();
        self.keys.push(values.next().expect("the key"));
        for (column, value) in self.attributes.iter_mut().zip(values) {
            column.push(value);
        }
        Ok(())
    }
}

/// A typed cell.
pub use schemas::pg::dimensions::Cell;

fn typed_value(
    row: usize,
    column: &str,
    t: FieldType,
    value: &RawValue<'_>,
) -> Result<Cell, RowError> {
    let wrong = |what: &str| RowError {
        row,
        column: column.to_string(),
        reason: format!("{what} is not a {} value", t.name()),
    };
    Ok(match (t, value) {
        (_, RawValue::Null) => Cell::Null,
        (_, RawValue::Text(s)) if s.contains('\0') => {
            return Err(wrong(
                "text with a NUL character (PostgreSQL cannot store it)",
            ));
        }
        (FieldType::String, RawValue::Text(s)) => Cell::Text((*s).to_string()),
        (FieldType::String, RawValue::Int(i)) => Cell::Text(i.to_string()),
        (FieldType::I64, RawValue::Int(i)) => Cell::Int(*i),
        (FieldType::I64, RawValue::Text(s)) => {
            Cell::Int(s.trim().parse().map_err(|_| wrong(&format!("`{s}`")))?)
        }
        (FieldType::F64, RawValue::Float(f)) => Cell::Float(*f),
        (FieldType::F64, RawValue::Int(i)) => Cell::Float(*i as f64),
        (FieldType::F64, RawValue::Text(s)) => {
            Cell::Float(s.trim().parse().map_err(|_| wrong(&format!("`{s}`")))?)
        }
        (FieldType::Bool, RawValue::Bool(b)) => Cell::Bool(*b),
        (FieldType::Bool, RawValue::Text(s)) => Cell::Bool(match s.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(wrong(&format!("`{s}`"))),
        }),
        (_, other) => return Err(wrong(&format!("{other:?}"))),
    })
}
