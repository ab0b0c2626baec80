//! The Delta sink against the real broker, database and a Delta table on disk or on the
//! S3-compatible server (the `on_s3_` tests), read back by an independent reader (Python
//! deltalake from PyPI): exact rows, SIGKILL, rebalance, schema, compaction and vacuum.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::DateTime;
use rand::Rng;
use serde_json::Value;
use sqlx::PgPool;

use crate::oracle::{self, RawMessage};
use crate::support::{Pipeline, Running, log_of, read_topic, sinks_caught_up, wait_until};

/// What the independent reader sees.
struct DeltaContents {
    schema: Vec<(String, String, bool)>,
    rows: Vec<serde_json::Map<String, Value>>,
}

fn read_with_python(pipeline: &Pipeline) -> DeltaContents {
    let parsed = pipeline.lake.read_with_python();
    let schema = parsed["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f[0].as_str().unwrap().to_string(),
                f[1].as_str().unwrap().to_string(),
                f[2].as_bool().unwrap(),
            )
        })
        .collect();
    let rows = parsed["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect();
    DeltaContents { schema, rows }
}

fn demo_schema() -> schemas::EventSchema {
    schemas::BraidConfig::load(Some(&crate::support::repo_root().join("braid.toml")))
        .unwrap()
        .schema
}

/// The row the table must hold for a valid message, computed without Braid's code.
fn expected_row(topic: &str, message: &RawMessage) -> BTreeMap<String, Value> {
    let event: serde_json::Map<String, Value> = serde_json::from_slice(&message.payload).unwrap();
    let ts = DateTime::parse_from_rfc3339(event["ts"].as_str().unwrap()).unwrap();
    let mut row = BTreeMap::new();
    for name in [
        "event_id",
        "event_type",
        "user_id",
        "page",
        "country",
        "device",
        "price_cents",
        "duration_ms",
        "is_new_user",
    ] {
        row.insert(
            name.to_string(),
            event.get(name).cloned().unwrap_or(Value::Null),
        );
    }
    row.insert("ts".into(), Value::from(ts.timestamp_micros()));
    row.insert(
        "event_date".into(),
        Value::from(ts.with_timezone(&chrono::Utc).date_naive().to_string()),
    );
    row.insert("_topic".into(), Value::from(topic));
    row.insert("_partition".into(), Value::from(message.partition));
    row.insert("_offset".into(), Value::from(message.offset));
    row.insert(
        "_key".into(),
        message.key.as_ref().map_or(Value::Null, |k| {
            Value::from(String::from_utf8_lossy(k).into_owned())
        }),
    );
    row
}

/// Asserts the table holds exactly the valid messages, each (partition, offset) once, as
/// Python deltalake reads it, and that DuckDB's delta_scan reads the same rows.
fn assert_exactly_once_by_both_readers(pipeline: &Pipeline, messages: &[RawMessage]) {
    let contents = read_with_python(pipeline);
    assert_exactly_once(pipeline, messages, &contents);
    let mut by_python: Vec<(i64, i64)> = contents
        .rows
        .iter()
        .map(|row| {
            (
                row["_partition"].as_i64().unwrap(),
                row["_offset"].as_i64().unwrap(),
            )
        })
        .collect();
    by_python.sort_unstable();
    assert!(
        pipeline.lake.positions_read_by_duckdb() == by_python,
        "DuckDB's delta_scan reads other rows than Python deltalake"
    );
}

/// Asserts the table holds exactly the valid messages, each (partition, offset) once.
fn assert_exactly_once(pipeline: &Pipeline, messages: &[RawMessage], contents: &DeltaContents) {
    let mut seen: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for row in &contents.rows {
        *seen
            .entry((
                row["_partition"].as_i64().unwrap(),
                row["_offset"].as_i64().unwrap(),
            ))
            .or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        duplicated.is_empty(),
        "positions written more than once: {duplicated:?}"
    );
    let expected: BTreeSet<(i64, i64)> = messages
        .iter()
        .filter(|m| oracle::refusal(&m.payload).is_none())
        .map(|m| (i64::from(m.partition), m.offset))
        .collect();
    let actual: BTreeSet<(i64, i64)> = seen.keys().copied().collect();
    let missing: Vec<_> = expected.difference(&actual).take(5).collect();
    let extra: Vec<_> = actual.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: missing {missing:?}, unexpected {extra:?}",
        pipeline.topic
    );
}

