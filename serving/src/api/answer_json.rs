//! Writing a merged read's rows as JSON from their typed cells: group values and metrics as
//! JSON strings, numbers and booleans, timestamps as RFC 3339 UTC, NULL as null.

use std::fmt::Write as _;

use chrono::SecondsFormat;
use merged_read::{Cell, MergedAnswer, MergedRows};

use super::error::ApiError;

fn push<T: serde::Serialize + ?Sized>(json: &mut String, value: &T) -> Result<(), ApiError> {
    json.push_str(
        &serde_json::to_string(value)
            .map_err(|e| ApiError::Internal(format!("encoding a value: {e}")))?,
    );
    Ok(())
}

/// Writes `rows` as a JSON array of objects named by column.
fn write_rows(json: &mut String, rows: &MergedRows) -> Result<(), ApiError> {
    // `"name":` per column, once per answer.
    let keys: Vec<String> = rows
        .columns()
        .iter()
        .map(|c| format!("{}:", serde_json::Value::from(c.name.as_str())))
        .collect();
    json.push('[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('{');
        for (c, key) in keys.iter().enumerate() {
            if c > 0 {
                json.push(',');
            }
            json.push_str(key);
            match row.cell(c)? {
                Cell::Null => json.push_str("null"),
                Cell::Int(v) => {
                    let _ = write!(json, "{v}");
                }
                Cell::Float(v) => push(json, &v)?,
                // The exact integer, as PostgreSQL prints it.
                Cell::IntegerSum(v) => json.push_str(v),
                Cell::Bool(v) => json.push_str(if v { "true" } else { "false" }),
                Cell::Time(t) => push(json, &t.to_rfc3339_opts(SecondsFormat::AutoSi, true))?,
                Cell::Text(v) => push(json, v)?,
                // PostgreSQL's rendering of a jsonb value is JSON.
                Cell::Json(v) => json.push_str(v),
            }
        }
        json.push('}');
    }
    json.push(']');
    Ok(())
}

/// One request's answer, its rows written as JSON (what the answer cache keeps).
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

impl Answer {
    /// `answer` with its rows written as JSON.
    pub fn of(answer: MergedAnswer) -> Result<Self, ApiError> {
        let columns = answer.rows.columns().len();
        let mut json = String::with_capacity(64 + answer.rows.len() * 24 * (columns + 1));
        write_rows(&mut json, &answer.rows)?;
        Ok(Self {
            rows: json,
            truncated: answer.truncated,
            batch: answer.provenance.batch,
            speed: answer.provenance.speed,
            backfilling: answer.provenance.backfilling,
        })
    }
}
