//! Bulk-loading a computed view into its batch table with COPY, under a new run id.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat};
use polars::prelude::*;
use schemas::pg_layout::ViewLayout;
use sqlx::PgPool;

use super::BatchError;
use super::compute::BUCKET_START;

fn timestamp(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros).map_or_else(
        || micros.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Micros, true),
    )
}

/// Appends bytes as PostgreSQL's hex text form: `\x` and two digits per byte.
fn push_hex(line: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    line.reserve(2 + 2 * bytes.len());
    line.push_str("\\x");
    for &byte in bytes {
        line.push(char::from(DIGITS[usize::from(byte >> 4)]));
        line.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// Appends one CSV field: strings always quoted (so an empty string is not NULL), NULL empty.
fn push_field(
    line: &mut String,
    column: &Column,
    row: usize,
    pg_type: &str,
) -> Result<(), BatchError> {
    let value = column.get(row)?;
    match value {
        AnyValue::Null => {}
        AnyValue::String(s) => {
            line.push('"');
            line.push_str(&s.replace('"', "\"\""));
            line.push('"');
        }
        AnyValue::StringOwned(s) => {
            line.push('"');
            line.push_str(&s.replace('"', "\"\""));
            line.push('"');
        }
        AnyValue::Boolean(b) => line.push(if b { 't' } else { 'f' }),
        AnyValue::Int128(v) => {
            let _ = write!(line, "{v}");
        }
        AnyValue::Float64(f) if f.is_infinite() => {
            line.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        AnyValue::Float64(f) => {
            let _ = write!(line, "{f}");
        }
        // An hll sketch: the extension's text form, \x and hex digits.
        AnyValue::Binary(bytes) => push_hex(line, bytes),
        AnyValue::BinaryOwned(bytes) => push_hex(line, &bytes),
        other if pg_type == "timestamptz" => {
            let micros = other
                .extract::<i64>()
                .ok_or_else(|| BatchError::UnexpectedValue {
                    column: column.name().to_string(),
                    value: format!("{other:?}"),
                })?;
            line.push_str(&timestamp(micros));
        }
        other => {
            let integer = other
                .extract::<i64>()
                .ok_or_else(|| BatchError::UnexpectedValue {
                    column: column.name().to_string(),
                    value: format!("{other:?}"),
                })?;
            let _ = write!(line, "{integer}");
        }
    }
    Ok(())
}

/// What a load did.
pub struct Loaded {
    /// Rows written.
    pub rows: u64,
    /// Time spent writing the CSV text.
    pub csv_seconds: f64,
    /// Time spent in PostgreSQL's COPY.
    pub copy_seconds: f64,
}

/// COPYs the view's rows into its batch table under `run_id`.
pub async fn load(
    pool: &PgPool,
    layout: &ViewLayout,
    run_id: i64,
    frame: &DataFrame,
) -> Result<Loaded, BatchError> {
    let groups: Vec<&str> = layout.group_names();
    let metrics: Vec<(&str, &str)> = layout
        .metric_columns
        .iter()
        .map(|c| (c.name.as_str(), c.pg_type))
        .collect();
    let mut columns: Vec<(&Column, &str)> = vec![(frame.column(BUCKET_START)?, "timestamptz")];
    for (name, column) in layout.group_columns.iter().map(|c| (c.name.as_str(), c)) {
        columns.push((frame.column(name)?, column.pg_type));
    }
    for (name, pg_type) in &metrics {
        columns.push((frame.column(name)?, pg_type));
    }
    let formatting = std::time::Instant::now();
    let mut csv = String::with_capacity(frame.height() * 64);
    for row in 0..frame.height() {
        let _ = write!(csv, "{run_id}");
        for (column, pg_type) in &columns {
            csv.push(',');
            push_field(&mut csv, column, row, pg_type)?;
        }
        csv.push('\n');
    }
    let names: Vec<&str> = std::iter::once("run_id")
        .chain(std::iter::once("bucket_start"))
        .chain(groups)
        .chain(metrics.iter().map(|(n, _)| *n))
        .collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN (FORMAT csv)",
        layout.batch_table,
        names.join(", ")
    );
    let csv_seconds = formatting.elapsed().as_secs_f64();
    let copying = std::time::Instant::now();
    let mut connection = pool.acquire().await?;
    let mut copy = connection.copy_in_raw(&statement).await?;
    copy.send(csv.into_bytes()).await?;
    Ok(Loaded {
        rows: copy.finish().await?,
        csv_seconds,
        copy_seconds: copying.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::push_hex;

    #[test]
    fn bytes_become_postgres_hex_text() {
        let mut line = String::from("1,");
        push_hex(&mut line, &[0x00, 0x0f, 0xab, 0xff, 0x10]);
        assert_eq!(line, "1,\\x000fabff10");
        let mut empty = String::new();
        push_hex(&mut empty, &[]);
        assert_eq!(empty, "\\x");
    }
}
