//! The batch layer against the real services: batch rows and the exact merge checked against
//! the oracle, concurrent runs, and a run killed in the middle.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;

use crate::compare::{Source, assert_rows_equal, read_rows};
use crate::oracle::{self, RawMessage};
use crate::support::{Pipeline, Running, read_topic, run, speed_caught_up, stderr, wait_until};

mod idle_partitions;
mod publish_gate;
pub mod spark;
mod spark_staging;

use publish_gate::PublishGate;

fn batch_run(pipeline: &Pipeline) -> std::process::Output {
    batch_run_within(pipeline, 120)
}

/// `braid batch run`, waiting at most `seconds` for the sink to reach the cut.
fn batch_run_within(pipeline: &Pipeline, seconds: u64) -> std::process::Output {
    run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", &seconds.to_string()]))
}

fn start_batch_run(pipeline: &Pipeline, name: &str) -> Running {
    let log = crate::support::log_file(&format!("{}-batch-{name}", pipeline.topic));
    let command = pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn();
    Running(command.unwrap())
}

/// Reads the merged rows and the speed layer's stored positions in one database snapshot,
/// and checks the rows against the oracle over exactly the records below those positions.
async fn assert_merged_exact(pool: &PgPool, pipeline: &Pipeline, when: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    let positions = schemas::pg::load_positions(&mut *tx, &pipeline.topic)
        .await
        .unwrap();
    let merged = read_rows(&mut tx, Source::Merged).await;
    let served = read_rows(&mut tx, Source::Serving).await;
    let messages = read_topic(&pipeline.topic);
    let covered: Vec<RawMessage> = messages
        .into_iter()
        .filter(|m| m.offset < positions.get(&m.partition).copied().unwrap_or(0))
        .collect();
    // Distinct counts: the merged sketches of the same snapshot, byte for byte.
    let sketches = crate::compare::distinct_sketches_match(&mut tx, &covered).await;
    // Quantiles and samples: of exactly the records below the positions.
    let latency = crate::latency::latency_sketches_match(&mut tx, &covered).await;
    tx.commit().await.unwrap();
    assert_eq!(
        served, merged,
        "{when}: the serving SQL views answer the merge"
    );
    assert_rows_equal(&oracle::demo_views(&covered), &merged, when);
    if let Err(difference) = sketches.and(latency) {
        panic!("{when}: {difference}");
    }
}

/// The cut of the active runs: (covered epoch, cut offsets).
async fn active_cut(pool: &PgPool) -> (i64, BTreeMap<i32, i64>) {
    let (cut_epoch, covered): (i64, i64) =
        sqlx::query_as("SELECT cut_epoch, covered_epoch FROM braid_internal.batch_runs WHERE status = 'active' LIMIT 1")
            .fetch_one(pool)
            .await
            .unwrap();
    let offsets: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, cut_offset FROM braid_internal.cuts WHERE epoch = $1")
            .bind(cut_epoch)
            .fetch_all(pool)
            .await
            .unwrap();
    (covered, offsets.into_iter().collect())
}

#[sqlx::test(migrations = false)]
async fn batch_rows_equal_an_independent_fold_over_the_records_below_the_cut(pool: PgPool) {
    batch_rows_equal_a_fold(&pool, Pipeline::new("batch-exact", &pool).await).await;
}

/// The same with the lake on the S3-compatible server: the sink writes, the batch reads the
/// pinned version's files from S3 (Polars' object-store client).
#[sqlx::test(migrations = false)]
async fn on_s3_batch_rows_equal_an_independent_fold_over_the_records_below_the_cut(pool: PgPool) {
    batch_rows_equal_a_fold(&pool, Pipeline::on_s3("batch-exact-s3", &pool).await).await;
}

