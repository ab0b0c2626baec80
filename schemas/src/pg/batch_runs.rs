//! `braid_internal.batch_runs`, one row per view per batch run: the only module with its SQL.
//!
//! A run is `running` from its cut until it publishes (`active`, with the covered epoch) or
//! fails; publishing supersedes the view's previous active run. One active run per view and
//! fingerprint (a unique index).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::view::View;

/// A run that a killed process left `running`, marked failed by [`clean_interrupted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedRun {
    /// The run.
    pub run_id: i64,
    /// Its view.
    pub view_name: String,
    /// The view's definition.
    pub fingerprint: String,
}

/// A view's active run, as readers report it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveRun {
    /// The view.
    pub view_name: String,
    /// The view's definition.
    pub fingerprint: String,
    /// The run.
    pub run_id: i64,
    /// Speed rows at or above this epoch are added on top of the run's rows.
    pub covered_epoch: Option<i64>,
    /// The Delta version the run read.
    pub delta_version: Option<i64>,
    /// When it was published.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a run wrote, recorded when it becomes active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTotals {
    /// Records below the cut the run read.
    pub rows_read: u64,
    /// Rows it wrote.
    pub rows_written: u64,
    /// The Delta version it read.
    pub delta_version: Option<i64>,
}

/// The SELECT of `view`'s active run (`run_id, covered_epoch, delta_version, finished_at`),
/// for readers that merge it with the speed rows in one statement. `name` and `fingerprint`
/// are SQL expressions: literals from validated configuration, or placeholders.
pub fn active_run_select(name: &str, fingerprint: &str) -> String {
    format!(
        "SELECT run_id, covered_epoch, delta_version, finished_at FROM braid_internal.batch_runs \
         WHERE view_name = {name} AND fingerprint = {fingerprint} AND status = 'active'"
    )
}

/// Registers a new run of `view` (status `running`) and returns its id.
pub async fn begin(pool: &PgPool, view: &View, cut_epoch: i64) -> Result<i64, sqlx::Error> {
    let (run_id,): (i64,) = sqlx::query_as(
        "INSERT INTO braid_internal.batch_runs (view_name, fingerprint, status, cut_epoch)
         VALUES ($1, $2, 'running', $3) RETURNING run_id",
    )
    .bind(&view.name)
    .bind(&view.fingerprint)
    .bind(cut_epoch)
    .fetch_one(pool)
    .await?;
    Ok(run_id)
}

/// Records the table version `run_ids` read, as soon as it is pinned.
pub async fn record_pinned_version(
    pool: &PgPool,
    run_ids: &[i64],
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE braid_internal.batch_runs SET delta_version = $2 WHERE run_id = ANY($1) AND status = 'running'",
    )
    .bind(run_ids)
    .bind(version)
    .execute(pool)
    .await?;
    Ok(())
}

/// The table versions that running or active runs read: vacuum keeps their files.
pub async fn pinned_versions(pool: &PgPool) -> Result<Vec<u64>, sqlx::Error> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT DISTINCT delta_version FROM braid_internal.batch_runs
         WHERE status IN ('running', 'active') AND delta_version IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(v,)| v as u64).collect())
}

/// Marks every `running` run failed as `interrupted` and returns them (their rows are the
/// caller's to delete). Only called while holding the batch lock, so no live run is touched.
pub async fn clean_interrupted(pool: &PgPool) -> Result<Vec<InterruptedRun>, sqlx::Error> {
    let stale: Vec<(i64, String, String)> = sqlx::query_as(
        "UPDATE braid_internal.batch_runs SET status = 'failed', finished_at = now(), error = 'interrupted'
         WHERE status = 'running' RETURNING run_id, view_name, fingerprint",
    )
    .fetch_all(pool)
    .await?;
    Ok(stale
        .into_iter()
        .map(|(run_id, view_name, fingerprint)| InterruptedRun {
            run_id,
            view_name,
            fingerprint,
        })
        .collect())
}

/// The covered epoch of `view`'s active run, if it has one.
pub async fn active_covered_epoch(
    tx: &mut PgConnection,
    view: &View,
) -> Result<Option<i64>, sqlx::Error> {
    let active: Option<(i64,)> = sqlx::query_as(
        "SELECT covered_epoch FROM braid_internal.batch_runs
         WHERE view_name = $1 AND fingerprint = $2 AND status = 'active'",
    )
    .bind(&view.name)
    .bind(&view.fingerprint)
    .fetch_optional(tx)
    .await?;
    Ok(active.map(|(covered,)| covered))
}

/// Marks `view`'s active run superseded and returns its id.
pub async fn supersede(tx: &mut PgConnection, view: &View) -> Result<Vec<i64>, sqlx::Error> {
    let previous: Vec<(i64,)> = sqlx::query_as(
        "UPDATE braid_internal.batch_runs SET status = 'superseded'
         WHERE view_name = $1 AND fingerprint = $2 AND status = 'active' RETURNING run_id",
    )
    .bind(&view.name)
    .bind(&view.fingerprint)
    .fetch_all(tx)
    .await?;
    Ok(previous.into_iter().map(|(id,)| id).collect())
}

