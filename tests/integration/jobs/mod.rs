//! The scheduler against the real services: cron at second resolution, every run recorded,
//! and a standby that takes over when the active scheduler is killed.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use sqlx::PgPool;

use crate::support::{Pipeline, log_of, run, stderr, wait_until};

const EVERY_TWO_SECONDS: [(&str, &str); 3] = [
    ("BRAID__JOBS__BATCH__SCHEDULE", "*/2 * * * * *"),
    ("BRAID__JOBS__VACUUM__ENABLED", "false"),
    ("BRAID__JOBS__COMPACT__ENABLED", "false"),
];

async fn succeeded_batches(pool: &PgPool) -> Vec<DateTime<Utc>> {
    let rows: Vec<(DateTime<Utc>,)> = sqlx::query_as(
        "SELECT started_at FROM braid_internal.job_runs WHERE job = 'batch' AND trigger = 'schedule' AND status = 'succeeded' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().map(|(t,)| t).collect()
}

#[sqlx::test(migrations = false)]
async fn the_scheduler_fires_on_schedule_records_every_run_and_hands_over_to_a_standby(
    pool: PgPool,
) {
    let pipeline = Pipeline::new("jobs-handover", &pool).await;
    pipeline.produce(3_000, 41, 2);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    let mut active = pipeline.start_scheduler("active", &EVERY_TWO_SECONDS);
    wait_until(
        "the first scheduler to become active",
        Duration::from_secs(60),
        || async { log_of(&pipeline, "jobs", "active").contains("active scheduler") },
    )
    .await;
    let mut standby = pipeline.start_scheduler("standby", &EVERY_TWO_SECONDS);
    wait_until(
        "the second scheduler to wait as standby",
        Duration::from_secs(60),
        || async {
            log_of(&pipeline, "jobs", "standby").contains("standby: another scheduler is active")
        },
    )
    .await;
    wait_until(
        "two scheduled batch runs",
        Duration::from_secs(90),
        || async { succeeded_batches(&pool).await.len() >= 2 },
    )
    .await;

    active.kill();
    let before_handover = succeeded_batches(&pool).await.len();
    wait_until(
        "the standby to take over and run twice",
        Duration::from_secs(90),
        || {
            standby.assert_running("the standby scheduler");
            async {
                log_of(&pipeline, "jobs", "standby").contains("active scheduler")
                    && succeeded_batches(&pool).await.len() >= before_handover + 2
            }
        },
    )
    .await;
    standby.kill();

    // Every scheduled run started at its cron time: an even second.
    let starts = succeeded_batches(&pool).await;
    for start in &starts {
        assert_eq!(start.second() % 2, 0, "a */2 run started at {start}");
    }
    // Each recorded run carries what it did.
    let (with_details,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM braid_internal.job_runs WHERE job = 'batch' AND status = 'succeeded'
         AND finished_at IS NOT NULL AND cut_epoch IS NOT NULL AND rows_read IS NOT NULL AND delta_version IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(with_details as usize, starts.len());

    let listed = run(pipeline.braid().args(["jobs", "list", "--limit", "100"]));
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.lines()
            .filter(|l| l.contains(" batch ") && l.contains("succeeded"))
            .count()
            >= starts.len(),
        "{text}"
    );

    let vacuum = run(pipeline.braid().args(["jobs", "run", "vacuum"]));
    assert!(vacuum.status.success(), "{}", stderr(&vacuum));
    let (vacuums,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM braid_internal.job_runs WHERE job = 'vacuum' AND trigger = 'manual' AND status = 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(vacuums, 1);
    let unknown = run(pipeline.braid().args(["jobs", "run", "compactify"]));
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("unknown job `compactify`"),
        "{}",
        stderr(&unknown)
    );
    speed.kill();
    sink.kill();
}

#[sqlx::test(migrations = false)]
async fn a_failing_job_is_retried_with_backoff_recorded_each_time_and_publishes_nothing(
    pool: PgPool,
) {
    let pipeline = Pipeline::new("jobs-retry", &pool).await;
    pipeline.produce(2_000, 42, 2);
    let mut speed = pipeline.start_speed("a", "a");
    crate::support::wait_until(
        "the speed layer to store positions",
        Duration::from_secs(60),
        || async { crate::support::stored_total(&pool, &pipeline.topic).await == 2_000 },
    )
    .await;
    speed.kill();
    // No sink: every attempt times out waiting for the lake.
    let output = run(pipeline.braid().args(["jobs", "run", "batch"]).envs([
        ("BRAID__JOBS__BATCH__WAIT_TIMEOUT_S", "1"),
        ("BRAID__JOBS__RETRY_ATTEMPTS", "3"),
        ("BRAID__JOBS__RETRY_BACKOFF_MS", "200"),
    ]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("has not reached the cut"),
        "{}",
        stderr(&output)
    );
    let attempts: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, error FROM braid_internal.job_runs WHERE job = 'batch' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts.iter().all(|(status, error)| status == "failed"
        && error.as_deref().is_some_and(|e| e.contains("partitions"))));
    let (active,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM braid_internal.batch_runs WHERE status = 'active'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(active, 0, "a failed run publishes nothing");
}
