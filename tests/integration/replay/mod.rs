//! Operators moving the speed layer through history, on the real services: `braid replay
//! speed` rebuilds the speed rows and leaves the merged totals as they were; `braid recover
//! --from-lake` brings back a speed layer whose positions Kafka deleted, and after a batch
//! run the merge is exact again.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;

use crate::compare::{Source, assert_rows_equal, read_rows};
use crate::oracle::{self, RawMessage};
use crate::support::{
    Pipeline, Running, high_watermarks, read_topic, run, sink_caught_up, speed_caught_up, stderr,
    wait_until,
};

fn batch_run(pipeline: &Pipeline) {
    let output = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"]));
    assert!(
        output.status.success(),
        "braid batch run: {}",
        stderr(&output)
    );
}

async fn cut_epochs(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT DISTINCT epoch FROM braid_internal.cuts ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn replay_speed_rebuilds_the_speed_rows_and_leaves_the_merged_totals_as_they_were(
    pool: PgPool,
) {
    let pipeline = Pipeline::new("replay-speed", &pool).await;
    pipeline.produce(6_000, 51, 4);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    batch_run(&pipeline);
    pipeline.produce(3_000, 52, 4);
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    batch_run(&pipeline);
    pipeline.produce(3_000, 53, 4);
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;

    let before = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    let expected = oracle::demo_views(read_topic(&pipeline.topic).iter());
    assert_rows_equal(&expected, &before, "before the replay");

    // A start before the last cut would count records twice: refused, nothing changes.
    let cuts = cut_epochs(&pool).await;
    assert_eq!(cuts.len(), 2, "two batch runs took two cuts");
    let refused =
        run(pipeline
            .braid()
            .args(["replay", "speed", "--from-cut", &cuts[0].to_string()]));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("would count them twice"),
        "{}",
        stderr(&refused)
    );
    let unchanged = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(&expected, &unchanged, "after the refused replay");

    // The replay, with the speed layer running; it waits until the speed layer read again.
    let replayed = run(pipeline
        .braid()
        .args(["replay", "speed", "--wait-timeout", "120"]));
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    let said = String::from_utf8_lossy(&replayed.stdout).to_string();
    assert!(said.contains(&format!("from cut {}", cuts[1])), "{said}");
    assert!(
        !said.contains("deleted 0 speed rows") && !said.contains(" 0 records to read again"),
        "{said}"
    );
    assert!(said.contains("rebuilt"), "{said}");
    speed.assert_running("braid speed after the replay");
    let after = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(&expected, &after, "after the replay");
    assert_eq!(before, after, "the merged totals are the same as before");
    // The rebuilt speed rows' sketches, unioned with the batch's, are PostgreSQL's own over
    // the records, byte for byte (in the extension's EXPLICIT, SPARSE and FULL forms).
    crate::compare::distinct_sketches_match(
        &mut pool.acquire().await.unwrap(),
        &read_topic(&pipeline.topic),
    )
    .await
    .expect("the sketches after the replay");
    crate::latency::latency_sketches_match(
        &mut pool.acquire().await.unwrap(),
        &read_topic(&pipeline.topic),
    )
    .await
    .expect("the quantile sketches and samples after the replay");
}

#[sqlx::test(migrations = false)]
async fn recover_from_the_lake_brings_back_a_speed_layer_that_kafka_left_behind(pool: PgPool) {
    recover_from_the_lake_brings_back_a_speed_layer_that_kafka_left_behind_on(
        &pool,
        Pipeline::new("replay-recover", &pool).await,
    )
    .await;
}

#[sqlx::test(migrations = false)]
async fn on_s3_recover_from_the_lake_brings_back_a_speed_layer_that_kafka_left_behind(
    pool: PgPool,
) {
    recover_from_the_lake_brings_back_a_speed_layer_that_kafka_left_behind_on(
        &pool,
        Pipeline::on_s3("replay-recover-s3", &pool).await,
    )
    .await;
}

