//! Batch recompute: views from the Delta table, published atomically against a cut.
//!
//! A run takes a cut (the speed layer's stored positions become cut(e, p) and the epoch moves
//! to e + 1), waits until the Delta log's positions reach the cut, pins that version, computes
//! each view with Polars over exactly the records below the cut, COPYs the rows under a new run
//! id and, in one transaction, makes the runs active with covered epoch e + 1 and deletes the
//! speed rows below it. Readers see the old run or the new one, never a mixture.

mod as_of;
#[cfg(test)]
mod compaction_bin_tests;
mod compute;
mod distinct;
mod error;
mod load;
#[cfg(test)]
mod pinned_tests;
mod publish;
#[cfg(test)]
mod row_group_tests;
pub(crate) mod slices;
pub mod spark;
#[cfg(test)]
mod test_lake;
#[cfg(test)]
mod vacuum_race_tests;

use std::time::{Duration, Instant};

use schemas::pg_layout::ViewLayout;
use schemas::view::View;
use sqlx::PgPool;

pub use crate::lake::AsOf;
pub use as_of::{AsOfOutcome, compute_as_of};
pub use compute::{BUCKET_START, compute_view, records_below_cut};
pub use error::BatchError;
pub use publish::{PUBLISH_LOCK, ViewRun};

use crate::lake::{Lake, PinnedFiles};
use schemas::position::Positions;

/// What a batch run needs.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// The Delta table, with the source topic (positions and cuts are per topic) and the
    /// event schema.
    pub lake: Lake,
    /// Every configured view.
    pub views: Vec<View>,
    /// How long to wait for the sink to reach the cut.
    pub wait_timeout: Duration,
    /// Which engine computes the views.
    pub engine: Engine,
    /// About the most records Polars computes a view from at once (`batch.slice_records`): a
    /// run that reads more computes each view in time slices of about this many records. The
    /// Spark engine does not use it (Spark spills by itself).
    pub slice_records: std::num::NonZeroU64,
}

/// Which engine computes a batch run's views.
#[derive(Debug, Clone, Default)]
pub enum Engine {
    /// Polars, in this process.
    #[default]
    Polars,
    /// A Spark job, started as configured.
    Spark(schemas::config::SparkConfig),
}

/// What a published run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The epoch the cut closed.
    pub cut_epoch: i64,
    /// The covered epoch of the published runs (speed rows at or above it are added on top).
    pub covered_epoch: i64,
    /// The pinned Delta version.
    pub delta_version: Option<i64>,
    /// Records below the cut that the run read.
    pub rows_read: u64,
    /// What each view's run wrote.
    pub views: Vec<ViewRunSummary>,
}

/// What one view's run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewRunSummary {
    /// The view.
    pub view: String,
    /// The run's id.
    pub run_id: i64,
    /// Rows written.
    pub rows_written: u64,
}

/// The advisory-lock key of batch runs: one at a time per database.
const BATCH_LOCK: &str = "braid.batch";

/// Runs one batch recompute of every view (or only `only`). Holds an advisory lock: a second
/// concurrent run returns [`BatchError::AlreadyRunning`] and changes nothing.
pub async fn run_batch(
    settings: &BatchSettings,
    pool: &PgPool,
    only: Option<&str>,
) -> Result<BatchOutcome, BatchError> {
    let views: Vec<View> = match only {
        Some(name) => vec![
            settings
                .views
                .iter()
                .find(|v| v.name == name)
                .cloned()
                .ok_or_else(|| BatchError::UnknownView(name.into()))?,
        ],
        None => settings.views.clone(),
    };
    let mut lock = pool.acquire().await?;
    let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(BATCH_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        return Err(BatchError::AlreadyRunning);
    }
    let result = run_locked(settings, pool, &views).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(BATCH_LOCK)
        .execute(&mut *lock)
        .await;
    if unlocked.is_err() {
        // Never return a connection that may still hold the lock to the pool.
        let _ = lock.detach();
    }
    result
}

