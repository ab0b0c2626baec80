//! Table maintenance: compaction of small files and vacuum.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::{ArrayRef, Date32Array, new_null_array};
use deltalake::arrow::datatypes::SchemaRef as ArrowSchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use object_store::ObjectStoreExt as _;

use super::{Lake, LakeError};

/// What a vacuum did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacuumReport {
    /// The table version after the vacuum.
    pub version: Option<i64>,
    /// Files deleted.
    pub files_deleted: usize,
}

impl Lake {
    /// Deletes files that no version younger than `retention` needs, and files no version
    /// ever referenced (written by a sink that crashed before committing) once they are older
    /// than `retention`. Files of `keep_versions` (versions pinned by batch runs) are kept.
    pub async fn vacuum(
        &self,
        retention: Duration,
        keep_versions: &[u64],
    ) -> Result<VacuumReport, LakeError> {
        vacuum(self.open().await?, retention, keep_versions).await
    }

    /// Rewrites the small files of each partition that has at least [`MIN_SMALL_FILES`] of
    /// them into larger ones (bins of at most [`SMALL_FILE_BYTES`] together), in one commit that removes the old files (`dataChange = false`):
    /// the rows, their lineage and the sink's application transactions stay exactly as they
    /// were. A commit that races another is retried; files of a lost attempt are orphans that
    /// vacuum removes.
    pub async fn compact(
        &self,
        writer_properties: WriterProperties,
    ) -> Result<CompactReport, LakeError> {
        let table = self.open().await?;
        compact(
            table,
            &self.schema().delta_arrow_schema(),
            writer_properties,
        )
        .await
    }
}

async fn vacuum(
    table: deltalake::DeltaTable,
    retention: Duration,
    keep_versions: &[u64],
) -> Result<VacuumReport, LakeError> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (table, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_keep_versions(keep_versions)
        .with_mode(VacuumMode::Full)
        .with_dry_run(false)
        .await?;
    tracing::info!(
        files_deleted = metrics.files_deleted.len(),
        "vacuumed the Delta table"
    );
    Ok(VacuumReport {
        version: table.version().map(|v| v as i64),
        files_deleted: metrics.files_deleted.len(),
    })
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// The table version after the compaction (unchanged if nothing was compacted).
    pub version: Option<i64>,
    /// Small files replaced.
    pub files_removed: usize,
    /// Files written in their place.
    pub files_added: usize,
}

/// Files below this size count as small, and compaction joins small files into files of at
/// most about this size: it reads each file it joins whole (one at a time) and writes a bin's
/// rows as one file, so this bounds its memory. (At 32 MB, and joining every small file of a
/// partition into one, a compaction's memory followed the day's data: the soak's scheduler
/// peaked during compactions, docs/reliability.md.)
pub const SMALL_FILE_BYTES: i64 = 8 * 1024 * 1024;
/// A partition is compacted once this many of its small files can be joined (in bins of two
/// or more).
pub const MIN_SMALL_FILES: usize = 4;