#[sqlx::test(migrations = false)]
async fn the_table_holds_exactly_the_valid_records_as_an_independent_reader_sees_them(
    pool: PgPool,
) {
    let pipeline = Pipeline::new("sink-exact", &pool).await;
    pipeline.produce(15_000, 21, 3);
    let mut sink = pipeline.start_sink("a", "a");
    sinks_caught_up(&pipeline, &mut [&mut sink]).await;
    sink.kill();

    let messages = read_topic(&pipeline.topic);
    let contents = read_with_python(&pipeline);
    assert_exactly_once(&pipeline, &messages, &contents);

    // Schema: typed fields, the partition column, lineage.
    let schema: Vec<(&str, &str, bool)> = contents
        .schema
        .iter()
        .map(|(n, t, null)| (n.as_str(), t.as_str(), *null))
        .collect();
    assert_eq!(
        schema,
        [
            ("event_id", "string", false),
            ("ts", "timestamp[us, tz=UTC]", false),
            ("event_type", "string", false),
            ("user_id", "string", false),
            ("page", "string", false),
            ("country", "string", false),
            ("device", "string", false),
            ("price_cents", "int64", true),
            ("duration_ms", "int64", true),
            ("is_new_user", "bool", true),
            ("event_date", "date32[day]", false),
            ("_topic", "string", false),
            ("_partition", "int32", false),
            ("_offset", "int64", false),
            ("_ingested_at", "timestamp[us, tz=UTC]", false),
            ("_key", "binary", true),
        ]
    );
    // Values: every column of every row equals the message it came from.
    let by_position: BTreeMap<(i64, i64), &RawMessage> = messages
        .iter()
        .map(|m| ((i64::from(m.partition), m.offset), m))
        .collect();
    for row in &contents.rows {
        let position = (
            row["_partition"].as_i64().unwrap(),
            row["_offset"].as_i64().unwrap(),
        );
        let expected = expected_row(&pipeline.topic, by_position[&position]);
        let mut actual: BTreeMap<String, Value> =
            row.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert!(
            actual
                .remove("_ingested_at")
                .is_some_and(|v| v.as_i64().is_some())
        );
        assert_eq!(actual, expected, "row at {position:?}");
    }

    // Dead letters: the refused records, with their reasons, from the sink.
    let letters: Vec<(i32, i64, String)> =
        sqlx::query_as("SELECT partition, \"offset\", reason_code FROM braid_internal.dead_letters WHERE layer = 'sink'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let actual: BTreeMap<(i32, i64), String> =
        letters.into_iter().map(|(p, o, c)| ((p, o), c)).collect();
    let expected: BTreeMap<(i32, i64), String> = messages
        .iter()
        .filter_map(|m| {
            oracle::refusal(&m.payload).map(|code| ((m.partition, m.offset), code.to_string()))
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(actual, expected);
}

#[sqlx::test(migrations = false)]
async fn sigkill_at_random_moments_still_writes_each_record_exactly_once(pool: PgPool) {
    sigkill_at_random_moments(Pipeline::new("sink-sigkill", &pool).await).await;
}

#[sqlx::test(migrations = false)]
async fn on_s3_sigkill_at_random_moments_still_writes_each_record_exactly_once(pool: PgPool) {
    sigkill_at_random_moments(Pipeline::on_s3("sink-sigkill-s3", &pool).await).await;
}

async fn sigkill_at_random_moments(pipeline: Pipeline) {
    pipeline.produce(1, 96, 4);
    let mut producer = pipeline.produce_in_background(80_000, 22, 8_000, 4);
    let mut rng = rand::rng();
    for kill in 0..10 {
        let name = format!("kill{kill}");
        let mut sink = pipeline.start_sink(&name, "only");
        if kill % 2 == 0 {
            // Even kills land while the sink consumes and commits: after its assignment.
            wait_until(
                "the sink to be assigned its partitions",
                Duration::from_secs(60),
                || {
                    sink.assert_running("a sink before its kill");
                    let log = log_of(&pipeline, "sink", &name);
                    async move { log.contains("partitions assigned") }
                },
            )
            .await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_200))).await;
        } else {
            // Odd kills land at any moment, start-up included.
            tokio::time::sleep(Duration::from_millis(rng.random_range(400..1_600))).await;
        }
        sink.kill();
    }
    assert!(producer.wait_success());
    let mut sink = pipeline.start_sink("final", "only");
    sinks_caught_up(&pipeline, &mut [&mut sink]).await;
    sink.kill();
    let messages = read_topic(&pipeline.topic);
    assert_eq!(messages.len(), 80_001);
    assert_exactly_once_by_both_readers(&pipeline, &messages);
    let assigned = (0..10)
        .filter(|k| log_of(&pipeline, "sink", &format!("kill{k}")).contains("partitions assigned"))
        .count();
    assert!(
        assigned >= 5,
        "at least the even kills came while the sink ran ({assigned})"
    );
}

