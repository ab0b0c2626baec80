//! Running one job, recording every attempt, retrying failures with backoff.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use batch_layer::lake::{CompactReport, VacuumReport};
use batch_layer::recompute::{BatchError, BatchOutcome, BatchSettings, run_batch};
use schemas::config::KafkaConfig;
use schemas::pg::SpeedReset;
use sqlx::PgPool;

use crate::history::{self, JobReport};
use crate::kind::JobKind;
use crate::procedures::prune::Pruned;
use crate::procedures::recover::Recovery;
use crate::procedures::republish::Published;
use crate::procedures::{self, ProcedureError};

/// Reports a running job's progress: (done, total).
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What the jobs need.
#[derive(Clone)]
pub struct JobContext {
    /// The database.
    pub pool: PgPool,
    /// Batch settings: the lake (table, topic, schema), which every job on the table uses, and
    /// the views.
    pub batch: BatchSettings,
    /// Vacuum retention.
    pub vacuum_retention: Duration,
    /// Parquet compression of compacted files.
    pub compression: schemas::config::Compression,
    /// Attempts per job before it is recorded as failed for good.
    pub max_attempts: u32,
    /// The first retry's delay; doubled per attempt.
    pub first_backoff: Duration,
    /// Kafka: the source topic and how to reach it (the operators' procedures read it, and
    /// `replay publish` writes to another topic of the same cluster).
    pub kafka: KafkaConfig,
    /// How long the prune keeps old rows.
    pub retentions: procedures::prune::Retentions,
    /// Set to stop a long job (a republish) part way; it can be resumed.
    pub stop: Arc<AtomicBool>,
    /// Where a long job reports its progress, if anywhere.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("batch", &self.batch)
            .field("vacuum_retention", &self.vacuum_retention)
            .field("max_attempts", &self.max_attempts)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

/// What a job did.
#[derive(Debug, Clone)]
pub enum JobOutput {
    /// A batch run published.
    Batch(BatchOutcome),
    /// A compaction.
    Compact(CompactReport),
    /// A vacuum.
    Vacuum(VacuumReport),
    /// A speed replay.
    ReplaySpeed(SpeedReset),
    /// A recovery from the lake.
    Recover(Recovery),
    /// A republish.
    ReplayPublish(Published),
    /// A prune.
    Prune(Pruned),
}

impl JobOutput {
    /// What the job history records of it.
    pub fn report(&self) -> JobReport {
        match self {
            JobOutput::Batch(outcome) => JobReport {
                delta_version: outcome.delta_version,
                cut_epoch: Some(outcome.cut_epoch),
                rows_read: Some(outcome.rows_read as i64),
                rows_written: Some(outcome.views.iter().map(|v| v.rows_written as i64).sum()),
            },
            JobOutput::Compact(report) => JobReport {
                delta_version: report.version,
                rows_written: Some(report.files_added as i64),
                rows_read: Some(report.files_removed as i64),
                ..Default::default()
            },
            JobOutput::Vacuum(report) => JobReport {
                delta_version: report.version,
                rows_written: Some(report.files_deleted as i64),
                ..Default::default()
            },
            JobOutput::ReplaySpeed(reset) => procedures::replay_speed::report(reset),
            JobOutput::Recover(recovery) => procedures::recover::report(recovery),
            JobOutput::ReplayPublish(published) => procedures::republish::report(published),
            JobOutput::Prune(pruned) => procedures::prune::report(pruned),
        }
    }
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
    /// An operator's procedure failed.
    #[error(transparent)]
    Procedure(#[from] ProcedureError),
    /// The history could not be written.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl JobError {
    fn is_retryable(&self) -> bool {
        match self {
            JobError::Batch(e) => e.is_retryable(),
            JobError::Maintenance(e) => e.is_retryable(),
            JobError::Procedure(e) => e.is_retryable(),
            JobError::Database(_) => true,
        }
    }
}

async fn attempt(ctx: &JobContext, kind: &JobKind, id: i64) -> Result<JobOutput, JobError> {
    Ok(match kind {
        JobKind::Batch => JobOutput::Batch(run_batch(&ctx.batch, &ctx.pool, None).await?),
        JobKind::Compact => {
            let properties = batch_layer::sink::writer_properties(ctx.compression);
            JobOutput::Compact(ctx.batch.lake.compact(properties).await?)
        }
        JobKind::Vacuum => {
            let keep = schemas::pg::batch_runs::pinned_versions(&ctx.pool).await?;
            JobOutput::Vacuum(ctx.batch.lake.vacuum(ctx.vacuum_retention, &keep).await?)
        }
        JobKind::ReplaySpeed { from_cut } => JobOutput::ReplaySpeed(
            procedures::replay_speed::reset_speed(
                &ctx.kafka,
                &ctx.batch.views,
                &ctx.pool,
                *from_cut,
            )
            .await?,
        ),
        JobKind::Recover { force } => JobOutput::Recover(
            procedures::recover::recover(&ctx.kafka, &ctx.batch.lake, &ctx.pool, *force).await?,
        ),
        JobKind::Prune => JobOutput::Prune(
            procedures::prune::prune(
                &ctx.pool,
                procedures::prune::Cutoffs::of(&ctx.retentions, chrono::Utc::now()),
                procedures::prune::CHUNK,
            )
            .await?,
        ),
        JobKind::ReplayPublish(request) => {
            let shown = ctx.progress.clone();
            let mut progress = move |done: u64, total: u64| {
                if let Some(show) = &shown {
                    show(done, total);
                }
            };
            JobOutput::ReplayPublish(
                procedures::republish::republish(
                    &ctx.kafka,
                    &ctx.batch.lake,
                    &ctx.pool,
                    id,
                    request,
                    &mut progress,
                    &ctx.stop,
                )
                .await?,
            )
        }
    })
}

/// Runs `kind` now, recording each attempt in the history; retryable failures are tried again
/// after 1x, 2x, 4x ... `first_backoff`. A failed attempt never publishes anything.
pub async fn run_job(
    ctx: &JobContext,
    kind: JobKind,
    trigger: &str,
) -> Result<JobOutput, JobError> {
    run_job_reporting(ctx, kind, trigger, None).await
}

/// [`run_job`], sending the history id of the first attempt to `first_id` once it is recorded
/// (the API answers with it before the job ends).
pub async fn run_job_reporting(
    ctx: &JobContext,
    kind: JobKind,
    trigger: &str,
    mut first_id: Option<tokio::sync::oneshot::Sender<i64>>,
) -> Result<JobOutput, JobError> {
    let mut backoff = ctx.first_backoff;
    let mut tries = 0;
    loop {
        tries += 1;
        let id = history::start(&ctx.pool, kind.name(), trigger).await?;
        if let Some(sender) = first_id.take() {
            let _ = sender.send(id);
        }
        let result = attempt(ctx, &kind, id).await;
        match &result {
            Ok(output) => history::finish(&ctx.pool, id, Ok(&output.report())).await?,
            Err(error) => history::finish(&ctx.pool, id, Err(&error.to_string())).await?,
        }
        match result {
            Ok(output) => {
                tracing::info!(job = kind.name(), trigger, report = ?output.report(), "job succeeded");
                return Ok(output);
            }
            Err(error) if error.is_retryable() && tries < ctx.max_attempts => {
                tracing::warn!(job = kind.name(), %error, retry_in_s = backoff.as_secs_f64(), "job failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(error) => {
                tracing::error!(job = kind.name(), %error, "job failed; recorded as failed in the job history (braid jobs list); it is not retried further");
                return Err(error);
            }
        }
    }
}
