//! Hostile input on the real broker and database: a stream mixing normal records with records
//! whose values a store would refuse, or that overflow an i64 sum, or that the database refuses
//! although they pass validation. Neither layer may stop; both must refuse the same records
//! with the same reasons; a batch run must publish; and the merged answer must equal an
//! independent fold over the accepted records.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sqlx::PgPool;

use crate::compare::{Source, assert_rows_equal, read_rows};
use crate::oracle::{self, RawMessage};
use crate::support::{
    Pipeline, dead_letters, kafka_brokers, read_topic, repo_root, run, sink_caught_up,
    speed_caught_up, stderr, wait_until,
};

/// A page view the demo schema accepts, on `page`, at minute `minute` of 2026-01-03.
fn page_view(id: &str, page: &str, minute: u32, duration_ms: i64) -> String {
    serde_json::json!({
        "event_id": id, "ts": format!("2026-01-03T00:{minute:02}:30Z"), "event_type": "page_view",
        "user_id": "u1", "page": page, "country": "US", "device": "mobile", "duration_ms": duration_ms,
    })
    .to_string()
}

/// A purchase the demo schema accepts, priced `price_cents`, in minute 7 of 2026-01-03.
fn purchase(id: &str, price_cents: i64) -> String {
    serde_json::json!({
        "event_id": id, "ts": "2026-01-03T00:07:10Z", "event_type": "purchase", "user_id": "u2",
        "page": "/checkout", "country": "DE", "device": "desktop", "price_cents": price_cents,
    })
    .to_string()
}