#[sqlx::test(migrations = false)]
async fn two_sinks_with_a_rebalance_in_the_middle_still_write_exactly_once(pool: PgPool) {
    rebalance_in_the_middle(Pipeline::new("sink-rebalance", &pool).await).await;
}

#[sqlx::test(migrations = false)]
async fn on_s3_two_sinks_with_a_rebalance_in_the_middle_still_write_exactly_once(pool: PgPool) {
    rebalance_in_the_middle(Pipeline::on_s3("sink-rebalance-s3", &pool).await).await;
}

async fn rebalance_in_the_middle(pipeline: Pipeline) {
    pipeline.produce(1, 95, 4);
    let mut producer = pipeline.produce_in_background(40_000, 23, 4_000, 4);
    let mut first = pipeline.start_sink("first", "first");
    wait_until(
        "the first sink to commit",
        Duration::from_secs(60),
        || async {
            log_of(&pipeline, "sink", "first").contains("partitions assigned")
                && pipeline
                    .lake
                    .open(&demo_schema())
                    .await
                    .and_then(|table| table.version())
                    .is_some_and(|version| version >= 2)
        },
    )
    .await;
    let mut second = pipeline.start_sink("second", "second");
    // Wait for the rebalance itself rather than hope it lands before the stream ends.
    wait_until(
        "the second sink to cause a rebalance",
        Duration::from_secs(60),
        || async {
            log_of(&pipeline, "sink", "first").contains("partitions revoked")
                && log_of(&pipeline, "sink", "second").contains("partitions assigned")
        },
    )
    .await;
    let stream_still_running = producer.0.try_wait().unwrap().is_none();
    assert!(producer.wait_success());
    sinks_caught_up(&pipeline, &mut [&mut first, &mut second]).await;
    first.kill();
    second.kill();
    assert!(
        stream_still_running,
        "the rebalance came after the stream ended: nothing was tested across it"
    );
    let messages = read_topic(&pipeline.topic);
    assert_eq!(messages.len(), 40_001);
    assert_exactly_once_by_both_readers(&pipeline, &messages);
}

