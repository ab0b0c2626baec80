//! Batch runs in PostgreSQL: registering a run, publishing it atomically, cleaning up.

use schemas::pg::batch_runs::{self, RunTotals};
use schemas::pg_layout::ViewLayout;
use schemas::view::View;
use sqlx::PgPool;

use super::BatchError;

/// One view's computed run, ready to publish.
#[derive(Debug, Clone)]
pub struct ViewRun {
    /// The view.
    pub view: View,
    /// The run id its rows were loaded under.
    pub run_id: i64,
    /// Rows loaded.
    pub rows_written: u64,
}

/// Registers a new run of `view` (status `running`) and returns its id.
pub async fn begin_run(pool: &PgPool, view: &View, cut_epoch: i64) -> Result<i64, BatchError> {
    Ok(batch_runs::begin(pool, view, cut_epoch).await?)
}

/// Marks runs left `running` by a killed process as failed and deletes their rows. Only called
/// while holding the batch lock, so no live run is touched.
pub async fn clean_interrupted(pool: &PgPool, views: &[View]) -> Result<(), BatchError> {
    for stale in batch_runs::clean_interrupted(pool).await? {
        if let Some(view) = views
            .iter()
            .find(|v| v.name == stale.view_name && v.fingerprint == stale.fingerprint)
        {
            delete_rows_of_run(pool, &ViewLayout::of(view), stale.run_id).await?;
        }
        tracing::info!(
            run_id = stale.run_id,
            view = stale.view_name,
            "cleaned up a batch run that was interrupted"
        );
    }
    Ok(())
}

/// The transaction-level lock every publish takes.
pub const PUBLISH_LOCK: &str = "braid.batch.publish";

/// Makes every run active with `covered_epoch`, supersedes the previous active runs and deletes
/// the speed rows they now cover, all in one transaction; then drops the superseded rows.
/// Inside that transaction it refuses, changing nothing, when a run is no longer `running`
/// (another run cleaned it up as interrupted) or when an active run already covers
/// `covered_epoch` (a newer cut was published).
pub async fn publish(
    pool: &PgPool,
    runs: &[ViewRun],
    covered_epoch: i64,
    rows_read: u64,
    delta_version: Option<i64>,
) -> Result<(), BatchError> {
    let mut tx = pool.begin().await?;
    // The run's standing is checked here, under a lock held by this transaction, not trusted
    // from the session lock taken at the start: that lock lives on one pooled connection and
    // can be lost, after which another run may have cleaned this one up and published.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(PUBLISH_LOCK)
        .execute(&mut *tx)
        .await?;
    let mut superseded: Vec<(ViewLayout, i64)> = Vec::new();
    for run in runs {
        let layout = ViewLayout::of(&run.view);
        if let Some(active_covered) = batch_runs::active_covered_epoch(&mut tx, &run.view).await?
            && active_covered >= covered_epoch
        {
            return Err(BatchError::NewerCutPublished {
                view: run.view.name.clone(),
                active_covered,
                covered: covered_epoch,
            });
        }
        let previous = batch_runs::supersede(&mut tx, &run.view).await?;
        let totals = RunTotals {
            rows_read,
            rows_written: run.rows_written,
            delta_version,
        };
        if !batch_runs::activate(&mut tx, run.run_id, covered_epoch, totals).await? {
            return Err(BatchError::RunNoLongerRunning { run_id: run.run_id });
        }
        let delete_speed = format!("DELETE FROM {} WHERE epoch < $1", layout.speed_table);
        sqlx::query(sqlx::AssertSqlSafe(delete_speed))
            .bind(covered_epoch)
            .execute(&mut *tx)
            .await?;
        superseded.extend(previous.into_iter().map(|id| (layout.clone(), id)));
    }
    let published: Vec<String> = runs.iter().map(|r| r.view.name.clone()).collect();
    let changes: Vec<schemas::pg::view_changes::ViewChange> = published
        .iter()
        .map(schemas::pg::view_changes::ViewChange::whole)
        .collect();
    schemas::pg::view_changes::notify(&mut tx, &changes).await?;
    tx.commit().await?;
    for (layout, run_id) in superseded {
        delete_rows_of_run(pool, &layout, run_id).await?;
    }
    Ok(())
}