/// Makes run `run_id` active with `covered_epoch`, only if it is still `running`. Returns
/// whether it was.
pub async fn activate(
    tx: &mut PgConnection,
    run_id: i64,
    covered_epoch: i64,
    totals: RunTotals,
) -> Result<bool, sqlx::Error> {
    let made_active = sqlx::query(
        "UPDATE braid_internal.batch_runs SET status = 'active', covered_epoch = $2, finished_at = now(),
         rows_read = $3, rows_written = $4, delta_version = $5 WHERE run_id = $1 AND status = 'running'",
    )
    .bind(run_id)
    .bind(covered_epoch)
    .bind(totals.rows_read as i64)
    .bind(totals.rows_written as i64)
    .bind(totals.delta_version)
    .execute(tx)
    .await?;
    Ok(made_active.rows_affected() == 1)
}

/// Locks a run's row until the transaction ends and returns its status (`None`: no such run),
/// so that no publish or clean-up changes it meanwhile.
pub async fn lock_status(
    db: &mut PgConnection,
    run_id: i64,
) -> Result<Option<String>, sqlx::Error> {
    let status: Option<(String,)> =
        sqlx::query_as("SELECT status FROM braid_internal.batch_runs WHERE run_id = $1 FOR UPDATE")
            .bind(run_id)
            .fetch_optional(db)
            .await?;
    Ok(status.map(|(status,)| status))
}

/// Marks a `running` run failed with its error; a run in any other state keeps it. An active
/// run is never touched: its publish may have committed although its caller saw an error (a
/// connection lost before the reply).
pub async fn fail(db: &mut PgConnection, run_id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE braid_internal.batch_runs SET status = 'failed', finished_at = now(), error = $2 \
         WHERE run_id = $1 AND status = 'running'",
    )
    .bind(run_id)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// Every active run.
pub async fn active_runs(db: &mut PgConnection) -> Result<Vec<ActiveRun>, sqlx::Error> {
    sqlx::query_as(
        "SELECT view_name, fingerprint, run_id, covered_epoch, delta_version, finished_at \
         FROM braid_internal.batch_runs WHERE status = 'active'",
    )
    .fetch_all(db)
    .await
}

/// Whether any batch run was ever registered.
pub async fn any(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM braid_internal.batch_runs)")
        .fetch_one(pool)
        .await?;
    Ok(any)
}

/// The (view name, fingerprint) pairs among `views` that have an active run.
pub async fn active_definitions(
    pool: &PgPool,
    views: &[View],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let names: Vec<String> = views.iter().map(|v| v.name.clone()).collect();
    let fingerprints: Vec<String> = views.iter().map(|v| v.fingerprint.clone()).collect();
    sqlx::query_as(
        "SELECT r.view_name, r.fingerprint FROM braid_internal.batch_runs r \
         JOIN UNNEST($1::text[], $2::text[]) AS v(name, fingerprint) \
           ON r.view_name = v.name AND r.fingerprint = v.fingerprint \
         WHERE r.status = 'active'",
    )
    .bind(&names)
    .bind(&fingerprints)
    .fetch_all(pool)
    .await
}

/// The `limit` most recent runs of every view as a JSON array, newest first (for the API's
/// status page): id, view, status, epochs, Delta version, times, row counts and error.
pub async fn recent_json(pool: &PgPool, limit: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(json_agg(r ORDER BY run_id DESC), '[]'::json)::text FROM \
         (SELECT run_id, view_name, status, cut_epoch, covered_epoch, delta_version, started_at, \
                 finished_at, rows_read, rows_written, error \
          FROM braid_internal.batch_runs ORDER BY run_id DESC LIMIT $1) r",
    )
    .bind(limit)
    .fetch_one(pool)
    .await
}

/// Records the staging folder of the Spark job of `run_ids` (before the job starts): only a
/// recorded folder may be removed.
pub async fn record_staging(
    pool: &PgPool,
    run_ids: &[i64],
    staging_uri: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE braid_internal.batch_runs SET staging_uri = $2 WHERE run_id = ANY($1) AND status = 'running'",
    )
    .bind(run_ids)
    .bind(staging_uri)
    .execute(pool)
    .await?;
    Ok(())
}

/// The staging folder recorded on `run_id`, if any.
pub async fn recorded_staging(pool: &PgPool, run_id: i64) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT staging_uri FROM braid_internal.batch_runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(uri,)| uri))
}

/// A staging folder a run recorded and that is not removed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStaging {
    /// The lowest run id that recorded it (its name is `run-<run_id>`).
    pub run_id: i64,
    /// The folder.
    pub staging_uri: String,
}

/// Staging folders of runs that are no longer running (a failed removal, a killed process).
/// Only called while holding the batch lock, so no live job's folder is listed.
pub async fn staging_left_behind(pool: &PgPool) -> Result<Vec<RecordedStaging>, sqlx::Error> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT min(run_id), staging_uri FROM braid_internal.batch_runs
         WHERE staging_uri IS NOT NULL AND status <> 'running' GROUP BY staging_uri ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(run_id, staging_uri)| RecordedStaging {
            run_id,
            staging_uri,
        })
        .collect())
}

/// Forgets a staging folder once it is removed.
pub async fn clear_staging(pool: &PgPool, staging_uri: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE braid_internal.batch_runs SET staging_uri = NULL WHERE staging_uri = $1")
        .bind(staging_uri)
        .execute(pool)
        .await?;
    Ok(())
}