async fn batch_rows_equal_a_fold(pool: &PgPool, pipeline: Pipeline) {
    pipeline.produce(20_000, 31, 3);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    // More records after the speed layer caught up, so the cut falls inside the stream.
    speed.kill();
    pipeline.produce(5_000, 32, 3);
    let published = batch_run(&pipeline);
    assert!(published.status.success(), "{}", stderr(&published));
    sink.kill();

    let (covered, cut) = active_cut(pool).await;
    let messages = read_topic(&pipeline.topic);
    let below: Vec<RawMessage> = messages
        .iter()
        .filter(|m| m.offset < cut.get(&m.partition).copied().unwrap_or(0))
        .cloned()
        .collect();
    assert_eq!(
        below.len(),
        20_000,
        "the cut is where the speed layer stood"
    );
    let batch = read_rows(&mut pool.acquire().await.unwrap(), Source::Batch).await;
    assert_rows_equal(&oracle::demo_views(&below), &batch, "batch rows");
    let leftover = read_rows(
        &mut pool.acquire().await.unwrap(),
        Source::Speed(0, covered - 1),
    )
    .await;
    assert!(
        leftover.values().all(|rows| rows.is_empty()),
        "speed rows below the covered epoch are deleted"
    );

    // The speed layer resumes: the merge covers everything, exactly.
    let mut speed = pipeline.start_speed("b", "a");
    speed_caught_up(pool, &pipeline, &mut [&mut speed]).await;
    speed.kill();
    assert_merged_exact(pool, &pipeline, "after the speed layer resumed").await;
}

#[sqlx::test(migrations = false)]
async fn merged_totals_are_exact_at_every_moment_while_the_pipeline_runs(pool: PgPool) {
    merged_totals_exact_while_running(&pool, Pipeline::new("batch-merge", &pool).await).await;
}

/// The same with the lake on S3 and every batch run computed by Spark (local mode, reading
/// the table through S3A).
#[sqlx::test(migrations = false)]
#[ignore = "Spark on S3: a 700 MB jar download once, a minute or more per run; scripts/spark-tests.sh runs it"]
async fn on_s3_with_spark_merged_totals_are_exact_at_every_moment_while_the_pipeline_runs(
    pool: PgPool,
) {
    let mut pipeline = Pipeline::on_s3("batch-merge-spark-s3", &pool).await;
    pipeline.env = spark::spark_engine_env(spark::S3_PACKAGES);
    merged_totals_exact_while_running(&pool, pipeline).await;
}