async fn recover_from_the_lake_brings_back_a_speed_layer_that_kafka_left_behind_on(
    pool: &PgPool,
    pipeline: Pipeline,
) {
    pipeline.produce(3_000, 61, 2);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    batch_run(&pipeline);
    // The speed layer stops; the stream goes on and only the sink keeps up.
    speed.kill();
    pipeline.produce(3_000, 62, 2);
    sink_caught_up(&pipeline, &mut sink).await;
    let mut messages: BTreeMap<(i32, i64), RawMessage> = read_topic(&pipeline.topic)
        .into_iter()
        .map(|m| ((m.partition, m.offset), m))
        .collect();
    // Kafka still holds everything the speed layer needs: recovering would skip it.
    let refused = run(pipeline.braid().args(["recover", "--from-lake"]));
    assert!(!refused.status.success(), "recover ran with nothing lost");
    assert!(
        stderr(&refused).contains("not behind Kafka's retention")
            && stderr(&refused).contains("--force"),
        "{}",
        stderr(&refused)
    );
    // Retention deletes everything Kafka holds.
    crate::kafka_admin::delete_records_below(&pipeline.topic, &high_watermarks(&pipeline.topic))
        .await;
    let stuck = run(pipeline.braid().arg("speed"));
    assert!(!stuck.status.success(), "the speed layer cannot go on");
    assert!(
        stderr(&stuck).contains("out of range"),
        "{}",
        stderr(&stuck)
    );

    let recovered = run(pipeline.braid().args(["recover", "--from-lake"]));
    assert!(recovered.status.success(), "{}", stderr(&recovered));
    let mut speed = pipeline.start_speed("b", "b");
    pipeline.produce(1_000, 63, 2);
    speed_caught_up(pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    for message in read_topic(&pipeline.topic) {
        messages.insert((message.partition, message.offset), message);
    }
    batch_run(&pipeline);
    let merged = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(
        &oracle::demo_views(messages.values()),
        &merged,
        "after recover and a batch run",
    );
}

/// The table's latest version and the sink positions it records.
async fn lake_state(pipeline: &Pipeline) -> (i64, BTreeMap<i32, i64>) {
    let config =
        schemas::BraidConfig::load(Some(&crate::support::repo_root().join("braid.toml"))).unwrap();
    let table = pipeline
        .lake
        .open(&config.schema)
        .await
        .expect("the table opens");
    let partitions: Vec<i32> = high_watermarks(&pipeline.topic).keys().copied().collect();
    let positions = batch_layer::lake::positions_in_log(&table, &pipeline.topic, &partitions)
        .await
        .unwrap();
    (table.version().unwrap() as i64, positions)
}

/// purchases_by_country rows from a CSV written by `braid replay as-of`.
fn purchases_from_csv(text: &str) -> oracle::ViewRows {
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "country,device,bucket_start,count,sum_price_cents,min_price_cents,max_price_cents,count_price_cents"
    );
    let mut rows = oracle::ViewRows::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let number = |s: &str| (!s.is_empty()).then(|| s.parse::<i128>().unwrap());
        let bucket = chrono::DateTime::parse_from_rfc3339(fields[2])
            .unwrap()
            .timestamp_micros();
        rows.insert(
            (vec![text(fields[0]), text(fields[1])], bucket),
            fields[3..].iter().map(|f| number(f)).collect(),
        );
    }
    rows
}

#[sqlx::test(migrations = false)]
async fn as_of_a_version_equals_the_fold_over_the_records_that_version_holds(pool: PgPool) {
    as_of_a_version_equals_the_fold_over_the_records_that_version_holds_on(
        &pool,
        Pipeline::new("replay-as-of", &pool).await,
    )
    .await;
}

#[sqlx::test(migrations = false)]
async fn on_s3_as_of_a_version_equals_the_fold_over_the_records_that_version_holds(pool: PgPool) {
    as_of_a_version_equals_the_fold_over_the_records_that_version_holds_on(
        &pool,
        Pipeline::on_s3("replay-as-of-s3", &pool).await,
    )
    .await;
}

