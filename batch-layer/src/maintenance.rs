//! Table maintenance: vacuum (and, later, compaction).

use std::collections::HashMap;
use std::time::Duration;

use deltalake::operations::vacuum::VacuumMode;
use schemas::EventSchema;

use crate::sink::{SinkError, open_or_create};

/// What a vacuum did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacuumReport {
    /// The table version after the vacuum.
    pub version: Option<i64>,
    /// Files deleted.
    pub files_deleted: usize,
}

/// Deletes files that no version younger than `retention` needs, and files no version ever
/// referenced (written by a sink that crashed before committing) once they are older than
/// `retention`. Files of `keep_versions` (versions pinned by batch runs) are kept.
pub async fn vacuum(
    uri: &str,
    storage_options: &HashMap<String, String>,
    schema: &EventSchema,
    retention: Duration,
    keep_versions: &[u64],
) -> Result<VacuumReport, SinkError> {
    let table = open_or_create(uri, storage_options, schema).await?;
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