#[sqlx::test(migrations = false)]
async fn a_new_optional_field_adds_a_nullable_column_and_old_rows_read_as_null(pool: PgPool) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let pipeline = Pipeline::new("sink-evolve", &pool).await;
    pipeline.produce(2_000, 24, 2);
    let mut sink = pipeline.start_sink("before", "a");
    sinks_caught_up(&pipeline, &mut [&mut sink]).await;
    sink.kill();

    // The config gains an optional field; new events carry it.
    let demo = std::fs::read_to_string(crate::support::repo_root().join("braid.toml")).unwrap();
    let evolved = demo.replacen(
        "[[views]]",
        "[[schema.fields]]\nname = \"referrer\"\ntype = \"string\"\nrequired = false\n\n[[views]]",
        1,
    );
    let config_path = std::env::temp_dir().join(format!("{}.toml", pipeline.topic));
    std::fs::write(&config_path, evolved).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", crate::support::kafka_brokers())
        .create()
        .unwrap();
    for i in 0..50 {
        let payload = format!(
            r#"{{"event_id":"new-{i}","ts":"2026-01-02T00:00:00Z","event_type":"click","user_id":"u1","page":"/p","country":"US","device":"mobile","referrer":"https://example.test/{i}"}}"#
        );
        producer
            .send(BaseRecord::to(&pipeline.topic).key("u1").payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    // The documented procedure: record the changed schema's rules, then restart the layers.
    let migrated = crate::support::run(pipeline.braid().args([
        "--config".as_ref(),
        config_path.as_os_str(),
        "migrate".as_ref(),
    ]));
    assert!(
        migrated.status.success(),
        "{}",
        crate::support::stderr(&migrated)
    );
    let mut sink = Running(
        pipeline
            .braid()
            .args([
                "--config".as_ref(),
                config_path.as_os_str(),
                "sink".as_ref(),
            ])
            .stderr(crate::support::log_file(&format!(
                "{}-sink-after",
                pipeline.topic
            )))
            .spawn()
            .unwrap(),
    );
    sinks_caught_up(&pipeline, &mut [&mut sink]).await;
    sink.kill();

    let contents = read_with_python(&pipeline);
    let referrer = contents
        .schema
        .iter()
        .find(|(name, _, _)| name == "referrer")
        .expect("a referrer column");
    assert_eq!((referrer.1.as_str(), referrer.2), ("string", true));
    assert_eq!(
        contents.rows.len(),
        2_050
            - read_topic(&pipeline.topic)
                .iter()
                .filter(|m| oracle::refusal(&m.payload).is_some())
                .count()
    );
    for row in &contents.rows {
        let event_id = row["event_id"].as_str().unwrap();
        match event_id.strip_prefix("new-") {
            Some(i) => assert_eq!(
                row["referrer"],
                Value::from(format!("https://example.test/{i}"))
            ),
            None => assert_eq!(row["referrer"], Value::Null, "an old row reads as null"),
        }
    }
}

#[sqlx::test(migrations = false)]
async fn compaction_and_vacuum_racing_the_sink_keep_every_record_exactly_once(pool: PgPool) {
    compaction_and_vacuum_racing_the_sink_keep_every_record_exactly_once_on(
        &pool,
        Pipeline::with_env("sink-compact", &pool, small_commits()).await,
    )
    .await;
}

#[sqlx::test(migrations = false)]
async fn on_s3_compaction_and_vacuum_racing_the_sink_keep_every_record_exactly_once(pool: PgPool) {
    compaction_and_vacuum_racing_the_sink_keep_every_record_exactly_once_on(
        &pool,
        Pipeline::on_s3_through(
            "sink-compact-s3",
            &pool,
            &crate::support::S3Lake::new("unused").endpoint,
            small_commits(),
        )
        .await,
    )
    .await;
}

/// Commits of at most 256 KiB of input (about 600 records), so that the sink writes the many
/// small files the race needs however fast the machine is (a slow one used to catch up in a few
/// large commits and never reach them).
fn small_commits() -> Vec<(String, String)> {
    vec![("BRAID__SINK__FLUSH_MAX_BYTES".into(), "262144".into())]
}

async fn compaction_and_vacuum_racing_the_sink_keep_every_record_exactly_once_on(
    pool: &PgPool,
    pipeline: Pipeline,
) {
    pipeline.produce(1, 25, 2);
    let mut producer = pipeline.produce_in_background(30_000, 26, 5_000, 2);
    let mut sink = pipeline.start_sink("a", "a");
    let schema = demo_schema();
    wait_until("enough small files", Duration::from_secs(60), || async {
        pipeline
            .lake
            .open(&schema)
            .await
            .and_then(|table| table.version())
            .is_some_and(|version| version > 10)
    })
    .await;
    for job in ["compact", "vacuum", "compact"] {
        let output = crate::support::run(pipeline.braid().args(["jobs", "run", job]));
        assert!(
            output.status.success(),
            "{job}: {}",
            crate::support::stderr(&output)
        );
    }
    assert!(producer.wait_success());
    sinks_caught_up(&pipeline, &mut [&mut sink]).await;
    sink.kill();
    let (removed,): (Option<i64>,) =
        sqlx::query_as("SELECT sum(rows_read)::bigint FROM braid_internal.job_runs WHERE job = 'compact' AND status = 'succeeded'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        removed.unwrap_or(0) >= 4,
        "compaction replaced small files ({removed:?})"
    );
    let messages = read_topic(&pipeline.topic);
    assert_eq!(messages.len(), 30_001);
    assert_exactly_once_by_both_readers(&pipeline, &messages);
}