async fn as_of_a_version_equals_the_fold_over_the_records_that_version_holds_on(
    pool: &PgPool,
    pipeline: Pipeline,
) {
    pipeline.produce(3_000, 71, 2);
    let mut sink = pipeline.start_sink("a", "a");
    sink_caught_up(&pipeline, &mut sink).await;
    let (then, positions) = lake_state(&pipeline).await;
    pipeline.produce(3_000, 72, 2);
    sink_caught_up(&pipeline, &mut sink).await;
    assert!(lake_state(&pipeline).await.0 > then, "the table moved on");

    let as_of = |view: &str, out: &std::path::Path| {
        run(pipeline
            .braid()
            .args([
                "replay",
                "as-of",
                "--version",
                &then.to_string(),
                "--view",
                view,
                "--out",
            ])
            .arg(out))
    };
    let out = std::env::temp_dir().join(format!("{}-as-of.csv", pipeline.topic));
    let output = as_of("purchases_by_country", &out);
    assert!(output.status.success(), "{}", stderr(&output));
    let below: Vec<RawMessage> = read_topic(&pipeline.topic)
        .into_iter()
        .filter(|m| {
            positions
                .get(&m.partition)
                .is_some_and(|next| m.offset < *next)
        })
        .collect();
    let expected = oracle::demo_views(below.iter());
    let got = purchases_from_csv(&std::fs::read_to_string(&out).unwrap());
    assert_rows_equal(
        &expected
            .into_iter()
            .filter(|(v, _)| *v == "purchases_by_country")
            .collect(),
        &BTreeMap::from([("purchases_by_country".to_string(), got)]),
        &format!("as of version {then}"),
    );

    let parquet = out.with_extension("parquet");
    let output = as_of("page_views", &parquet);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(std::fs::read(&parquet).unwrap().starts_with(b"PAR1"));
    let bad = run(pipeline.braid().args([
        "replay",
        "as-of",
        "--version",
        "1",
        "--view",
        "page_views",
        "--out",
        "/tmp/x.json",
    ]));
    assert!(
        !bad.status.success() && stderr(&bad).contains(".parquet or .csv"),
        "{}",
        stderr(&bad)
    );
    let (runs,): (i64,) = sqlx::query_as("SELECT count(*) FROM braid_internal.batch_runs")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(runs, 0, "time travel leaves the live views alone");
}

/// A config where page_views has 5-minute buckets instead of 1-minute ones.
fn changed_config(pipeline: &Pipeline) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(crate::support::repo_root().join("braid.toml")).unwrap();
    let from = "group_by = [\"page\"]\nbucket = \"1m\"";
    assert!(
        demo.contains(from),
        "braid.toml's page_views changed; update this test"
    );
    let path = std::env::temp_dir().join(format!("{}-changed.toml", pipeline.topic));
    std::fs::write(
        &path,
        demo.replace(from, "group_by = [\"page\"]\nbucket = \"5m\""),
    )
    .unwrap();
    path
}

