//! Time travel: a view computed from the Delta table as it was at a version or a time, written
//! to a Parquet or CSV file. Live views and runs are untouched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use schemas::view::View;

use super::compute::{BUCKET_START, compute_view, records_except_refused};
use super::error::BatchError;
use crate::lake::{AsOf, Lake};
use schemas::position::{Offset, Partition};

/// What a time-travel computation read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsOfOutcome {
    /// The version read.
    pub version: i64,
    /// Records in that version.
    pub records: u64,
    /// Rows written to the file.
    pub rows: u64,
}

/// Computes `view` over every record of the table at `as_of` (less the positions the speed
/// layer's database refused, `refused`) and writes it to `out` (`.parquet` or `.csv`, chosen by
/// the extension). Rows are sorted by group and bucket.
pub async fn compute_as_of(
    lake: &Lake,
    view: &View,
    as_of: AsOf,
    refused: &BTreeMap<Partition, Vec<Offset>>,
    out: &Path,
) -> Result<AsOfOutcome, BatchError> {
    let format = OutputFormat::of(out)?;
    let pinned = lake.pinned_as_of(as_of).await?;
    let version = pinned.version.unwrap_or(-1);
    tracing::info!(
        version,
        files = pinned.len(),
        "reading the Delta table as of this version"
    );
    let (view, schema, out, refused) = (
        view.clone(),
        lake.schema().clone(),
        out.to_path_buf(),
        refused.clone(),
    );
    tokio::task::spawn_blocking(move || -> Result<AsOfOutcome, BatchError> {
        if pinned.is_empty() {
            return Err(BatchError::EmptyVersion { version });
        }
        let records = records_except_refused(&pinned, &refused)?;
        let counted = super::compute::collect_streaming(records.clone().select([len()]))?;
        let records_read = counted.column("len")?.get(0)?.extract::<u64>().unwrap_or(0);
        let mut keys: Vec<&str> = view.group_by.iter().map(String::as_str).collect();
        keys.push(BUCKET_START);
        let mut frame = compute_view(records, &view, &schema)?
            .sort(keys, SortMultipleOptions::default().with_nulls_last(true))?;
        let rows = frame.height() as u64;
        format.write(&mut frame, &out)?;
        Ok(AsOfOutcome {
            version,
            records: records_read,
            rows,
        })
    })
    .await?
}

/// The output file's format.
#[derive(Debug, Clone, Copy)]
enum OutputFormat {
    Parquet,
    Csv,
}

impl OutputFormat {
    fn of(out: &Path) -> Result<Self, BatchError> {
        match out.extension().and_then(|e| e.to_str()) {
            Some("parquet") => Ok(Self::Parquet),
            Some("csv") => Ok(Self::Csv),
            _ => Err(BatchError::OutputFormat {
                path: out.display().to_string(),
            }),
        }
    }

    fn write(self, frame: &mut DataFrame, out: &Path) -> Result<(), BatchError> {
        let io = |source: std::io::Error| BatchError::WriteOutput {
            path: out.display().to_string(),
            source,
        };
        match self {
            Self::Parquet => {
                let mut timed = frame
                    .clone()
                    .lazy()
                    .with_column(
                        col(BUCKET_START).cast(DataType::Datetime(TimeUnit::Microseconds, None)),
                    )
                    .collect()?;
                ParquetWriter::new(std::fs::File::create(out).map_err(io)?).finish(&mut timed)?;
            }
            Self::Csv => std::fs::write(out, csv_text(frame)?).map_err(io)?,
        }
        Ok(())
    }
}

/// CSV with a header; bucket_start as RFC 3339 UTC; nulls as empty fields; text quoted when
/// it holds a comma, a quote or a line break.
fn csv_text(frame: &DataFrame) -> Result<String, BatchError> {
    let columns = frame.columns();
    let mut text = columns
        .iter()
        .map(|c| c.name().to_string())
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    for row in 0..frame.height() {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            match column.get(row)? {
                AnyValue::Null => {}
                AnyValue::String(s) => push_text(&mut text, s),
                AnyValue::StringOwned(s) => push_text(&mut text, s.as_str()),
                AnyValue::Int64(v) if column.name().as_str() == BUCKET_START => {
                    let time = DateTime::<Utc>::from_timestamp_micros(v).unwrap_or_default();
                    let _ = write!(
                        text,
                        "{}",
                        time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    );
                }
                other => {
                    let _ = write!(text, "{other}");
                }
            }
        }
        text.push('\n');
    }
    Ok(text)
}

fn push_text(text: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        text.push('"');
        text.push_str(&value.replace('"', "\"\""));
        text.push('"');
    } else {
        text.push_str(value);
    }
}
