//! `braid dimensions load NAME`: reads the dimension's file whole (CSV with a header row, or
//! Parquet) and replaces the table's rows in one transaction. A row that does not fit refuses
//! the whole load, naming the row and the column: the table keeps its previous rows.

use std::path::{Path, PathBuf};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schemas::dimension::{Dimension, DimensionSource, VALID_FROM};
use sqlx::PgPool;

use crate::rows::{DimensionRows, RawValue, RowError};

/// Why a load failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dimension is not loaded from a file.
    #[error(
        "dimension `{0}` is not loaded from a file (its source is a PostgreSQL table or a Kafka topic)"
    )]
    NotAFile(String),
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file lacks a column.
    #[error(
        "{path} has no column `{column}` (dimension `{dimension}` needs its key and every attribute)"
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The dimension.
        dimension: String,
        /// The column.
        column: String,
    },
    /// A row does not fit.
    #[error("{path}: {source}; nothing was loaded")]
    Row {
        /// The file.
        path: PathBuf,
        /// The row's error.
        source: RowError,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Loads `dimension`'s file (relative paths from `base`); returns the rows written.
pub async fn load(pool: &PgPool, dimension: &Dimension, base: &Path) -> Result<usize, LoadError> {
    let rows = match &dimension.source {
        DimensionSource::Csv(path) => read_csv(dimension, &base.join(path))?,
        DimensionSource::Parquet(path) => read_parquet(dimension, &base.join(path))?,
        _ => return Err(LoadError::NotAFile(dimension.name.clone())),
    };
    crate::store::replace_all(
        pool,
        dimension,
        &rows.keys,
        &rows.attributes,
        &rows.valid_from,
    )
    .await?;
    Ok(rows.len())
}

/// The file's columns Braid reads: the key, the attributes, and a versioned dimension's
/// `valid_from` last.
fn columns_of(dimension: &Dimension) -> Vec<&str> {
    std::iter::once(dimension.key.as_str())
        .chain(dimension.attributes.iter().map(|a| a.name.as_str()))
        .chain(dimension.versioned.then_some(VALID_FROM))
        .collect()
}

fn read_csv(dimension: &Dimension, path: &Path) -> Result<DimensionRows, LoadError> {
    let failed = |reason: String| LoadError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| failed(e.to_string()))?;
    let header = reader.headers().map_err(|e| failed(e.to_string()))?.clone();
    let positions = columns_of(dimension)
        .into_iter()
        .map(|c| {
            header
                .iter()
                .position(|h| h.trim() == c)
                .ok_or_else(|| LoadError::MissingColumn {
                    path: path.to_path_buf(),
                    dimension: dimension.name.clone(),
                    column: c.to_string(),
                })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let mut rows = DimensionRows::new(dimension);
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|e| failed(e.to_string()))?;
        let cell = |i: usize| match record.get(positions[i]) {
            None | Some("") => RawValue::Null,
            Some(text) => RawValue::Text(text),
        };
        let attributes: Vec<RawValue<'_>> = (1..=dimension.attributes.len()).map(cell).collect();
        let valid_from = if dimension.versioned {
            cell(positions.len() - 1)
        } else {
            RawValue::Null
        };
        rows.push(n + 1, dimension, cell(0), &attributes, valid_from)
            .map_err(|source| LoadError::Row {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(rows)
}

fn read_parquet(dimension: &Dimension, path: &Path) -> Result<DimensionRows, LoadError> {
    let failed = |reason: String| LoadError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| failed(e.to_string()))?;
    let mut rows = DimensionRows::new(dimension);
    let mut row = 0;
    for batch in reader {
        let batch = batch.map_err(|e| failed(e.to_string()))?;
        let columns = columns_of(dimension)
            .into_iter()
            .map(|c| {
                batch
                    .column_by_name(c)
                    .cloned()
                    .ok_or_else(|| LoadError::MissingColumn {
                        path: path.to_path_buf(),
                        dimension: dimension.name.clone(),
                        column: c.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            row += 1;
            let values: Vec<RawValue<'_>> = columns
                .iter()
                .zip(columns_of(dimension))
                .map(|(c, name)| {
                    value_at(c.as_ref(), i).map_err(|reason| format!("column `{name}`: {reason}"))
                })
                .collect::<Result<_, _>>()
                .map_err(|reason| failed(format!("row {row}, {reason}")))?;
            let attributes = &values[1..=dimension.attributes.len()];
            let valid_from = values
                .get(dimension.attributes.len() + 1)
                .cloned()
                .unwrap_or(RawValue::Null);
            rows.push(row, dimension, values[0].clone(), attributes, valid_from)
                .map_err(|source| LoadError::Row {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
    }
    Ok(rows)
}

fn value_at(column: &dyn Array, i: usize) -> Result<RawValue<'_>, String> {
    if column.is_null(i) {
        return Ok(RawValue::Null);
    }
    Ok(match column.data_type() {
        DataType::Utf8 => RawValue::Text(column.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => RawValue::Text(column.as_string::<i64>().value(i)),
        DataType::Utf8View => RawValue::Text(column.as_string_view().value(i)),
        DataType::Int8 => RawValue::Int(column.as_primitive::<Int8Type>().value(i).into()),
        DataType::Int16 => RawValue::Int(column.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => RawValue::Int(column.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => RawValue::Int(column.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => RawValue::Int(column.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => RawValue::Int(column.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => RawValue::Int(column.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt64 => RawValue::Int(
            i64::try_from(column.as_primitive::<UInt64Type>().value(i))
                .map_err(|_| "a u64 past i64".to_string())?,
        ),
        DataType::Float32 => RawValue::Float(column.as_primitive::<Float32Type>().value(i).into()),
        DataType::Float64 => RawValue::Float(column.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => RawValue::Bool(column.as_boolean().value(i)),
        // Timestamps and dates (what pandas, pyarrow and Spark write for a datetime): a
        // versioned dimension's valid_from.
        DataType::Timestamp(unit, _) => {
            let (value, micros) = match unit {
                TimeUnit::Second => {
                    let v = column.as_primitive::<TimestampSecondType>().value(i);
                    (v, v.checked_mul(1_000_000))
                }
                TimeUnit::Millisecond => {
                    let v = column.as_primitive::<TimestampMillisecondType>().value(i);
                    (v, v.checked_mul(1_000))
                }
                TimeUnit::Microsecond => {
                    let v = column.as_primitive::<TimestampMicrosecondType>().value(i);
                    (v, Some(v))
                }
                TimeUnit::Nanosecond => {
                    let v = column.as_primitive::<TimestampNanosecondType>().value(i);
                    (v, Some(v.div_euclid(1_000)))
                }
            };
            RawValue::Micros(
                micros
                    .ok_or_else(|| format!("the timestamp {value} ({unit:?}) is out of range"))?,
            )
        }
        DataType::Date32 => RawValue::Micros(
            i64::from(column.as_primitive::<Date32Type>().value(i)) * 86_400_000_000,
        ),
        other => return Err(format!("a column of type {other} is not a dimension value")),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
    use parquet::arrow::ArrowWriter;
    use schemas::BraidConfig;

    use super::*;

    fn regions(source: &str) -> Dimension {
        let extra = format!(
            "[[dimensions]]\nname = \"regions\"\nkey = \"page\"\nversioned = true\n\
             attributes = [{{ name = \"region\", type = \"string\" }}]\nsource = {{ {source} }}\n"
        );
        BraidConfig::load_from(
            Some((
                "test.toml",
                &format!("{}\n{extra}", include_str!("../../braid.toml")),
            )),
            std::iter::empty(),
        )
        .unwrap()
        .dimensions
        .remove(0)
    }

    #[test]
    fn versions_load_from_parquet_timestamps_and_csv_text() {
        let folder = std::env::temp_dir().join(format!("braid-load-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let parquet = folder.join("regions.parquet");
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("page", Arc::new(StringArray::from(vec!["/a", "/a"]))),
            ("region", Arc::new(StringArray::from(vec!["eu", "us"]))),
            (
                "valid_from",
                Arc::new(
                    TimestampMillisecondArray::from(vec![1_767_225_600_000, 1_767_229_200_000])
                        .with_timezone("UTC"),
                ),
            ),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(&parquet).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let rows = read_parquet(&regions("file = \"regions.parquet\""), &parquet).unwrap();
        let starts: Vec<String> = rows.valid_from.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            starts,
            ["2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00"]
        );

        let csv = folder.join("regions.csv");
        std::fs::write(
            &csv,
            "page,region,valid_from\n/a,eu,2026-01-01T00:00:00Z\n/a,us,20260101\n",
        )
        .unwrap();
        let refused = read_csv(&regions("csv = \"regions.csv\""), &csv)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("row 2, column `valid_from`"),
            "names the row and column: {refused}"
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