async fn run_locked(
    settings: &BatchSettings,
    pool: &PgPool,
    views: &[View],
) -> Result<BatchOutcome, BatchError> {
    publish::clean_interrupted(pool, &settings.views).await?;
    // Staging folders of Spark jobs that a killed process (or a failed removal) left behind:
    // only those recorded on runs, now that none of them is running.
    spark::staging::remove_left_behind(pool, settings.lake.storage_options()).await?;
    schemas::pg::ensure_view_tables(pool, views).await?;
    let cut = schemas::pg::take_cut(pool, settings.lake.topic()).await?;
    tracing::info!(epoch = cut.epoch, offsets = ?cut.offsets, "took a cut");
    // Register the runs now, so that `running` is visible while the run waits and computes.
    let mut run_ids = Vec::with_capacity(views.len());
    for view in views {
        run_ids.push(publish::begin_run(pool, view, cut.epoch).await?);
    }
    let computed = compute_runs(settings, pool, views, &run_ids, &cut.offsets).await;
    let (runs, rows_read, delta_version) = match computed {
        Ok(done) => done,
        Err(error) => {
            for (view, &run_id) in views.iter().zip(&run_ids) {
                publish::fail_run(pool, view, run_id, &error.to_string()).await;
            }
            return Err(error);
        }
    };
    if let Err(error) =
        publish::publish(pool, &runs, cut.next_epoch, rows_read, delta_version).await
    {
        for (view, &run_id) in views.iter().zip(&run_ids) {
            publish::fail_run(pool, view, run_id, &error.to_string()).await;
        }
        return Err(error);
    }
    let outcome = BatchOutcome {
        cut_epoch: cut.epoch,
        covered_epoch: cut.next_epoch,
        delta_version,
        rows_read,
        views: runs
            .iter()
            .map(|r| ViewRunSummary {
                view: r.view.name.clone(),
                run_id: r.run_id,
                rows_written: r.rows_written,
            })
            .collect(),
    };
    tracing::info!(?outcome, "published the batch run");
    Ok(outcome)
}

/// Waits for the sink, pins the Delta version and computes and loads every view.
async fn compute_runs(
    settings: &BatchSettings,
    pool: &PgPool,
    views: &[View],
    run_ids: &[i64],
    cut: &Positions,
) -> Result<(Vec<ViewRun>, u64, Option<i64>), BatchError> {
    let pinned = pin(settings, pool, run_ids, cut).await?;
    let delta_version = pinned.version;
    let refused = schemas::pg::refused_by_database(pool, settings.lake.topic()).await?;
    if !refused.is_empty() {
        tracing::info!(
            records = refused.values().map(Vec::len).sum::<usize>(),
            "leaving out the records the speed layer's database refused"
        );
    }
    if let Engine::Spark(spark) = &settings.engine {
        let Some(version) = pinned
            .version
            .filter(|_| !pinned.is_empty() && !cut.is_empty())
        else {
            return Ok((empty_runs(views, run_ids), 0, delta_version));
        };
        let job = spark::SparkJob {
            config: spark,
            lake: &settings.lake,
            version,
            cut,
            refused: &refused,
            run_ids,
        };
        let (runs, rows_read) = compute_with_spark(pool, &job, views, run_ids).await?;
        return Ok((runs, rows_read, delta_version));
    }
    let records = compute::records_below_cut(&pinned, cut, &refused)?;
    let counting = Instant::now();
    let rows_read = match &records {
        Some(frame) => {
            let frame = frame.clone().select([polars::prelude::len()]);
            let counted =
                tokio::task::spawn_blocking(move || compute::collect_streaming(frame)).await??;
            counted.column("len")?.get(0)?.extract::<u64>().unwrap_or(0)
        }
        None => 0,
    };
    tracing::info!(
        rows_read,
        seconds = counting.elapsed().as_secs_f64(),
        "counted the records below the cut"
    );
    let runs = match records {
        Some(records) => {
            compute_and_load(pool, settings, views, run_ids, records, rows_read).await?
        }
        None => empty_runs(views, run_ids),
    };
    Ok((runs, rows_read, delta_version))
}

/// Runs that wrote nothing yet (none, when no record is below the cut).
fn empty_runs(views: &[View], run_ids: &[i64]) -> Vec<ViewRun> {
    views
        .iter()
        .zip(run_ids)
        .map(|(view, &run_id)| ViewRun {
            view: view.clone(),
            run_id,
            rows_written: 0,
        })
        .collect()
}

/// Computes every view with one Spark job, then loads the rows it staged. Returns the runs
/// and the records read.
async fn compute_with_spark(
    pool: &PgPool,
    job: &spark::SparkJob<'_>,
    views: &[View],
    run_ids: &[i64],
) -> Result<(Vec<ViewRun>, u64), BatchError> {
    let output = spark::compute(pool, job, views).await?;
    let mut runs = Vec::with_capacity(views.len());
    for ((view, &run_id), frame) in views.iter().zip(run_ids).zip(&output.frames) {
        let rows = if frame.height() == 0 {
            0
        } else {
            load::load(pool, &ViewLayout::of(view), run_id, frame)
                .await?
                .rows
        };
        tracing::info!(
            view = view.name,
            rows,
            "loaded the view's rows from the Spark job"
        );
        runs.push(ViewRun {
            view: view.clone(),
            run_id,
            rows_written: rows,
        });
    }
    Ok((runs, output.rows_read))
}

/// Waits for the sink to reach the cut, pins the table's version and records it on the runs at
/// once, so a vacuum running meanwhile keeps the files the runs are about to read.
async fn pin(
    settings: &BatchSettings,
    pool: &PgPool,
    run_ids: &[i64],
    cut: &Positions,
) -> Result<PinnedFiles, BatchError> {
    let mut table = settings.lake.open().await?;
    wait_for_sink(&settings.lake, &mut table, cut, settings.wait_timeout).await?;
    let pinned = settings.lake.pinned(&table)?;
    if let Some(version) = pinned.version {
        schemas::pg::batch_runs::record_pinned_version(pool, run_ids, version).await?;
    }
    tracing::info!(version = ?pinned.version, files = pinned.len(), "pinned the Delta version");
    Ok(pinned)
}

