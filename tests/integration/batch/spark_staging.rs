//! What Braid does around a Spark job, with a fake spark-submit where the point is Braid's own
//! behaviour (the real job is tests in spark.rs): the staging folder it removes is only the
//! run's own, recorded one, whatever the lake URI's scheme; output it cannot find or count is
//! never published; a job dies with a SIGKILLed Braid and the next run removes what it left.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutPayload};
use sqlx::PgPool;

use crate::compare::{Source, read_rows};
use crate::support::{Pipeline, Running, S3Lake, run, speed_caught_up, stderr, wait_until};

/// A spark-submit stand-in: takes spark-submit's arguments (the job file last) and does what
/// `FAKE_SPARK_MODE` says: `fail` exits 1 at once; `nothing` exits 0 having written nothing;
/// `claim` writes a manifest claiming rows that are not there; `slow` stages a file per view,
/// writes its own pid and its child's (`FAKE_SPARK_PIDS`) and waits for the child (sleep 600).
const FAKE_SPARK_SUBMIT: &str = r#"#!/usr/bin/env python3
import json, os, subprocess, sys
mode = os.environ["FAKE_SPARK_MODE"]
if mode == "fail":
    print("fake spark-submit: RuntimeError: failing at once", file=sys.stderr)
    sys.exit(1)
with open(sys.argv[-1]) as f:
    job = json.load(f)
def local(uri):
    return uri[len("file://"):] if uri.startswith("file://") else uri
if mode == "nothing":
    sys.exit(0)
if mode == "claim":
    for view in job["views"]:
        os.makedirs(local(view["output"]), exist_ok=True)
    views = {view["name"]: {"rows": 5} for view in job["views"]}
    with open(local(job["manifest"]), "w") as f:
        json.dump({"run": job["run"], "records_read": 1, "views": views}, f)
    sys.exit(0)
