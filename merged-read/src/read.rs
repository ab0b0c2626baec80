//! One merged read: its statement (checked and built once), run in one snapshot, answering a
//! head row with the provenance and then the rows, read back as typed cells.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgPool, Row};

use schemas::pg_layout::merge;
use schemas::view::View;

use crate::columns::{AnswerColumn, CellKind};
use crate::error::{ReadError, SelectionError};
use crate::selection::Selection;
use crate::statement::{Bind, BoundStatement};
use crate::{general, whole_keys};

/// Which statement answers a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Whole keys at the view's bucket, metrics merged pairwise: a hash full join of the batch
    /// rows and the aggregated speed rows, or the batch rows alone when there is no speed row.
    WholeKeys,
    /// Everything else: both layers' rows unioned and rolled up.
    General,
}

/// The statement that reads a selection, ready to run (and to key a cache by).
#[derive(Debug, Clone)]
pub struct ReadStatement {
    statement: BoundStatement,
    columns: Vec<AnswerColumn>,
    limit: i64,
    shape: Shape,
}

impl ReadStatement {
    /// The statement for `selection` over `view`, reading the speed positions of `topic`: the
    /// one for whole keys when it applies, else the general one.
    pub fn new(view: &View, selection: &Selection, topic: &str) -> Result<Self, SelectionError> {
        selection.check(view)?;
        let columns = AnswerColumn::of(view, selection);
        AnswerColumn::check_names(&columns)?;
        AnswerColumn::check_order(&columns, selection)?;
        let (statement, shape) = match whole_keys::statement(view, selection, topic, &columns) {
            Some(statement) => (statement, Shape::WholeKeys),
            None => (
                general::statement(view, selection, topic, &columns),
                Shape::General,
            ),
        };
        Ok(Self {
            statement,
            columns,
            limit: selection.limit,
            shape,
        })
    }

    /// The general statement whatever the selection (to compare the two).
    pub fn general(
        view: &View,
        selection: &Selection,
        topic: &str,
    ) -> Result<Self, SelectionError> {
        selection.check(view)?;
        let columns = AnswerColumn::of(view, selection);
        AnswerColumn::check_names(&columns)?;
        AnswerColumn::check_order(&columns, selection)?;
        Ok(Self {
            statement: general::statement(view, selection, topic, &columns),
            columns,
            limit: selection.limit,
            shape: Shape::General,
        })
    }

    /// Which statement it is.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.statement.sql
    }

    /// The placeholders' values.
    pub fn values(&self) -> &[Bind] {
        &self.statement.values
    }

    /// The answer's columns.
    pub fn columns(&self) -> &[AnswerColumn] {
        &self.columns
    }

    /// The text and values, for tools that run the statement elsewhere.
    pub fn into_bound(self) -> BoundStatement {
        self.statement
    }

    /// Runs the statement (one snapshot).
    pub async fn run(self, pool: &PgPool) -> Result<MergedAnswer, ReadError> {
        let BoundStatement { sql, values } = self.statement;
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), values)
            .fetch_all(pool)
            .await?;
        MergedAnswer::of(rows, self.columns, self.limit)
    }
}

fn bind_all<'q>(
    mut query: Query<'q, sqlx::Postgres, PgArguments>,
    values: Vec<Bind>,
) -> Query<'q, sqlx::Postgres, PgArguments> {
    for value in values {
        query = match value {
            Bind::Text(v) => query.bind(v),
            Bind::Int(v) => query.bind(v),
            Bind::Time(v) => query.bind(v),
            Bind::Texts(v) => query.bind(v),
            Bind::Ints(v) => query.bind(v),
            Bind::Bools(v) => query.bind(v),
            Bind::Bool(v) => query.bind(v),
            Bind::Float(v) => query.bind(v),
        };
    }
    query
}

/// Where the rows read come from, read in the same snapshot as the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The active batch run (`run_id`, `covered_epoch`, `delta_version`, `finished_at`) as
    /// PostgreSQL renders it in JSON, or `None` before the first run.
    pub batch: Option<String>,
    /// The speed layer's stored positions, newest event time and last flush, as PostgreSQL
    /// renders them in JSON.
    pub speed: String,
    /// Whether the view's definition still lacks history no batch run has covered yet.
    pub backfilling: bool,
}

