//! What a batch, an as-of computation and a republish read: the files of one version of the
//! Delta table, scanned with that version's schema, and only the records of the configured
//! topic.
//!
//! The schema comes from the Delta snapshot, not from whichever file Polars lists first: after
//! an optional field is added, old files lack its column, and a scan that took its schema from
//! an old file would fail or drop the column depending on file order. The topic filter keeps
//! another topic's records out when `kafka.topic` changes but `lake.uri` does not: their
//! partition numbers and offsets would otherwise be counted as this topic's.
//!
//! Files on S3 are read by Polars' own object-store client with the table's storage options
//! (and, like delta-rs, the `AWS_*` environment variables).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::{DataType as DeltaType, PrimitiveType};
use polars::prelude::cloud::CloudOptions;
use polars::prelude::*;
use schemas::arrow::TOPIC;

use super::{Lake, LakeError};

/// Which state of the table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// A table version.
    Version(i64),
    /// The latest version committed at or before this instant.
    Timestamp(DateTime<Utc>),
}

impl Lake {
    /// The files and schema of the version `table` is loaded at, and the lake's topic.
    pub fn pinned(&self, table: &DeltaTable) -> Result<PinnedFiles, LakeError> {
        PinnedFiles::of(table, self.topic(), self.storage_options())
    }

    /// The files of the table as it was at `as_of` (time travel).
    pub async fn pinned_as_of(&self, as_of: AsOf) -> Result<PinnedFiles, LakeError> {
        let mut table = self.open().await?;
        match as_of {
            AsOf::Version(version) => table.load_version(version as _).await?,
            AsOf::Timestamp(time) => table.load_with_datetime(time).await?,
        }
        self.pinned(&table)
    }
}

/// The files of one table version, with its schema and the topic whose records count.
#[derive(Debug, Clone)]
pub struct PinnedFiles {
    /// The table version (`None`: the table has no version yet).
    pub version: Option<i64>,
    files: Vec<String>,
    schema: SchemaRef,
    topic: String,
    /// How Polars reaches files on S3 (`None` for local files).
    cloud: Option<CloudOptions>,
}

impl PinnedFiles {
    /// The files and schema of the version `table` is loaded at; `storage_options` are the
    /// table's (for files on S3).
    fn of(
        table: &DeltaTable,
        topic: &str,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self, LakeError> {
        let files: Vec<String> = table.get_file_uris()?.collect();
        let cloud = files
            .first()
            .filter(|f| super::store::is_object_store(f))
            .map(|_| s3_options(storage_options));
        let mut schema = Schema::default();
        for field in table.snapshot()?.schema().fields() {
            schema.insert(
                field.name().as_str().into(),
                polars_type(field.name(), field.data_type())?,
            );
        }
        Ok(Self {
            version: table.version().map(|v| v as i64),
            files,
            schema: Arc::new(schema),
            topic: topic.to_string(),
            cloud,
        })
    }

    /// Whether the version holds no data files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// How many data files the version holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// The files in another order (tests: the order must not matter).
    #[cfg(test)]
    pub fn reorder(&mut self, order: impl FnOnce(&mut Vec<String>)) {
        order(&mut self.files);
    }

    /// A lazy scan of the topic's records: partition values are not read from the paths, and
    /// columns a file lacks read as null.
    pub fn scan(&self) -> PolarsResult<LazyFrame> {
        let args = ScanArgsParquet {
            hive_options: HiveOptions {
                enabled: Some(false),
                ..Default::default()
            },
            schema: Some(self.schema.clone()),
            allow_missing_columns: true,
            cloud_options: self.cloud.clone(),
            ..Default::default()
        };
        let paths = self
            .files
            .iter()
            .map(|f| PlRefPath::from(f.as_str()))
            .collect();
        Ok(LazyFrame::scan_parquet_files(paths, args)?
            .filter(col(TOPIC).eq(lit(self.topic.as_str()))))
    }
}

/// Polars' S3 options from the table's storage options ([`super::store::s3_config`]).
pub fn s3_options(storage_options: &HashMap<String, String>) -> CloudOptions {
    CloudOptions::default().with_aws(super::store::s3_config(storage_options))
}

/// The Polars type of a Delta column of the types the sink writes.
fn polars_type(column: &str, delta: &DeltaType) -> Result<DataType, LakeError> {
    let DeltaType::Primitive(primitive) = delta else {
        return Err(LakeError::UnreadableColumn {
            column: column.to_string(),
            delta_type: format!("{delta:?}"),
        });
    };
    Ok(match primitive {
        PrimitiveType::String => DataType::String,
        PrimitiveType::Long => DataType::Int64,
        PrimitiveType::Integer => DataType::Int32,
        PrimitiveType::Double => DataType::Float64,
        PrimitiveType::Boolean => DataType::Boolean,
        PrimitiveType::Binary => DataType::Binary,
        PrimitiveType::Date => DataType::Date,
        PrimitiveType::Timestamp => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        PrimitiveType::TimestampNtz => DataType::Datetime(TimeUnit::Microseconds, None),
        other => {
            return Err(LakeError::UnreadableColumn {
                column: column.to_string(),
                delta_type: format!("{other:?}"),
            });
        }
    })
}