async fn merged_totals_exact_while_running(pool: &PgPool, pipeline: Pipeline) {
    pipeline.produce(1, 33, 4);
    let mut producer = pipeline.produce_in_background(50_000, 34, 6_000, 4);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    wait_until("the first flushes", Duration::from_secs(60), || async {
        crate::support::stored_total(pool, &pipeline.topic).await > 3_000
    })
    .await;
    assert_merged_exact(pool, &pipeline, "before the first batch").await;
    let first = batch_run(&pipeline);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_merged_exact(pool, &pipeline, "right after a publish").await;
    // Held at its publish: the second run has taken its cut and loaded its rows.
    let gate = PublishGate::close(pool).await;
    let mut second = start_batch_run(&pipeline, "second");
    gate.wait_for_a_run(pool).await;
    assert_merged_exact(pool, &pipeline, "while a batch runs").await;
    gate.open().await;
    assert!(second.wait_success(), "the second batch run failed");
    assert_merged_exact(pool, &pipeline, "after the second publish").await;
    assert!(producer.wait_success());
    speed_caught_up(pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    let third = batch_run(&pipeline);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_merged_exact(pool, &pipeline, "at the end").await;
    let (runs,): (i64,) =
        sqlx::query_as("SELECT count(DISTINCT cut_epoch) FROM braid_internal.batch_runs WHERE status IN ('active', 'superseded')")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(runs, 3);
}

#[sqlx::test(migrations = false)]
async fn two_batch_runs_at_once_one_publishes_and_the_other_stops_cleanly(pool: PgPool) {
    let pipeline = Pipeline::new("batch-twice", &pool).await;
    pipeline.produce(5_000, 35, 2);
    let mut speed = pipeline.start_speed("a", "a");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;
    // No sink yet: the first run takes its cut and waits for the lake, holding the lock.
    let mut first = start_batch_run(&pipeline, "first");
    wait_until(
        "the first run to take its cut",
        Duration::from_secs(60),
        || async {
            let (cuts,): (i64,) = sqlx::query_as("SELECT count(*) FROM braid_internal.cuts")
                .fetch_one(&pool)
                .await
                .unwrap();
            cuts > 0
        },
    )
    .await;
    let second = batch_run(&pipeline);
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("another batch run is in progress"),
        "{}",
        stderr(&second)
    );
    let mut sink = pipeline.start_sink("a", "a");
    assert!(
        first.wait_success(),
        "the first run publishes once the sink catches up"
    );
    sink.kill();
    speed.kill();
    let (active,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM braid_internal.batch_runs WHERE status = 'active'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let views = schemas::BraidConfig::load(Some(&crate::support::repo_root().join("braid.toml")))
        .unwrap()
        .views
        .len();
    assert_eq!(active, views as i64, "one active run per view");
    assert_merged_exact(&pool, &pipeline, "after the first run published").await;
}

#[sqlx::test(migrations = false)]
async fn a_batch_run_killed_mid_run_leaves_the_previous_run_active(pool: PgPool) {
    let pipeline = Pipeline::new("batch-kill", &pool).await;
    pipeline.produce(8_000, 36, 2);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    let first = batch_run(&pipeline);
    assert!(first.status.success(), "{}", stderr(&first));
    let active_before: Vec<(i64,)> = sqlx::query_as(
        "SELECT run_id FROM braid_internal.batch_runs WHERE status = 'active' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let batch_before = read_rows(&mut pool.acquire().await.unwrap(), Source::Batch).await;

    // The next run is killed in its publish, after its COPY: its rows are loaded under its run
    // ids and it holds the publish transaction's lock queue.
    pipeline.produce(4_000, 37, 2);
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    let gate = PublishGate::close(&pool).await;
    let mut doomed = start_batch_run(&pipeline, "doomed");
    gate.wait_for_a_run(&pool).await;
    let config =
        schemas::BraidConfig::load(Some(&crate::support::repo_root().join("braid.toml"))).unwrap();
    let mut loaded = 0;
    for view in &config.views {
        let layout = schemas::pg_layout::ViewLayout::of(view);
        let (rows,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE run_id IN \
             (SELECT run_id FROM braid_internal.batch_runs WHERE status = 'running')",
            layout.batch_table
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        loaded += rows;
    }
    assert!(
        loaded > 0,
        "the doomed run had copied its rows when it was killed"
    );
    doomed.kill();
    gate.open().await;
    sink.kill();
    let active_after: Vec<(i64,)> = sqlx::query_as(
        "SELECT run_id FROM braid_internal.batch_runs WHERE status = 'active' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(active_after, active_before, "the previous run stays active");
    assert_eq!(
        read_rows(&mut pool.acquire().await.unwrap(), Source::Batch).await,
        batch_before,
        "nothing half-published"
    );
    assert_merged_exact(&pool, &pipeline, "after the kill").await;

    let mut sink = pipeline.start_sink("b", "a");
    let next = batch_run(&pipeline);
    assert!(next.status.success(), "{}", stderr(&next));
    sink.kill();
    speed.kill();
    assert_merged_exact(&pool, &pipeline, "after the next run").await;
    let (interrupted,): (i64,) = sqlx::query_as("SELECT count(*) FROM braid_internal.batch_runs WHERE status = 'failed' AND error = 'interrupted'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let views = schemas::BraidConfig::load(Some(&crate::support::repo_root().join("braid.toml")))
        .unwrap()
        .views
        .len();
    assert_eq!(
        interrupted, views as i64,
        "the killed run's runs (one per view) are recorded as interrupted"
    );
}