/// The answer of a merged read.
#[derive(Debug)]
pub struct MergedAnswer {
    /// The rows, at most the selection's limit.
    pub rows: MergedRows,
    /// Whether more rows matched than the limit let through.
    pub truncated: bool,
    /// Where they come from.
    pub provenance: Provenance,
}

/// Reads column `index` of `row` as `T`, the error naming `column`.
fn get<'r, T>(row: &'r PgRow, index: usize, column: &str) -> Result<T, ReadError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(index).map_err(|source| ReadError::Column {
        column: column.to_string(),
        source,
    })
}

/// The head row's `provenance$`: `[batch, speed, backfilling]` (`statement::head_row`), the
/// two JSON values kept as PostgreSQL wrote them.
#[derive(serde::Deserialize)]
struct HeadProvenance(
    Option<Box<serde_json::value::RawValue>>,
    Box<serde_json::value::RawValue>,
    bool,
);

impl MergedAnswer {
    /// The answer in `rows`: a head row (the one whose last column, `provenance$`, is set;
    /// the statement returns it first) and the page, with one row past the limit when more
    /// matched.
    fn of(mut rows: Vec<PgRow>, columns: Vec<AnswerColumn>, limit: i64) -> Result<Self, ReadError> {
        let positions = Positions::of(&columns);
        let provenance_at = positions.returned;
        let mut head = None;
        for (index, row) in rows.iter().enumerate() {
            if let Some(text) = get::<Option<&str>>(row, provenance_at, "provenance$")? {
                head = Some((index, text.to_string()));
                break;
            }
        }
        let (head_index, text) = head.ok_or(ReadError::NoHeadRow)?;
        rows.remove(head_index);
        let HeadProvenance(batch, speed, backfilling) =
            serde_json::from_str(&text).map_err(|source| ReadError::Provenance { text, source })?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let truncated = rows.len() > limit;
        rows.truncate(limit);
        Ok(Self {
            rows: MergedRows {
                rows,
                columns,
                positions,
            },
            truncated,
            provenance: Provenance {
                // A JSON null (no active run) is read as None.
                batch: batch.map(|b| b.get().to_string()),
                speed: speed.get().to_string(),
                backfilling,
            },
        })
    }
}

/// Where each answer column is in a returned row: columns the reader computes
/// ([`CellKind::Average`]) are not returned, so the others shift left.
#[derive(Debug)]
struct Positions {
    /// Per answer column, its index in a returned row (unused for computed columns).
    at: Vec<usize>,
    /// How many columns a row returns before `provenance$` (so `provenance$`'s index).
    returned: usize,
}

impl Positions {
    fn of(columns: &[AnswerColumn]) -> Self {
        let mut returned = 0;
        let at = columns
            .iter()
            .map(|c| {
                let at = returned;
                returned += usize::from(c.in_statement());
                at
            })
            .collect();
        Self { at, returned }
    }
}

/// The rows of an answer, read cell by cell where they were received (nothing is copied).
#[derive(Debug)]
pub struct MergedRows {
    /// The page, in the answer's order.
    rows: Vec<PgRow>,
    columns: Vec<AnswerColumn>,
    positions: Positions,
}

impl MergedRows {
    /// The answer's columns: each row has one cell per column, in this order.
    pub fn columns(&self) -> &[AnswerColumn] {
        &self.columns
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, in the answer's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = MergedRow<'_>> {
        self.rows.iter().map(|row| MergedRow {
            row,
            columns: &self.columns,
            positions: &self.positions.at,
        })
    }
}

/// One row of an answer.
#[derive(Debug, Clone, Copy)]
pub struct MergedRow<'r> {
    row: &'r PgRow,
    columns: &'r [AnswerColumn],
    positions: &'r [usize],
}

