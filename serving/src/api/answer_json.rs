//! Rendering answer rows as JSON from PostgreSQL's typed values: group values and metrics as
//! JSON strings, numbers and booleans, timestamps as RFC 3339 UTC, NULL as null.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::error::ApiError;

/// One output column of the answer: its name (a validated identifier) and PostgreSQL type.
#[derive(Debug, Clone)]
pub struct OutputColumn {
    /// The name.
    pub name: String,
    /// Its PostgreSQL type, as in `schemas::pg_layout`.
    pub pg_type: &'static str,
    /// `"name":`, ready to write.
    pub json_key: String,
}

impl OutputColumn {
    /// The type the column has on the wire: `numeric` sums travel as text (sqlx has no i128),
    /// and are written into the JSON as the exact integer they are.
    pub fn wire_type(&self) -> &'static str {
        match self.pg_type {
            "numeric" => "text",
            other => other,
        }
    }

    /// A column named `name` of PostgreSQL type `pg_type`.
    pub fn new(name: &str, pg_type: &'static str) -> Self {
        Self {
            name: name.to_string(),
            pg_type,
            json_key: format!("{}:", serde_json::Value::from(name)),
        }
    }
}

fn push<T: serde::Serialize>(json: &mut String, value: Option<T>) -> Result<(), ApiError> {
    match value {
        Some(value) => json.push_str(
            &serde_json::to_string(&value)
                .map_err(|e| ApiError::Internal(format!("encoding a value: {e}")))?,
        ),
        None => json.push_str("null"),
    }
    Ok(())
}

fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Writes the object of `row`, whose output columns start at `first`.
pub fn write_row(
    json: &mut String,
    row: &PgRow,
    columns: &[OutputColumn],
    first: usize,
) -> Result<(), ApiError> {
    json.push('{');
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&column.json_key);
        let index = first + i;
        match column.pg_type {
            "bigint" => match row.try_get::<Option<i64>, _>(index)? {
                Some(v) => {
                    let _ = write!(json, "{v}");
                }
                None => json.push_str("null"),
            },
            "double precision" => push(json, row.try_get::<Option<f64>, _>(index)?)?,
            "numeric" => match row.try_get::<Option<String>, _>(index)? {
                // An integer sum, as PostgreSQL prints it: digits with an optional sign.
                Some(v) if is_integer_text(&v) => json.push_str(&v),
                Some(v) => {
                    return Err(ApiError::Internal(format!(
                        "column {} holds `{v}`, not an integer sum",
                        column.name
                    )));
                }
                None => json.push_str("null"),
            },
            "boolean" => push(json, row.try_get::<Option<bool>, _>(index)?)?,
            "timestamptz" => push(
                json,
                row.try_get::<Option<DateTime<Utc>>, _>(index)?
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            )?,
            _ => push(json, row.try_get::<Option<String>, _>(index)?)?,
        }
    }
    json.push('}');
    Ok(())
}

/// One request's answer.
#[derive(Debug)]
pub struct Answer {
    /// The rows, a JSON array of objects named by output column.
    pub rows: String,
    /// Whether more rows matched than the limit let through.
    pub truncated: bool,
    /// The active batch run (`run_id`, `covered_epoch`, `delta_version`, `finished_at`) or null.
    pub batch: Option<String>,
    /// The speed layer's stored positions and newest event time.
    pub speed: String,
    /// Whether the view's definition still lacks history no batch run has covered yet.
    pub backfilling: bool,
}
