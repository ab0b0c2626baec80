//! Bulk-loading a computed view into its batch table with binary COPY, under a new run id.
//!
//! Binary, not text: a sketch travels as its bytes (the `hll` extension's `hll_recv`) instead of
//! twice as many hex digits that `hll_in` parses, and numbers and times need no formatting.
//! The format: PostgreSQL's documentation, "COPY", "Binary Format"; each value in its type's
//! `*_send` form.

use polars::prelude::*;
use schemas::pg_layout::ViewLayout;
use sqlx::PgPool;

use super::BatchError;
use super::compute::BUCKET_START;

/// The file header: signature, flags (none), header extension length (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Appends one field: its length, then its bytes.
fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), BatchError> {
    let length = i32::try_from(bytes.len()).map_err(|_| BatchError::UnexpectedValue {
        column: "(any)".into(),
        value: format!("a value of {} bytes", bytes.len()),
    })?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A `numeric` in its binary form: base-10000 digits, most significant first, with the weight
/// of the first, a sign and no fractional digits. Trailing zero digits are left out (the weight
/// keeps the value), as PostgreSQL stores them.
fn numeric(value: i128) -> Vec<u8> {
    let mut magnitude = value.unsigned_abs();
    let mut digits: Vec<i16> = Vec::new();
    while magnitude > 0 {
        digits.push((magnitude % 10_000) as i16);
        magnitude /= 10_000;
    }
    let weight = digits.len() as i16 - 1;
    digits.reverse();
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let sign: u16 = if value < 0 { 0x4000 } else { 0 };
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.max(0).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // display scale
    for digit in digits {
        out.extend_from_slice(&digit.to_be_bytes());
    }
    out
}

/// Appends one field of `column` at `row`, as its PostgreSQL type `pg_type` receives it.
fn push_field(
    out: &mut Vec<u8>,
    column: &Column,
    row: usize,
    pg_type: &str,
) -> Result<(), BatchError> {
    let value = column.get(row)?;
    let unexpected = |value: &AnyValue| BatchError::UnexpectedValue {
        column: column.name().to_string(),
        value: format!("{value:?}"),
    };
    match (pg_type, &value) {
        (_, AnyValue::Null) => out.extend_from_slice(&(-1i32).to_be_bytes()),
        ("text", AnyValue::String(s)) => push_bytes(out, s.as_bytes())?,
        ("text", AnyValue::StringOwned(s)) => push_bytes(out, s.as_bytes())?,
        ("boolean", AnyValue::Boolean(b)) => push_bytes(out, &[u8::from(*b)])?,
        // A sketch: the extension's storage bytes.
        ("hll", AnyValue::Binary(bytes)) => push_bytes(out, bytes)?,
        ("hll", AnyValue::BinaryOwned(bytes)) => push_bytes(out, bytes)?,
        // A quantile sketch, already in PostgreSQL's binary array format
        // (`distinct::GroupSketch::stored`).
        ("bigint[]", AnyValue::Binary(bytes)) => push_bytes(out, bytes)?,
        ("bigint[]", AnyValue::BinaryOwned(bytes)) => push_bytes(out, bytes)?,
        // A sample: jsonb's binary format (`SampleSketch::to_pg_binary`).
        ("jsonb", AnyValue::Binary(bytes)) => push_bytes(out, bytes)?,
        ("jsonb", AnyValue::BinaryOwned(bytes)) => push_bytes(out, bytes)?,
        ("double precision", value) => {
            let float = value.extract::<f64>().ok_or_else(|| unexpected(value))?;
            push_bytes(out, &float.to_be_bytes())?
        }
        ("numeric", AnyValue::Int128(sum)) => push_bytes(out, &numeric(*sum))?,
        ("numeric", value) => {
            let integer = value.extract::<i64>().ok_or_else(|| unexpected(value))?;
            push_bytes(out, &numeric(i128::from(integer)))?
        }
        ("timestamptz", value) => {
            let micros = value.extract::<i64>().ok_or_else(|| unexpected(value))?;
            let since_2000 = micros
                .checked_sub(POSTGRES_EPOCH_MICROS)
                .ok_or_else(|| unexpected(value))?;
            push_bytes(out, &since_2000.to_be_bytes())?
        }
        ("bigint", value) => {
            let integer = value.extract::<i64>().ok_or_else(|| unexpected(value))?;
            push_bytes(out, &integer.to_be_bytes())?
        }
        (_, value) => return Err(unexpected(value)),
    }
    Ok(())
}

/// What a load did.
pub struct Loaded {
    /// Rows written.
    pub rows: u64,
    /// Time spent encoding the rows for COPY.
    pub encode_seconds: f64,
    /// Time spent in PostgreSQL's COPY (the load's time less the encoding).
    pub copy_seconds: f64,
}

/// Rows are sent to PostgreSQL in pieces of about this many bytes, so that a large view is
/// never held twice (as columns and as COPY data).
const PIECE_BYTES: usize = 4 << 20;

/// COPYs the rows of `columns` (each with its PostgreSQL type), each led by `run_id`, with
/// `statement` (a `COPY … FROM STDIN (FORMAT binary)`).
async fn copy_rows(
    pool: &PgPool,
    statement: &str,
    run_id: i64,
    columns: &[(&Column, &str)],
    height: usize,
) -> Result<Loaded, BatchError> {
    let fields = i16::try_from(columns.len() + 1).map_err(|_| BatchError::UnexpectedValue {
        column: "(all)".into(),
        value: format!("{} columns", columns.len() + 1),
    })?;
    let started = std::time::Instant::now();
    let mut encoding = std::time::Duration::ZERO;
    let mut connection = pool.acquire().await?;
    let mut copy = connection.copy_in_raw(statement).await?;
    let mut piece = Vec::with_capacity(PIECE_BYTES + 64 * 1024);
    piece.extend_from_slice(HEADER);
    let mut row = 0;
    while row < height {
        let encoding_started = std::time::Instant::now();
        while row < height && piece.len() < PIECE_BYTES {
            piece.extend_from_slice(&fields.to_be_bytes());
            push_bytes(&mut piece, &run_id.to_be_bytes())?;
            for (column, pg_type) in columns {
                push_field(&mut piece, column, row, pg_type)?;
            }
            row += 1;
        }
        encoding += encoding_started.elapsed();
        if row < height {
            copy.send(piece.as_slice()).await?;
            piece.clear();
        }
    }
    piece.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(piece).await?;
    let rows = copy.finish().await?;
    let encode_seconds = encoding.as_secs_f64();
    Ok(Loaded {
        rows,
        encode_seconds,
        copy_seconds: started.elapsed().as_secs_f64() - encode_seconds,
    })
}

/// COPYs the view's rows into its batch table under `run_id`.
pub async fn load(
    pool: &PgPool,
    layout: &ViewLayout,
    run_id: i64,
    frame: &DataFrame,
) -> Result<Loaded, BatchError> {
    let mut columns: Vec<(&Column, &str)> = vec![(frame.column(BUCKET_START)?, "timestamptz")];
    for column in &layout.group_columns {
        columns.push((frame.column(&column.name)?, column.pg_type));
    }
    for column in &layout.metric_columns {
        columns.push((frame.column(&column.name)?, column.pg_type));
    }
    let names: Vec<&str> = ["run_id", BUCKET_START]
        .into_iter()
        .chain(layout.group_names())
        .chain(layout.metric_names())
        .collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        layout.batch_table,
        names.join(", ")
    );
    copy_rows(pool, &statement, run_id, &columns, frame.height()).await
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use polars::prelude::*;
    use schemas::sketch::{Sketch, SketchParams, hash_text};
    use sqlx::PgPool;

    use super::{copy_rows, numeric};

    /// Every column type a batch table has, written by binary COPY and read back by
    /// PostgreSQL: the values it reads are the ones encoded (nulls, extremes, a sketch's bytes).
    #[sqlx::test(migrations = false)]
    async fn every_column_type_round_trips_through_binary_copy(pool: PgPool) {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS hll")
            .execute(&pool)
            .await
            .expect("the hll extension (scripts/services.sh installs postgresql-NN-hll)");
        sqlx::query(
            "CREATE TABLE t (run_id bigint, b timestamptz, s text, f boolean, i bigint, \
             d double precision, n numeric, m timestamptz, h hll)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let mut sketch = Sketch::new(SketchParams::default());
        for user in ["a", "b", "c"] {
            sketch.add_hash(hash_text(user));
        }
        let sketch = sketch.to_bytes();
        let frame = df!(
            "b" => [1_700_000_000_123_456i64, -1],
            "s" => [Some("quote \" comma , \\ é"), None],
            "f" => [Some(true), None],
            "i" => [Some(i64::MIN), Some(i64::MAX)],
            "d" => [Some(f64::INFINITY), Some(-0.5)],
            "m" => [None, Some(0i64)],
        )
        .unwrap();
        let sums = Column::from(Series::new(
            "n".into(),
            [Some(i128::MIN), Some(-12_345i128)],
        ));
        let sketches = Column::from(Series::new("h".into(), [Some(sketch.as_slice()), None]));
        let column = |name| frame.column(name).unwrap();
        let columns: Vec<(&Column, &str)> = vec![
            (column("b"), "timestamptz"),
            (column("s"), "text"),
            (column("f"), "boolean"),
            (column("i"), "bigint"),
            (column("d"), "double precision"),
            (&sums, "numeric"),
            (column("m"), "timestamptz"),
            (&sketches, "hll"),
        ];
        let loaded = copy_rows(&pool, "COPY t FROM STDIN (FORMAT binary)", 7, &columns, 2)
            .await
            .unwrap();
        assert_eq!(loaded.rows, 2);
        type Row = (
            i64,
            DateTime<Utc>,
            Option<String>,
            Option<bool>,
            Option<i64>,
            Option<f64>,
            Option<String>,
            Option<DateTime<Utc>>,
            Option<String>,
        );
        let read: Vec<Row> =
            sqlx::query_as("SELECT run_id, b, s, f, i, d, n::text, m, h::text FROM t ORDER BY i")
                .fetch_all(&pool)
                .await
                .unwrap();
        let hex: String = sketch.iter().map(|b| format!("{b:02x}")).collect();
        let time = |micros| DateTime::from_timestamp_micros(micros).unwrap();
        assert_eq!(
            read,
            vec![
                (
                    7,
                    time(1_700_000_000_123_456),
                    Some("quote \" comma , \\ é".into()),
                    Some(true),
                    Some(i64::MIN),
                    Some(f64::INFINITY),
                    Some(i128::MIN.to_string()),
                    None,
                    Some(format!("\\x{hex}")),
                ),
                (
                    7,
                    time(-1),
                    None,
                    None,
                    Some(i64::MAX),
                    Some(-0.5),
                    Some("-12345".into()),
                    Some(time(0)),
                    None,
                ),
            ]
        );
    }

    /// PostgreSQL's own `numeric_send` output for these values (`SELECT numeric_send(v)`).
    #[test]
    fn integers_become_postgres_binary_numerics() {
        let hex = |value: i128| {
            numeric(value)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(hex(0), "0000000000000000");
        assert_eq!(hex(1), "00010000000000000001");
        assert_eq!(hex(-12_345), "000200014000000000010929");
        assert_eq!(hex(100_000_000), "00010002000000000001");
        assert_eq!(
            hex(i128::MAX),
            "000a00090000000000aa0583209a01d5090d0c601c871bf620da165f"
        );
        assert_eq!(
            hex(i128::MIN),
            "000a00094000000000aa0583209a01d5090d0c601c871bf620da1660"
        );
    }
}