impl<'r> MergedRow<'r> {
    /// The cell of column `index` (into [`MergedRows::columns`]).
    pub fn cell(&self, index: usize) -> Result<Cell<'r>, ReadError> {
        let column = &self.columns[index];
        let at = self.positions[index];
        let row = self.row;
        let name = column.name.as_str();
        Ok(match column.kind {
            CellKind::Int => get::<Option<i64>>(row, at, name)?.map_or(Cell::Null, Cell::Int),
            CellKind::Float => get::<Option<f64>>(row, at, name)?.map_or(Cell::Null, Cell::Float),
            CellKind::IntegerSum => match get::<Option<&str>>(row, at, name)? {
                // An integer sum, as PostgreSQL prints it: digits with an optional sign.
                Some(text) if is_integer_text(text) => Cell::IntegerSum(text),
                Some(text) => {
                    return Err(ReadError::NotAnIntegerSum {
                        column: column.name.clone(),
                        text: text.to_string(),
                    });
                }
                None => Cell::Null,
            },
            CellKind::Bool => get::<Option<bool>>(row, at, name)?.map_or(Cell::Null, Cell::Bool),
            CellKind::Time => {
                get::<Option<DateTime<Utc>>>(row, at, name)?.map_or(Cell::Null, Cell::Time)
            }
            CellKind::Text => get::<Option<&str>>(row, at, name)?.map_or(Cell::Null, Cell::Text),
            CellKind::Json => get::<Option<&str>>(row, at, name)?.map_or(Cell::Null, Cell::Json),
            CellKind::Average { sum, count } => average(self.cell(sum)?, self.cell(count)?),
        })
    }

    /// The cells, one per column, in order.
    pub fn cells(&self) -> impl Iterator<Item = Result<Cell<'r>, ReadError>> + '_ {
        (0..self.columns.len()).map(|i| self.cell(i))
    }
}

/// The average of a merged row's sum and count, exactly as `merge::row_average` computes it
/// in SQL: NULL without a count or with a zero one; a sum below the floor reads as 0; the sum
/// (an integer sum's decimal text rounded to the nearest `f64`, as PostgreSQL's cast does)
/// divided by the count (rounded to `f64`, as PostgreSQL's cast does). IEEE division is the
/// same in both, so the value is the same bit for bit.
fn average(sum: Cell<'_>, count: Cell<'_>) -> Cell<'static> {
    let count = match count {
        Cell::Int(count) if count != 0 => count,
        _ => return Cell::Null,
    };
    let sum = match sum {
        Cell::Float(sum) => sum,
        Cell::Int(sum) => sum as f64,
        // Digits with an optional sign (checked when read): always a number.
        Cell::IntegerSum(text) => match text.parse::<f64>() {
            Ok(sum) => sum,
            Err(_) => return Cell::Null,
        },
        _ => return Cell::Null,
    };
    let sum = if sum.abs() < merge::AVERAGE_READ_FLOOR_VALUE {
        0.0
    } else {
        sum
    };
    Cell::Float(sum / count as f64)
}

fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// One value of an answer, borrowed from the row it was received in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'r> {
    /// NULL.
    Null,
    /// A `bigint`.
    Int(i64),
    /// A `double precision`.
    Float(f64),
    /// An integer sum beyond `bigint`, as its exact decimal digits (with an optional `-`).
    IntegerSum(&'r str),
    /// A `boolean`.
    Bool(bool),
    /// A `timestamptz`.
    Time(DateTime<Utc>),
    /// Text.
    Text(&'r str),
    /// JSON text (a sample's records), as PostgreSQL rendered it.
    Json(&'r str),
}

impl Cell<'_> {
    /// The value, owned.
    pub fn to_value(self) -> CellValue {
        match self {
            Cell::Null => CellValue::Null,
            Cell::Int(v) => CellValue::Int(v),
            Cell::Float(v) => CellValue::Float(v),
            Cell::IntegerSum(v) => CellValue::IntegerSum(v.to_string()),
            Cell::Bool(v) => CellValue::Bool(v),
            Cell::Time(v) => CellValue::Time(v),
            Cell::Text(v) => CellValue::Text(v.to_string()),
            Cell::Json(v) => CellValue::Json(v.to_string()),
        }
    }
}

/// One value of an answer, owned ([`Cell`]'s counterpart).
#[derive(Debug, Clone, PartialEq)]
pub enum CellValue {
    /// NULL.
    Null,
    /// A `bigint`.
    Int(i64),
    /// A `double precision`.
    Float(f64),
    /// An integer sum beyond `bigint`, as its exact decimal digits (with an optional `-`).
    IntegerSum(String),
    /// A `boolean`.
    Bool(bool),
    /// A `timestamptz`.
    Time(DateTime<Utc>),
    /// Text.
    Text(String),
    /// JSON text (a sample's records).
    Json(String),
}