/// The batch with the partition column put back (Parquet files of a partitioned Delta table do
/// not hold it) and columns added after the file was written filled with nulls.
fn with_partition_column(
    batch: &RecordBatch,
    schema: &ArrowSchemaRef,
    event_date: i32,
) -> Result<RecordBatch, LakeError> {
    let rows = batch.num_rows();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| {
            if field.name() == schemas::arrow::EVENT_DATE {
                Arc::new(Date32Array::from(vec![event_date; rows])) as ArrayRef
            } else {
                batch
                    .column_by_name(field.name())
                    .cloned()
                    .unwrap_or_else(|| new_null_array(field.data_type(), rows))
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A partition's small files in bins of at most [`SMALL_FILE_BYTES`] together, each to become
/// one file: smallest first, each bin filled while the next file fits. A bin of one file
/// would only rewrite it, so it is left out.
fn bins<F>(mut files: Vec<F>, size: impl Fn(&F) -> i64) -> Vec<Vec<F>> {
    files.sort_by_key(&size);
    let mut bins: Vec<Vec<F>> = Vec::new();
    let mut bytes = 0i64;
    for file in files {
        let file_bytes = size(&file).max(0);
        match bins.last_mut() {
            Some(bin) if bytes.saturating_add(file_bytes) <= SMALL_FILE_BYTES => {
                bytes += file_bytes;
                bin.push(file);
            }
            _ => {
                bytes = file_bytes;
                bins.push(vec![file]);
            }
        }
    }
    bins.retain(|bin| bin.len() > 1);
    bins
}

fn days_since_epoch(date: &str) -> Option<i32> {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days() as i32)
}

async fn compact(
    mut table: deltalake::DeltaTable,
    arrow_schema: &ArrowSchemaRef,
    writer_properties: WriterProperties,
) -> Result<CompactReport, LakeError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        table.update_state().await?;
        let snapshot = table.snapshot()?;
        let mut small: BTreeMap<String, Vec<LogicalFileView>> = BTreeMap::new();
        for file in snapshot.log_data().iter() {
            if file.size() < SMALL_FILE_BYTES {
                let date = file
                    .partition_values_map()
                    .get(schemas::arrow::EVENT_DATE)
                    .cloned()
                    .flatten()
                    .unwrap_or_default();
                small.entry(date).or_default().push(file);
            }
        }
        // Files that fit no bin (near the bound) do not count: they would make a compaction
        // rewrite one growing file for each new small file.
        let small: BTreeMap<String, Vec<Vec<LogicalFileView>>> = small
            .into_iter()
            .map(|(date, files)| (date, bins(files, LogicalFileView::size)))
            .filter(|(_, bins)| bins.iter().map(Vec::len).sum::<usize>() >= MIN_SMALL_FILES)
            .collect();
        if small.is_empty() {
            return Ok(CompactReport {
                version: table.version().map(|v| v as i64),
                ..Default::default()
            });
        }
        let store = table.object_store();
        let mut writer =
            RecordBatchWriter::for_table(&table)?.with_writer_properties(writer_properties.clone());
        let mut actions: Vec<Action> = Vec::new();
        let mut added = Vec::new();
        for (date, bins) in &small {
            let days = days_since_epoch(date).ok_or_else(|| LakeError::BadPartitionValue {
                column: schemas::arrow::EVENT_DATE,
                value: date.clone(),
            })?;
            for bin in bins {
                for file in bin {
                    let bytes = store
                        .get(&file.object_store_path())
                        .await
                        .map_err(deltalake::DeltaTableError::from)?
                        .bytes()
                        .await
                        .map_err(deltalake::DeltaTableError::from)?;
                    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .map_err(deltalake::DeltaTableError::from)?
                        .build()
                        .map_err(deltalake::DeltaTableError::from)?;
                    for batch in reader {
                        writer
                            .write(with_partition_column(&batch?, arrow_schema, days)?)
                            .await?;
                    }
                    actions.push(Action::Remove(file.remove_action(false)));
                }
                // The bin's file is written now, not held in memory with the next bin's.
                added.extend(writer.flush().await?);
            }
        }
        let removed = actions.len();
        let files_added = added.len();
        actions.extend(added.into_iter().map(|mut add| {
            add.data_change = false;
            Action::Add(add)
        }));
        let operation = DeltaOperation::Optimize {
            predicate: None,
            target_size: SMALL_FILE_BYTES,
        };
        match CommitBuilder::default()
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), operation)
            .await
        {
            Ok(committed) => {
                let version = committed.version() as i64;
                tracing::info!(
                    version,
                    files_removed = removed,
                    files_added,
                    "compacted the Delta table"
                );
                return Ok(CompactReport {
                    version: Some(version),
                    files_removed: removed,
                    files_added,
                });
            }
            Err(error) if attempts < 5 => {
                tracing::warn!(%error, "compaction commit lost a race; trying again")
            }
            Err(error) => return Err(error.into()),
        }
    }
}

#[cfg(test)]
mod bin_tests {
    use super::{SMALL_FILE_BYTES, bins};

    const MIB: i64 = 1024 * 1024;

    fn binned(sizes: &[i64]) -> Vec<Vec<i64>> {
        bins(sizes.to_vec(), |size| *size)
    }

    #[test]
    fn small_files_join_smallest_first_while_they_fit() {
        assert_eq!(
            binned(&[3 * MIB, MIB, 5 * MIB, 2 * MIB]),
            vec![vec![MIB, 2 * MIB, 3 * MIB]],
            "5 MiB fits with none of the rest, so it is left alone"
        );
        // A bin that sums to the bound exactly is allowed; one byte more is not.
        assert_eq!(
            binned(&[SMALL_FILE_BYTES / 2, SMALL_FILE_BYTES / 2]),
            vec![vec![SMALL_FILE_BYTES / 2, SMALL_FILE_BYTES / 2]]
        );
        assert!(binned(&[SMALL_FILE_BYTES / 2, SMALL_FILE_BYTES / 2 + 1]).is_empty());
        // Files that fit no bin together give none: nothing to rewrite.
        assert!(binned(&[5 * MIB, 6 * MIB, 7 * MIB, 8 * MIB - 1]).is_empty());
        assert!(binned(&[]).is_empty());
        // Empty files (size 0) join any bin; a corrupt negative size counts as 0.
        assert_eq!(binned(&[0, -5, 0]), vec![vec![-5, 0, 0]]);
    }
}