#[sqlx::test(migrations = false)]
async fn a_changed_view_is_backfilling_until_its_first_batch_run_and_never_mixes_definitions(
    pool: PgPool,
) {
    let pipeline = Pipeline::new("replay-backfill", &pool).await;
    pipeline.produce(4_000, 81, 2);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    batch_run(&pipeline);
    speed.kill();

    let changed = changed_config(&pipeline);
    let with_change = |command: &mut std::process::Command| {
        command.env("BRAID_CONFIG", &changed);
    };
    let mut migrate = pipeline.braid();
    with_change(migrate.arg("migrate"));
    assert!(run(&mut migrate).status.success());
    let mut list = pipeline.braid();
    with_change(list.args(["jobs", "list"]));
    let listed = String::from_utf8_lossy(&run(&mut list).stdout).to_string();
    assert!(
        listed.contains("view page_views") && listed.contains("is backfilling"),
        "{listed}"
    );
    assert!(
        !listed.contains("view events_by_type"),
        "unchanged views are not backfilling: {listed}"
    );

    let mut new_speed = pipeline.braid();
    with_change(
        new_speed
            .arg("speed")
            .stdout(std::process::Stdio::null())
            .stderr(crate::support::log_file(&format!(
                "{}-speed-changed",
                pipeline.topic
            ))),
    );
    let mut new_speed = Running(new_speed.spawn().unwrap());
    pipeline.produce(2_000, 82, 2);
    speed_caught_up(&pool, &pipeline, &mut [&mut new_speed, &mut sink]).await;
    let mut batch = pipeline.braid();
    with_change(batch.args(["batch", "run", "--wait-timeout", "120"]));
    let output = run(&mut batch);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut list = pipeline.braid();
    with_change(list.args(["jobs", "list"]));
    let listed = String::from_utf8_lossy(&run(&mut list).stdout).to_string();
    assert!(!listed.contains("is backfilling"), "{listed}");

    // The answer is the new definition's, over all history: the 1-minute oracle rolled up.
    let mut expected = oracle::ViewRows::new();
    for ((key, bucket), values) in
        &oracle::demo_views(read_topic(&pipeline.topic).iter())["page_views"]
    {
        let rolled = bucket.div_euclid(300_000_000) * 300_000_000;
        let entry = expected
            .entry((key.clone(), rolled))
            .or_insert_with(|| vec![Some(0), None, None]);
        entry[0] = Some(entry[0].unwrap() + values[0].unwrap());
        entry[1] = match (entry[1], values[1]) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        entry[2] = entry[2].max(values[2]);
    }
    type PageRow = (Option<String>, i64, i64, Option<String>, Option<i64>);
    let rows: Vec<PageRow> = sqlx::query_as(
        "SELECT page, (extract(epoch FROM bucket_start) * 1000000)::bigint, count, sum_duration_ms::text, max_duration_ms FROM serving.page_views",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut got = oracle::ViewRows::new();
    for (page, bucket, count, sum, max) in rows {
        assert_eq!(
            bucket % 300_000_000,
            0,
            "a row of the old 1-minute definition: {page:?} at {bucket}"
        );
        got.insert(
            (vec![page], bucket),
            vec![
                Some(i128::from(count)),
                sum.map(|s| s.parse().unwrap()),
                max.map(i128::from),
            ],
        );
    }
    assert_rows_equal(
        &BTreeMap::from([("page_views", expected)]),
        &BTreeMap::from([("page_views".to_string(), got)]),
        "after the changed view's first batch run",
    );
}

#[sqlx::test(migrations = false)]
async fn publish_copies_exactly_the_selected_records_once_even_when_interrupted(pool: PgPool) {
    publish_copies_exactly_the_selected_records_once_even_when_interrupted_on(
        &pool,
        Pipeline::new("replay-publish", &pool).await,
    )
    .await;
}

#[sqlx::test(migrations = false)]
async fn on_s3_publish_copies_exactly_the_selected_records_once_even_when_interrupted(
    pool: PgPool,
) {
    publish_copies_exactly_the_selected_records_once_even_when_interrupted_on(
        &pool,
        Pipeline::on_s3("replay-publish-s3", &pool).await,
    )
    .await;
}

async fn publish_copies_exactly_the_selected_records_once_even_when_interrupted_on(
    _pool: &PgPool,
    pipeline: Pipeline,
) {
    pipeline.produce(4_000, 91, 2);
    let mut sink = pipeline.start_sink("a", "a");
    sink_caught_up(&pipeline, &mut sink).await;
    let target = format!("{}.replayed", pipeline.topic);
    let (from, to) = ("2026-01-01T00:00:01Z", "2026-01-01T00:00:03Z");
    let publish = |rate: Option<&str>| {
        let mut command = pipeline.braid();
        command.args([
            "replay", "publish", "--from", from, "--to", to, "--topic", &target,
        ]);
        if let Some(rate) = rate {
            command.args(["--rate", rate]);
        }
        command
    };

    // Interrupted with SIGKILL part way.
    let mut first = publish(Some("300"));
    let mut first = Running(
        first
            .stdout(std::process::Stdio::null())
            .stderr(crate::support::log_file(&format!("{target}-first")))
            .spawn()
            .unwrap(),
    );
    wait_until(
        "part of the records to be published",
        Duration::from_secs(60),
        || {
            first.assert_running("the first publish");
            let target = target.clone();
            async move {
                let marks =
                    std::panic::catch_unwind(|| high_watermarks(&target)).unwrap_or_default();
                marks.values().sum::<i64>() >= 200
            }
        },
    )
    .await;
    first.kill();
    let partial: i64 = high_watermarks(&target).values().sum();

    // Resumed to the end.
    let resumed = run(&mut publish(None));
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        String::from_utf8_lossy(&resumed.stdout).contains("already there"),
        "{}",
        String::from_utf8_lossy(&resumed.stdout)
    );

    let lo = chrono::DateTime::parse_from_rfc3339(from).unwrap();
    let hi = chrono::DateTime::parse_from_rfc3339(to).unwrap();
    let selected: BTreeMap<String, RawMessage> = read_topic(&pipeline.topic)
        .into_iter()
        .filter(|m| oracle::refusal(&m.payload).is_none())
        .filter(|m| {
            let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            let ts = chrono::DateTime::parse_from_rfc3339(event["ts"].as_str().unwrap()).unwrap();
            lo <= ts && ts < hi
        })
        .map(|m| (format!("{}:{}", m.partition, m.offset), m))
        .collect();
    assert!(
        selected.len() > 1_000,
        "the range selects a good part of the stream"
    );
    let published = read_topic(&target);
    assert!(
        (partial as usize) < published.len(),
        "the first run was interrupted before the end"
    );
    let mut sources = BTreeMap::new();
    for message in &published {
        let header = |name: &str| {
            message
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header("braid-replayed").as_deref(), Some("true"));
        let source = header("braid-source").expect("a source header");
        assert!(
            sources.insert(source.clone(), message).is_none(),
            "{source} published twice"
        );
    }
    assert_eq!(
        sources.keys().collect::<Vec<_>>(),
        selected.keys().collect::<Vec<_>>(),
        "exactly the selected records"
    );
    for (source, original) in &selected {
        let copy = sources[source];
        assert_eq!(copy.key, original.key, "{source}: key");
        let a: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&original.payload).unwrap();
        let b: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&copy.payload).unwrap();
        for (field, value) in &a {
            if field == "ts" {
                let x = chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
                let y = chrono::DateTime::parse_from_rfc3339(b[field].as_str().unwrap()).unwrap();
                assert_eq!(x, y, "{source}: ts");
            } else if !value.is_null() {
                assert_eq!(Some(value), b.get(field), "{source}: {field}");
            }
        }
    }
}