/// Records a store would refuse, written as raw JSON so that escapes reach the validator as sent.
fn refused_by_validation() -> Vec<(String, &'static str)> {
    let base = r#""event_type":"click","user_id":"u3","country":"FR","device":"tablet""#;
    vec![
        (
            format!(r#"{{"event_id":"n1","ts":"2026-01-03T00:01:00Z","page":"/a\u0000b",{base}}}"#),
            "unstorable_text",
        ),
        (
            format!(r#"{{"event_id":"n2\u0000","ts":"2026-01-03T00:01:00Z","page":"/a",{base}}}"#),
            "unstorable_text",
        ),
        (
            format!(
                r#"{{"event_id":"n3","ts":"2026-01-03T00:01:00Z\u0000 and more","page":"/a",{base}}}"#
            ),
            "bad_event_time",
        ),
        (
            format!(
                r#"{{"event_id":"n4","ts":"2026-01-03T00:01:00Z","page":"{}",{base}}}"#,
                "p".repeat(3_000)
            ),
            "string_too_long",
        ),
        (
            format!(r#"{{"event_id":"n5","ts":"2026-01-03T00:01:00Z","page":"\ud800",{base}}}"#),
            "not_json",
        ),
        (
            format!(r#"{{"event_id":"n6","ts":-62135596800001,"page":"/a",{base}}}"#),
            "event_time_out_of_range",
        ),
        (
            format!(r#"{{"event_id":"n7","ts":9223372036854775807,"page":"/a",{base}}}"#),
            "bad_event_time",
        ),
        (
            format!(
                r#"{{"event_id":"n8","ts":"2026-01-03T00:01:00Z","page":"/a","price_cents":9223372036854775808,{base}}}"#
            ),
            "wrong_type",
        ),
        (
            format!(
                r#"{{"event_id":"n9","ts":"2026-01-03T00:01:00Z","page":"/a","duration_ms":1e400,{base}}}"#
            ),
            "not_json",
        ),
        (
            format!(
                r#"{{"event_id":"n10","ts":"2026-01-03T00:01:00Z","page":"/a","is_new_user":NaN,{base}}}"#
            ),
            "not_json",
        ),
    ]
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, payloads: &[String]) {
    for payload in payloads {
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(partition)
                    .key("hostile")
                    .payload(payload),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[sqlx::test(migrations = false)]
async fn hostile_records_stop_neither_layer_and_both_layers_agree_on_them(pool: PgPool) {
    let pipeline = Pipeline::new("hostile", &pool).await;
    // A normal stream with malformed and hostile-but-valid records, on two partitions.
    let generated = run(pipeline.braid().args([
        "generate",
        "--rate",
        "0",
        "--count",
        "3000",
        "--seed",
        "13",
        "--partitions",
        "2",
        "--late-fraction",
        "0.1",
        "--malformed-fraction",
        "0.1",
        "--hostile-fraction",
        "0.2",
    ]));
    assert!(
        generated.status.success(),
        "generate: {}",
        stderr(&generated)
    );

    // A record that passes validation but that the database refuses: the speed table of
    // page_views takes no page '/refused/by/db' (a constraint added here, as a store could have
    // one validation does not know). The speed layer must isolate it, dead-letter it as
    // refused_by_database, and count every other record.
    let config = schemas::BraidConfig::load(Some(&repo_root().join("braid.toml"))).unwrap();
    let page_views = config
        .views
        .iter()
        .find(|v| v.name == "page_views")
        .unwrap();
    let speed_table = schemas::pg_layout::ViewLayout::of(page_views).speed_table;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {speed_table} ADD CONSTRAINT no_refused_page CHECK (page IS DISTINCT FROM '/refused/by/db')"
    )))
    .execute(&pool)
    .await
    .unwrap();

    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let refusals: Vec<String> = refused_by_validation()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    send(&producer, &pipeline.topic, 0, &refusals);
    // i64 sums that overflow within one flush: two prices at i64::MAX in one key and bucket.
    send(
        &producer,
        &pipeline.topic,
        1,
        &[purchase("big-1", i64::MAX), purchase("big-2", i64::MAX)],
    );

    let mut speed = pipeline.start_speed("0", "speed");
    let mut sink = pipeline.start_sink("0", "sink");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;

    // Across flushes too: more maxima on the rows the speed layer has already stored, and the
    // record the database refuses, among normal records.
    send(
        &producer,
        &pipeline.topic,
        1,
        &[
            purchase("big-3", i64::MAX),
            purchase("small-1", -5),
            page_view("pv-1", "/home/1", 3, i64::MAX),
        ],
    );
    send(
        &producer,
        &pipeline.topic,
        0,
        &[
            page_view("pv-2", "/home/1", 3, i64::MAX),
            page_view("pv-refused", "/refused/by/db", 3, 10),
            page_view("pv-3", "/home/2", 3, 7),
        ],
    );
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    sink_caught_up(&pipeline, &mut sink).await;
    speed.assert_running("braid speed");
    sink.assert_running("braid sink");

    let messages = read_topic(&pipeline.topic);
    let refused_by_db: Vec<&RawMessage> = messages
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.payload).contains("/refused/by/db"))
        .collect();
    assert_eq!(refused_by_db.len(), 1);
    let refused_position = (refused_by_db[0].partition, refused_by_db[0].offset);

    // Every refused record is a dead letter in both layers, with the same reason, which an
    // independent check of the payload also gives.
    let expected: BTreeSet<(i32, i64, String)> = messages
        .iter()
        .filter_map(|m| {
            oracle::refusal(&m.payload).map(|code| (m.partition, m.offset, code.to_string()))
        })
        .collect();
    for (payload, code) in refused_by_validation() {
        let message = messages
            .iter()
            .find(|m| m.payload == payload.as_bytes())
            .unwrap();
        assert!(
            expected.contains(&(message.partition, message.offset, code.to_string())),
            "the oracle refuses {payload:.80} as {code}"
        );
    }
    let kinds: BTreeSet<&str> = expected.iter().map(|(_, _, c)| c.as_str()).collect();
    assert!(
        kinds.len() >= 9,
        "the stream covers every rejection kind of the demo schema: {kinds:?}"
    );
    let sink_letters = dead_letters(&pool, "sink").await;
    assert_eq!(sink_letters, expected, "the sink's dead letters");
    let mut speed_expected = expected.clone();
    speed_expected.insert((
        refused_position.0,
        refused_position.1,
        "refused_by_database".into(),
    ));
    wait_until(
        "the speed layer's dead letters",
        Duration::from_secs(30),
        || async { dead_letters(&pool, "speed").await == speed_expected },
    )
    .await;
    let (reason,): (String,) = sqlx::query_as(
        "SELECT reason FROM braid_internal.dead_letters WHERE reason_code = 'refused_by_database'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        reason.contains("no_refused_page") && reason.contains("23514"),
        "{reason}"
    );
    let speed_log = crate::support::log_of(&pipeline, "speed", "0");
    assert!(
        speed_log.contains("refused_by_database")
            && speed_log.contains(&format!("offset={}", refused_position.1)),
        "the speed layer logs the refused record with its position"
    );

    // The merge of speed rows alone, then after a batch run, equals a fold over the accepted
    // records (the one the database refused is left out by both layers).
    let accepted: Vec<RawMessage> = messages
        .iter()
        .filter(|m| (m.partition, m.offset) != refused_position)
        .cloned()
        .collect();
    let truth = oracle::demo_views(accepted.iter());
    let big = &truth["purchases_by_country"];
    assert!(
        big.values()
            .any(|v| v[1].is_some_and(|sum| sum > i128::from(i64::MAX))),
        "the stream holds a sum past i64"
    );
    let merged = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(&truth, &merged, "speed rows alone");

    let batch = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"]));
    assert!(
        batch.status.success(),
        "the batch run publishes: {}",
        stderr(&batch)
    );
    let mut connection = pool.acquire().await.unwrap();
    assert_rows_equal(
        &truth,
        &read_rows(&mut connection, Source::Batch).await,
        "the batch rows",
    );
    assert_rows_equal(
        &truth,
        &read_rows(&mut connection, Source::Merged).await,
        "after the batch run",
    );
    assert_rows_equal(
        &truth,
        &read_rows(&mut connection, Source::Serving).await,
        "the SQL views",
    );
    speed.assert_running("braid speed");
    sink.assert_running("braid sink");
}