/// Computes every view and COPYs its rows, one view after the other and each view in time
/// slices of about `settings.slice_records` records ([`slices`]), so that the batch holds a
/// slice's groups and input rather than the history's. The next slice computes (Polars, off the
/// runtime) while the previous one is copied into PostgreSQL: two slices at most are held.
async fn compute_and_load(
    pool: &PgPool,
    settings: &BatchSettings,
    views: &[View],
    run_ids: &[i64],
    records: polars::prelude::LazyFrame,
    rows_read: u64,
) -> Result<Vec<ViewRun>, BatchError> {
    let work = sliced(settings, views, &records, rows_read).await?;
    let event_time = slices::EventTimeColumn::of(&records, settings.lake.schema())?;
    let compute = |item: &SliceOfView| {
        let (records, view, schema) = (
            item.slice.of(records.clone(), &event_time),
            views[item.view].clone(),
            settings.lake.schema().clone(),
        );
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let frame = compute::compute_view(records, &view, &schema);
            (frame, started.elapsed().as_secs_f64())
        })
    };
    // Each slice's rows are added to its view's run.
    let mut runs = empty_runs(views, run_ids);
    let mut computing = work.first().map(compute);
    for (index, item) in work.iter().enumerate() {
        let Some(task) = computing.take() else { break };
        let (frame, compute_seconds) = task.await?;
        let frame = frame?;
        computing = work.get(index + 1).map(compute);
        let run = &mut runs[item.view];
        let loaded = load::load(pool, &ViewLayout::of(&run.view), run.run_id, &frame).await?;
        drop(frame);
        run.rows_written += loaded.rows;
        tracing::info!(
            view = run.view.name,
            slice_from = item.slice.from,
            slice_until = item.slice.until,
            rows = loaded.rows,
            compute_seconds,
            encode_seconds = loaded.encode_seconds,
            copy_seconds = loaded.copy_seconds,
            "computed and loaded the view's rows of a time slice"
        );
    }
    Ok(runs)
}

/// One view's records of one time slice: a unit of a batch's computation.
struct SliceOfView {
    /// The view's index in the run's views.
    view: usize,
    slice: slices::TimeSlice,
}

/// Each view's time slices, in view order: one slice of every record when the run reads at
/// most `settings.slice_records`, else slices of about that many records (a bucket holding more
/// is a slice of its own) counted from the records' event times.
async fn sliced(
    settings: &BatchSettings,
    views: &[View],
    records: &polars::prelude::LazyFrame,
    rows_read: u64,
) -> Result<Vec<SliceOfView>, BatchError> {
    let max_records = settings.slice_records.get();
    if rows_read <= max_records {
        return Ok((0..views.len())
            .map(|view| SliceOfView {
                view,
                slice: slices::TimeSlice::ALL,
            })
            .collect());
    }
    let (records, views_owned, schema) = (
        records.clone(),
        views.to_vec(),
        settings.lake.schema().clone(),
    );
    let started = Instant::now();
    let per_view = tokio::task::spawn_blocking(move || {
        views_owned
            .iter()
            .map(|view| slices::time_slices(records.clone(), view, &schema, max_records))
            .collect::<polars::prelude::PolarsResult<Vec<_>>>()
    })
    .await??;
    tracing::info!(
        rows_read,
        max_records,
        slices = per_view.iter().map(Vec::len).sum::<usize>(),
        seconds = started.elapsed().as_secs_f64(),
        "sliced the views' records by time"
    );
    Ok(per_view
        .into_iter()
        .enumerate()
        .flat_map(|(view, slices)| {
            slices
                .into_iter()
                .map(move |slice| SliceOfView { view, slice })
        })
        .collect())
}

/// Waits until the Delta log holds, for every partition of the cut, a position at or past it.
async fn wait_for_sink(
    lake: &Lake,
    table: &mut deltalake::DeltaTable,
    cut: &Positions,
    timeout: Duration,
) -> Result<(), BatchError> {
    let started = Instant::now();
    let partitions: Vec<i32> = cut.keys().copied().collect();
    loop {
        table.update_state().await?;
        let committed = lake.positions_in_log(table, &partitions).await?;
        let lagging: Vec<String> = cut
            .iter()
            .filter(|(p, needed)| committed.get(p).copied().unwrap_or(0) < **needed)
            .map(|(p, needed)| {
                format!("{p}: {} / {needed}", committed.get(p).copied().unwrap_or(0))
            })
            .collect();
        if lagging.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(BatchError::SinkBehind {
                waited_s: started.elapsed().as_secs(),
                lagging: lagging.join(", "),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