#[sqlx::test(migrations = false)]
async fn replays_run_as_admin_jobs_through_the_api(pool: PgPool) {
    use crate::http::{free_address, ready, request, request_with_body};
    let pipeline = Pipeline::new("replay-api", &pool).await;
    pipeline.produce(2_000, 95, 2);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    batch_run(&pipeline);
    let address = free_address();
    let log = crate::support::log_file(&format!("{}-serve", pipeline.topic));
    let mut api = Running(
        pipeline
            .braid()
            .args(["serve", "--listen", &address])
            .env("BRAID_ADMIN_TOKEN", "t")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until("the API to be ready", Duration::from_secs(60), || {
        api.assert_running("braid serve");
        let address = address.clone();
        async move { ready(&address) }
    })
    .await;
    let before = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;

    let (status, body) = request_with_body(
        &address,
        "POST",
        "/v1/admin/jobs/replay_publish",
        Some("t"),
        r#"{"from":"2026-01-01T00:00:00Z","topic":"x"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["parameter"], "to");
    let (status, body) = request_with_body(
        &address,
        "POST",
        "/v1/admin/jobs/replay_speed",
        Some("t"),
        r#"{"from_cut":"one"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["parameter"], "from_cut");

    let (status, started) = request(&address, "POST", "/v1/admin/jobs/replay_speed", Some("t"));
    assert_eq!(status, 202, "{started}");
    let job = format!("/v1/jobs/{}", started["id"]);
    wait_until("the replay job to end", Duration::from_secs(60), || {
        let (address, job) = (address.clone(), job.clone());
        async move { request(&address, "GET", &job, Some("t")).1["status"] != "running" }
    })
    .await;
    let (_, finished) = request(&address, "GET", &job, Some("t"));
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["job"], "replay_speed");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    let after = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_eq!(
        before, after,
        "the merged totals are the same after the replay"
    );

    let target = format!("{}.api-replayed", pipeline.topic);
    let body = format!(
        r#"{{"from":"2025-12-31T00:00:00Z","to":"2026-01-02T00:00:00Z","topic":"{target}"}}"#
    );
    let (status, started) = request_with_body(
        &address,
        "POST",
        "/v1/admin/jobs/replay_publish",
        Some("t"),
        &body,
    );
    assert_eq!(status, 202, "{started}");
    let job = format!("/v1/jobs/{}", started["id"]);
    wait_until("the publish job to end", Duration::from_secs(60), || {
        let (address, job) = (address.clone(), job.clone());
        async move { request(&address, "GET", &job, Some("t")).1["status"] != "running" }
    })
    .await;
    let (_, finished) = request(&address, "GET", &job, Some("t"));
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let valid = read_topic(&pipeline.topic)
        .iter()
        .filter(|m| oracle::refusal(&m.payload).is_none())
        .count();
    assert_eq!(finished["rows_written"], valid as i64, "{finished}");
    assert_eq!(read_topic(&target).len(), valid);
}