/// Deletes the rows a run COPYed into its view's batch table (the table name comes from the
/// validated view, the run id is bound).
async fn delete_rows_of_run<'c>(
    db: impl sqlx::PgExecutor<'c>,
    layout: &ViewLayout,
    run_id: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!("DELETE FROM {} WHERE run_id = $1", layout.batch_table);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(run_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Marks a run failed and deletes the rows it COPYed (a failed run's slices are never served,
/// and would otherwise stay), in one transaction with the run's row locked, unless the run is
/// active or superseded.
/// When the database cannot be reached the run stays `running`, and the next batch run cleans
/// it up as interrupted, rows included ([`clean_interrupted`]).
pub async fn fail_run(pool: &PgPool, view: &View, run_id: i64, error: &str) {
    if let Err(e) = fail_and_delete_rows(pool, view, run_id, error).await {
        tracing::warn!(run_id, error = %e, "could not mark the batch run failed; it is not active either way and serving ignores it, and the next batch run cleans it up");
    }
}

async fn fail_and_delete_rows(
    pool: &PgPool,
    view: &View,
    run_id: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // A run another batch process already failed (this one lost its lock, and that one cleaned
    // it up as interrupted) may have COPYed slices since: its rows go too. An active or
    // superseded run is left alone.
    let status = batch_runs::lock_status(&mut tx, run_id).await?;
    if matches!(status.as_deref(), Some("running" | "failed")) {
        batch_runs::fail(&mut tx, run_id, error).await?;
        delete_rows_of_run(&mut *tx, &ViewLayout::of(view), run_id).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views() -> Vec<View> {
        schemas::BraidConfig::load_from(
            Some(("braid.toml", include_str!("../../../braid.toml"))),
            [],
        )
        .unwrap()
        .views
    }

    fn run(view: &View, run_id: i64) -> ViewRun {
        ViewRun {
            view: view.clone(),
            run_id,
            rows_written: 0,
        }
    }

    async fn status(pool: &PgPool, run_id: i64) -> (String, Option<i64>) {
        sqlx::query_as(
            "SELECT status, covered_epoch FROM braid_internal.batch_runs WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_one(pool)
        .await
        .unwrap()
    }

    /// Run A lost its lock; run B cleaned A up as interrupted and published cut 2. A's publish
    /// of cut 1 must change nothing.
    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_run_cleaned_up_by_another_cannot_publish(pool: PgPool) {
        let views = views();
        schemas::pg::ensure_view_tables(&pool, &views)
            .await
            .unwrap();
        let view = &views[0];
        let a = begin_run(&pool, view, 1).await.unwrap();
        clean_interrupted(&pool, &views).await.unwrap();
        let b = begin_run(&pool, view, 2).await.unwrap();
        publish(&pool, &[run(view, b)], 3, 0, Some(1))
            .await
            .unwrap();
        let refused = publish(&pool, &[run(view, a)], 2, 0, Some(1)).await;
        assert!(
            matches!(
                refused,
                Err(BatchError::NewerCutPublished {
                    active_covered: 3,
                    covered: 2,
                    ..
                })
            ),
            "{refused:?}"
        );
        assert_eq!(status(&pool, b).await, ("active".into(), Some(3)));
        assert_eq!(status(&pool, a).await.0, "failed");
    }

    /// A failed run's rows are deleted with its failure; an active run is never failed, its
    /// rows kept, even if its publisher saw an error.
    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_failed_run_leaves_no_rows_and_an_active_run_cannot_fail(pool: PgPool) {
        let views = views();
        schemas::pg::ensure_view_tables(&pool, &views)
            .await
            .unwrap();
        let view = &views[0];
        let table = ViewLayout::of(view).batch_table;
        let rows_of = |run_id: i64| {
            let (pool, sql) = (
                pool.clone(),
                format!("SELECT count(*) FROM {table} WHERE run_id = $1"),
            );
            async move {
                let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(run_id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                n
            }
        };
        let add_row = |run_id: i64| {
            let (pool, sql) = (
                pool.clone(),
                format!("INSERT INTO {table} (run_id, bucket_start) VALUES ($1, now())"),
            );
            async move {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(run_id)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        };
        let failing = begin_run(&pool, view, 1).await.unwrap();
        add_row(failing).await;
        add_row(failing).await;
        fail_run(&pool, view, failing, "the database went away").await;
        assert_eq!(status(&pool, failing).await.0, "failed");
        assert_eq!(rows_of(failing).await, 0, "a failed run's rows are deleted");

        // This process lost its lock: another cleaned the run up as interrupted, then a slice
        // of it was still COPYed. Its failure deletes that slice too.
        let lost = begin_run(&pool, view, 1).await.unwrap();
        clean_interrupted(&pool, &views).await.unwrap();
        add_row(lost).await;
        fail_run(&pool, view, lost, "its lock was lost").await;
        assert_eq!(status(&pool, lost).await.0, "failed");
        assert_eq!(
            rows_of(lost).await,
            0,
            "rows COPYed after the clean-up are deleted"
        );

        let published = begin_run(&pool, view, 2).await.unwrap();
        add_row(published).await;
        publish(&pool, &[run(view, published)], 3, 0, Some(1))
            .await
            .unwrap();
        fail_run(&pool, view, published, "the reply was lost").await;
        assert_eq!(status(&pool, published).await, ("active".into(), Some(3)));
        assert_eq!(rows_of(published).await, 1, "an active run keeps its rows");
    }

    /// Run A was cleaned up as interrupted by run B, which has not published yet: A's row is no
    /// longer `running`, so A cannot make itself active.
    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_run_that_is_no_longer_running_cannot_publish(pool: PgPool) {
        let views = views();
        schemas::pg::ensure_view_tables(&pool, &views)
            .await
            .unwrap();
        let view = &views[0];
        let a = begin_run(&pool, view, 1).await.unwrap();
        clean_interrupted(&pool, &views).await.unwrap();
        let refused = publish(&pool, &[run(view, a)], 2, 0, Some(1)).await;
        assert!(
            matches!(refused, Err(BatchError::RunNoLongerRunning { run_id }) if run_id == a),
            "{refused:?}"
        );
        assert_eq!(status(&pool, a).await.0, "failed");
        let (active,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM braid_internal.batch_runs WHERE status = 'active'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(active, 0, "nothing was published");
    }
}
