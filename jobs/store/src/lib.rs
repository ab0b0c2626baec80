//! `braid_internal.job_runs`, the job history, one row per attempt of every job: the only
//! code with its SQL. The jobs write it (`jobs::history`, which re-exports this crate) and the
//! admin API reads it (`serving::api::admin`). It is a crate of its own, depending on nothing of
//! Braid's, so that the API reads the history without depending on `jobs`, which runs the batch
//! layer (Polars).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// What a finished job reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    /// The Delta version the job read or produced.
    pub delta_version: Option<i64>,
    /// The epoch a batch run's cut closed.
    pub cut_epoch: Option<i64>,
    /// Records read.
    pub rows_read: Option<i64>,
    /// Rows (or files) written or deleted.
    pub rows_written: Option<i64>,
}

/// One recorded run.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRun {
    /// Its id.
    pub id: i64,
    /// The job: batch, vacuum, ...
    pub job: String,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// See [`JobReport`].
    pub delta_version: Option<i64>,
    /// See [`JobReport`].
    pub cut_epoch: Option<i64>,
    /// See [`JobReport`].
    pub rows_read: Option<i64>,
    /// See [`JobReport`].
    pub rows_written: Option<i64>,
    /// The error of a failed run.
    pub error: Option<String>,
}

/// Records the start of a run and returns its id.
pub async fn start(pool: &PgPool, job: &str, trigger: &str) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) =
        sqlx::query_as("INSERT INTO braid_internal.job_runs (job, trigger, status) VALUES ($1, $2, 'running') RETURNING id")
            .bind(job)
            .bind(trigger)
            .fetch_one(pool)
            .await?;
    Ok(id)
}

/// Records a running job's progress (shown by `braid jobs list` and GET /v1/jobs/{id}).
pub async fn set_progress(pool: &PgPool, id: i64, progress: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE braid_internal.job_runs SET progress = $2::jsonb WHERE id = $1")
        .bind(id)
        .bind(progress)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records how a run ended.
pub async fn finish(
    pool: &PgPool,
    id: i64,
    outcome: Result<&JobReport, &str>,
) -> Result<(), sqlx::Error> {
    let (status, report, error) = match outcome {
        Ok(report) => ("succeeded", report.clone(), None),
        Err(error) => ("failed", JobReport::default(), Some(error)),
    };
    sqlx::query(
        "UPDATE braid_internal.job_runs SET status = $2, finished_at = now(), delta_version = $3, cut_epoch = $4,
         rows_read = $5, rows_written = $6, error = $7 WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(report.delta_version)
    .bind(report.cut_epoch)
    .bind(report.rows_read)
    .bind(report.rows_written)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// The most recent runs, newest first.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<JobRun>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, job, trigger, status, started_at, finished_at, delta_version, cut_epoch, rows_read, rows_written, error
         FROM braid_internal.job_runs ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The columns the API shows of a run.
const SHOWN_COLUMNS: &str = "id, job, trigger, status, started_at, finished_at, delta_version, cut_epoch, \
                             rows_read, rows_written, progress, error";

/// The most recent `limit` runs as a JSON array, newest first (for the API).
pub async fn list_json(pool: &PgPool, limit: i64) -> Result<String, sqlx::Error> {
    let (jobs,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(json_agg(j ORDER BY id DESC), '[]'::json)::text FROM \
         (SELECT {SHOWN_COLUMNS} FROM braid_internal.job_runs ORDER BY id DESC LIMIT $1) j"
    )))
    .bind(limit)
    .fetch_one(pool)
    .await?;
    Ok(jobs)
}

/// One run as a JSON object (for the API), if it exists.
pub async fn one_json(pool: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    let job: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT row_to_json(j)::text FROM (SELECT {SHOWN_COLUMNS} FROM braid_internal.job_runs WHERE id = $1) j"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(job.map(|(json,)| json))
}