if mode == "slow":
    for view in job["views"]:
        os.makedirs(local(view["output"]), exist_ok=True)
        with open(os.path.join(local(view["output"]), "part-00000-fake.parquet"), "wb") as f:
            f.write(b"staged")
    child = subprocess.Popen(["sleep", "600"])
    pids = os.environ["FAKE_SPARK_PIDS"]
    with open(pids + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.rename(pids + ".tmp", pids)
    child.wait()
    sys.exit(0)
sys.exit(f"unknown FAKE_SPARK_MODE {mode}")
"#;

/// Writes the fake spark-submit into a fresh folder and returns its path.
fn fake_spark_submit(pipeline: &Pipeline) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir()
        .join("braid-fake-spark")
        .join(&pipeline.topic);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spark-submit");
    std::fs::write(&path, FAKE_SPARK_SUBMIT).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `braid batch run` with the Spark engine and the fake spark-submit in `mode`.
fn fake_spark_batch(pipeline: &Pipeline, submit: &Path, mode: &str) -> std::process::Command {
    let mut command = pipeline.braid();
    command
        .args(["batch", "run", "--wait-timeout", "120"])
        .env("BRAID__BATCH__ENGINE", "spark")
        .env("BRAID__BATCH__SPARK__SUBMIT", submit)
        .env("BRAID__BATCH__SPARK__PACKAGES", "[]")
        .env("FAKE_SPARK_MODE", mode);
    command
}

/// Records in Kafka, applied by the speed layer and committed by the sink (so a batch run
/// reaches its engine); both stopped after.
async fn pipeline_with_records(pool: &PgPool, pipeline: &Pipeline) {
    pipeline.produce(600, 17, 2);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(pool, pipeline, &mut [&mut speed, &mut sink]).await;
    crate::support::sink_caught_up(pipeline, &mut sink).await;
    speed.kill();
    sink.kill();
}

/// A batch run's row, as these tests check it.
#[derive(Debug, sqlx::FromRow)]
struct RunRow {
    run_id: i64,
    status: String,
    error: Option<String>,
    staging_uri: Option<String>,
}

/// The runs' statuses, errors and recorded staging folders, by run id.
async fn runs(pool: &PgPool) -> Vec<RunRow> {
    sqlx::query_as(
        "SELECT run_id, status, error, staging_uri FROM braid_internal.batch_runs ORDER BY run_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// What the serving views answer, per view.
async fn served(pool: &PgPool) -> std::collections::BTreeMap<String, crate::oracle::ViewRows> {
    let mut connection = pool.acquire().await.unwrap();
    read_rows(&mut connection, Source::Serving).await
}

fn bucket_store(lake: &S3Lake) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(&lake.endpoint)
        .with_bucket_name(std::env::var("BRAID_S3_BUCKET").unwrap())
        .with_region("us-east-1")
        .with_access_key_id(&lake.access_key_id)
        .with_secret_access_key(&lake.secret_access_key)
        .with_allow_http(true)
        .build()
        .unwrap()
}

async fn keys_under(store: &AmazonS3, prefix: &str) -> BTreeSet<String> {
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

/// Issue 35, item 3: with `lake.uri = "s3a://bucket/prefix"` a spark-submit that fails at once
/// deleted every object in the bucket. Now the table, other prefixes, objects at the bucket's
/// root and a `_braid_staging/run-N` folder no run recorded all survive.
#[sqlx::test(migrations = false)]
async fn a_failed_spark_job_on_an_s3a_lake_deletes_nothing_but_its_own_staging(pool: PgPool) {
    let mut pipeline = Pipeline::on_s3("spark-s3a-staging", &pool).await;
    let crate::support::TestLake::S3(lake) = pipeline.lake.clone() else {
        unreachable!()
    };
    let prefix = lake.uri.rsplit_once('/').unwrap().1.to_string();
    let s3a = lake.uri.replacen("s3://", "s3a://", 1);
    pipeline.env.push(("BRAID__LAKE__URI".into(), s3a.clone()));
    pipeline_with_records(&pool, &pipeline).await;

    let store = bucket_store(&lake);
    let unrelated = [
        format!("{prefix}.unrelated-at-the-root"),
        format!("{prefix}-sibling/data.bin"),
        format!("{prefix}/_braid_staging/run-999999999/not-recorded"),
        format!("{prefix}/_braid_staging/run-1x/not-a-run"),
    ];
    for key in &unrelated {
        store
            .put(&key.as_str().into(), PutPayload::from_static(b"keep"))
            .await
            .unwrap();
    }
    let table_before = keys_under(&store, &prefix).await;
    assert!(
        table_before.iter().any(|k| k.contains("/_delta_log/")),
        "the sink committed to the table: {table_before:?}"
    );

    let submit = fake_spark_submit(&pipeline);
    let failed = run(&mut fake_spark_batch(&pipeline, &submit, "fail"));
    assert!(
        !failed.status.success(),
        "the job fails: {}",
        stderr(&failed)
    );
    assert!(
        stderr(&failed).contains("failing at once"),
        "the run reports the job's error: {}",
        stderr(&failed)
    );

    let table_after = keys_under(&store, &prefix).await;
    let lost: Vec<&String> = table_before.difference(&table_after).collect();
    assert!(
        lost.is_empty(),
        "objects deleted by the failed run: {lost:?}"
    );
    for key in &unrelated {
        assert!(
            store.head(&key.as_str().into()).await.is_ok(),
            "{key} survives"
        );
    }
    // The run recorded its folder, under the table's `_braid_staging`, and forgot it once removed.
    let failed_runs = runs(&pool).await;
    assert!(
        failed_runs
            .iter()
            .all(|r| r.status == "failed" && r.staging_uri.is_none()),
        "{failed_runs:?}"
    );
    for key in unrelated {
        store.delete(&key.as_str().into()).await.unwrap();
    }
}

/// Issue 35, item 5: a job that ends well but whose output Braid cannot find (no manifest: a
/// `file://` lake read as a path, a staging folder on another machine) or cannot count (fewer
/// rows than the job wrote) published 0 rows and deleted the speed rows it covered. Now the run
/// fails with the reason and the served rows are those before it.
#[sqlx::test(migrations = false)]
async fn spark_output_that_cannot_be_found_is_never_published(pool: PgPool) {
    let mut pipeline = Pipeline::new("spark-output-missing", &pool).await;
    pipeline_with_records(&pool, &pipeline).await;
    // The same table, as a `file://` URI.
    let path = pipeline.lake.uri();
    pipeline
        .env
        .push(("BRAID__LAKE__URI".into(), format!("file://{path}")));
    let before = served(&pool).await;
    assert!(
        before.values().any(|rows| !rows.is_empty()),
        "the speed layer serves rows"
    );
    let submit = fake_spark_submit(&pipeline);
    for (mode, reason) in [
        ("nothing", "manifest"),
        ("claim", "the job wrote 5 rows, 0 were found"),
    ] {
        let output = run(&mut fake_spark_batch(&pipeline, &submit, mode));
        assert!(
            !output.status.success(),
            "{mode}: the run must fail: {}",
            stderr(&output)
        );
        let last = runs(&pool).await.pop().unwrap();
        assert_eq!(last.status, "failed", "{mode}");
        assert!(
            last.error.as_deref().unwrap_or_default().contains(reason),
            "{mode}: {last:?}"
        );
        assert_eq!(
            served(&pool).await,
            before,
            "{mode}: the served rows are kept"
        );
    }
    let staging = PathBuf::from(&path).join("_braid_staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "the runs' staging folders are removed"
    );
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        !matches!(state, Some(Some('Z' | 'X')) | None)
    })
}

/// Issue 35, item 14: spark-submit runs in a process group of its own, so a SIGKILLed
/// `braid batch run` left the job (and what it started) running, and its staging folder behind.
/// Now the job dies with Braid, and the next run removes the dead run's recorded folder (and
/// nothing else).
#[sqlx::test(migrations = false)]
async fn a_spark_job_dies_with_a_killed_braid_and_the_next_run_removes_its_staging(pool: PgPool) {
    let pipeline = Pipeline::new("spark-killed", &pool).await;
    pipeline_with_records(&pool, &pipeline).await;
    let submit = fake_spark_submit(&pipeline);
    let pids_file = submit.with_file_name("pids");
    let log = crate::support::log_file(&format!("{}-batch-killed", pipeline.topic));
    let mut batch = Running(
        fake_spark_batch(&pipeline, &submit, "slow")
            .env("FAKE_SPARK_PIDS", &pids_file)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until("the fake job to start", Duration::from_secs(120), || {
        batch.assert_running("braid batch run");
        let started = pids_file.exists();
        async move { started }
    })
    .await;
    let pids: Vec<u32> = std::fs::read_to_string(&pids_file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.iter().all(|&p| alive(p)), "the job runs: {pids:?}");
    let lake = PathBuf::from(pipeline.lake.uri());
    let dead = runs(&pool).await.remove(0);
    let dead_run = dead.run_id;
    let recorded = PathBuf::from(
        dead.staging_uri
            .expect("the staging folder is recorded before the job starts"),
    );
    assert_eq!(
        recorded,
        lake.join("_braid_staging").join(format!("run-{dead_run}"))
    );
    assert!(recorded.exists(), "the job staged files");
    let unrecorded = lake.join("_braid_staging/run-999999999/keep");
    std::fs::create_dir_all(unrecorded.parent().unwrap()).unwrap();
    std::fs::write(&unrecorded, b"keep").unwrap();

    batch.kill(); // SIGKILL
    wait_until(
        "the job and its child to die with braid",
        Duration::from_secs(30),
        || {
            let running = pids.iter().any(|&p| alive(p));
            async move { !running }
        },
    )
    .await;

    let next = run(&mut fake_spark_batch(&pipeline, &submit, "fail"));
    assert!(!next.status.success());
    assert!(
        !recorded.exists(),
        "the next run removed the dead run's staging folder"
    );
    assert!(unrecorded.exists(), "a folder no run recorded is kept");
    let after = runs(&pool).await;
    assert!(after.iter().all(|r| r.staging_uri.is_none()), "{after:?}");
    assert_eq!(
        after[0].error.as_deref(),
        Some("interrupted"),
        "the dead run is marked interrupted"
    );
}
