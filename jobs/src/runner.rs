//! Running one job, recording every attempt, retrying failures with backoff.

use std::collections::HashMap;
use std::time::Duration;

use batch_layer::recompute::{BatchError, BatchSettings, run_batch};
use schemas::EventSchema;
use sqlx::PgPool;

use crate::history::{self, JobReport};

/// The jobs the scheduler knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Batch recompute of every view.
    Batch,
    /// Compaction of the Delta table's small files.
    Compact,
    /// Vacuum of the Delta table.
    Vacuum,
}

impl JobKind {
    /// The job's name in the config, the history and `braid jobs run NAME`.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Batch => "batch",
            JobKind::Compact => "compact",
            JobKind::Vacuum => "vacuum",
        }
    }

    /// Parses a job name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "batch" => Some(JobKind::Batch),
            "compact" => Some(JobKind::Compact),
            "vacuum" => Some(JobKind::Vacuum),
            _ => None,
        }
    }
}

/// What the jobs need.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The database.
    pub pool: PgPool,
    /// Batch settings (topic, table, views).
    pub batch: BatchSettings,
    /// The event schema (to open the table).
    pub schema: EventSchema,
    /// Vacuum retention.
    pub vacuum_retention: Duration,
    /// Parquet compression of compacted files.
    pub compression: schemas::config::Compression,
    /// Attempts per job before it is recorded as failed for good.
    pub max_attempts: u32,
    /// The first retry's delay; doubled per attempt.
    pub first_backoff: Duration,
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The batch recompute failed.
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
    /// Compaction or vacuum failed.
    #[error("table maintenance: {0}")]
    Maintenance(#[from] batch_layer::lake::LakeError),
    /// The history could not be written.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl JobError {
    fn is_retryable(&self) -> bool {
        match self {
            JobError::Batch(e) => e.is_retryable(),
            JobError::Maintenance(e) => e.is_retryable(),
            JobError::Database(_) => true,
        }
    }
}

async fn attempt(ctx: &JobContext, kind: JobKind) -> Result<JobReport, JobError> {
    match kind {
        JobKind::Batch => {
            let outcome = run_batch(&ctx.batch, &ctx.pool, None).await?;
            Ok(JobReport {
                delta_version: outcome.delta_version,
                cut_epoch: Some(outcome.cut_epoch),
                rows_read: Some(outcome.rows_read as i64),
                rows_written: Some(outcome.views.iter().map(|(_, _, rows)| *rows as i64).sum()),
            })
        }
        JobKind::Compact => {
            let properties = batch_layer::sink::writer_properties(ctx.compression);
            let report = batch_layer::lake::maintenance::compact(
                &ctx.batch.table_uri,
                &ctx.batch.storage_options,
                &ctx.schema,
                properties,
            )
            .await?;
            Ok(JobReport {
                delta_version: report.version,
                rows_written: Some(report.files_added as i64),
                rows_read: Some(report.files_removed as i64),
                ..Default::default()
            })
        }
        JobKind::Vacuum => {
            let keep = batch_layer::recompute::pinned_versions(&ctx.pool).await?;
            let storage: HashMap<String, String> = ctx.batch.storage_options.clone();
            let report = batch_layer::lake::maintenance::vacuum(
                &ctx.batch.table_uri,
                &storage,
                &ctx.schema,
                ctx.vacuum_retention,
                &keep,
            )
            .await?;
            Ok(JobReport {
                delta_version: report.version,
                rows_written: Some(report.files_deleted as i64),
                ..Default::default()
            })
        }
    }
}

/// Runs `kind` now, recording each attempt in the history; retryable failures are tried again
/// after 1x, 2x, 4x ... `first_backoff`. A failed attempt never publishes anything.
pub async fn run_job(
    ctx: &JobContext,
    kind: JobKind,
    trigger: &str,
) -> Result<JobReport, JobError> {
    run_job_reporting(ctx, kind, trigger, None).await
}

/// [`run_job`], sending the history id of the first attempt to `first_id` once it is recorded
/// (the API answers with it before the job ends).
pub async fn run_job_reporting(
    ctx: &JobContext,
    kind: JobKind,
    trigger: &str,
    mut first_id: Option<tokio::sync::oneshot::Sender<i64>>,
) -> Result<JobReport, JobError> {
    let mut backoff = ctx.first_backoff;
    let mut tries = 0;
    loop {
        tries += 1;
        let id = history::start(&ctx.pool, kind.name(), trigger).await?;
        if let Some(sender) = first_id.take() {
            let _ = sender.send(id);
        }
        let result = attempt(ctx, kind).await;
        match &result {
            Ok(report) => history::finish(&ctx.pool, id, Ok(report)).await?,
            Err(error) => history::finish(&ctx.pool, id, Err(&error.to_string())).await?,
        }
        match result {
            Ok(report) => {
                tracing::info!(job = kind.name(), trigger, ?report, "job succeeded");
                return Ok(report);
            }
            Err(error) if error.is_retryable() && tries < ctx.max_attempts => {
                tracing::warn!(job = kind.name(), %error, retry_in_s = backoff.as_secs_f64(), "job failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(error) => {
                tracing::error!(job = kind.name(), %error, "job failed");
                return Err(error);
            }
        }
    }
}
