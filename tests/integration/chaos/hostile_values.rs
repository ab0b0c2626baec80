//! Hostile values through every part at once (issue 35, items 1 and 2): an optional f64 field
//! receives subnormals, values beyond 1e200, zeros of both signs and ordinary values, summed and
//! bounded by a view, while a followed dimension topic receives NUL keys, 5,000-byte keys,
//! tombstones with hostile keys and values that are not JSON; the speed layer, the sink, the
//! scheduler and the follower are SIGKILLed and restarted in turn. Checked at the end: the
//! demo views equal the oracle and Delta holds each valid record once, the f64 view equals an
//! independent float fold through `serving.<view>` and the API, the refused f64 records are dead
//! letters `number_out_of_range` in both layers, and the dimension table is the last valid value
//! of each key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use sqlx::{PgPool, Row};

use super::{Outcome, Processes, report, settle_and_check, short};
use crate::dimensions::hostile::{self as dims, Message, TableRow};
use crate::dimensions::{start_follower, wait_followed};
use crate::http::{get, ready};
use crate::oracle;
use crate::support::{Pipeline, kafka_brokers, read_topic, repo_root, run, stderr, wait_until};

/// The scenario's view over its f64 field.
const VIEW: &str = "measurements";

/// The f64 field the demo lacks; inserted after the demo's fields.
const FIELD: &str = r#"
[[schema.fields]]
name = "v"                  # chaos scenario hostile-values: hostile f64 values
type = "f64"
required = false

"#;

/// The view summing and bounding it, and the followed dimension (`{topic}` is replaced).
const VIEW_AND_DIMENSION: &str = r#"
[[views]]
name = "measurements"
filter = { field = "event_type", op = "eq", value = "measurement" }
group_by = ["page"]
bucket = "1m"
metrics = ["count", "sum(v)", "min(v)", "max(v)", "count(v)"]

[[dimensions]]
name = "pages"
key = "page"
attributes = [{ name = "section", type = "string" }, { name = "weight", type = "i64" }, { name = "score", type = "f64" }]
source = { kafka_topic = "{topic}", format = "json" }
"#;

/// The values each round sends to one page, as JSON text: subnormals, the largest subnormal,
/// 1e-300 and the limits (refused), zeros of both signs, the floor, and ordinary values.
const MIXED: [&str; 14] = [
    "5e-324",
    "-5e-324",
    "2.2250738585072009e-308",
    "1e-300",
    "1e308",
    "1e200",
    "-1e200",
    "0",
    "-0.0",
    "1e-200",
    "-1e-200",
    "1.5",
    "-2.25",
    "-9.99e199",
];

/// The reproduction of item 1 on another page: a subnormal beside zeros in one group and minute.
const ZEROS: [&str; 4] = ["5e-324", "0", "0", "-0.0"];

/// The demo's refusal, then the f64 field's: not a number, or a magnitude that is not zero and
/// below 1e-200 or at least 1e200.
fn refusal(payload: &[u8]) -> Option<&'static str> {
    if let Some(code) = oracle::refusal(payload) {
        return Some(code);
    }
    let value: Value = serde_json::from_slice(payload).unwrap();
    match value.get("v") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            None => Some("wrong_type"),
            Some(f) if f != 0.0 && !(1e-200..1e200).contains(&f.abs()) => {
                Some("number_out_of_range")
            }
            Some(_) => None,
        },
    }
}

/// count, sum, min, max, count(v) of one page and minute.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Folded {
    count: i64,
    sum: f64,
    /// Σ|v|: the scale of the sum's rounding.
    scale: f64,
    min: Option<f64>,
    max: Option<f64>,
    present: i64,
}

/// (page, bucket start in microseconds) → its fold.
type FloatRows = BTreeMap<(String, i64), Folded>;

/// The view over the valid records, folded here in f64.
fn expected_view(messages: &[oracle::RawMessage]) -> FloatRows {
    let mut rows = FloatRows::new();
    for message in messages {
        if refusal(&message.payload).is_some() {
            continue;
        }
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        let o = value.as_object().unwrap();
        if oracle::text(o, "event_type").as_deref() != Some("measurement") {
            continue;
        }
        let key = (
            oracle::text(o, "page").unwrap(),
            oracle::bucket(oracle::event_time(&o["ts"]).unwrap(), 60),
        );
        let row = rows.entry(key).or_insert(Folded {
            count: 0,
            sum: 0.0,
            scale: 0.0,
            min: None,
            max: None,
            present: 0,
        });
        row.count += 1;
        if let Some(v) = o.get("v").and_then(Value::as_f64) {
            row.sum += v;
            row.scale += v.abs();
            row.min = Some(row.min.map_or(v, |m| m.min(v)));
            row.max = Some(row.max.map_or(v, |m| m.max(v)));
            row.present += 1;
        }
    }
    rows
}

/// Where `actual` differs from `expected`: counts, min and max exactly, sums within the rounding
/// of adding the values in another order.
fn float_rows_differ(expected: &FloatRows, actual: &FloatRows, what: &str) -> Result<(), String> {
    if expected.keys().ne(actual.keys()) {
        return Err(format!(
            "{what}: {} rows, {} expected",
            actual.len(),
            expected.len()
        ));
    }
    for (key, want) in expected {
        let got = &actual[key];
        let sum_close = (got.sum - want.sum).abs() <= 1e-9 * want.scale.max(1e-200);
        if got.count != want.count
            || got.present != want.present
            || got.min != want.min
            || got.max != want.max
            || !sum_close
        {
            return Err(format!("{what}: {key:?} is {got:?}, expected {want:?}"));
        }
    }
    Ok(())
}

/// The config: the demo's with the f64 field, the view and the dimension.
fn write_config(pipeline: &Pipeline, dimension_topic: &str) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(repo_root().join("braid.toml")).unwrap();
    let with_field = demo.replacen("[[views]]", &format!("{FIELD}[[views]]"), 1);
    assert_ne!(with_field, demo, "the demo config has views");
    let folder = std::env::temp_dir().join(format!("{}-config", pipeline.topic));
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("braid.toml");
    std::fs::write(
        &path,
        format!(
            "{with_field}\n{}",
            VIEW_AND_DIMENSION.replace("{topic}", dimension_topic)
        ),
    )
    .unwrap();
    path
}

/// One round of hostile f64 records (minute `round` of 2026-01-01, inside the generator's day).
fn send_values(producer: &BaseProducer, topic: &str, round: usize) {
    for (page, values) in [("/f64-mixed", &MIXED[..]), ("/f64-zeros", &ZEROS[..])] {
        for (i, value) in values.iter().enumerate() {
            let id = format!("f64-{round}-{page}-{i}");
            let payload = format!(
                r#"{{"event_id":"{id}","ts":"2026-01-01T00:{:02}:{:02}Z","event_type":"measurement","user_id":"u{i}","page":"{page}","country":"NL","device":"probe","v":{value}}}"#,
                round % 60,
                i % 60
            );
            producer
                .send(BaseRecord::to(topic).key(&id).payload(&payload))
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// One round of hostile dimension messages; appends what it sent to `sent`.
fn send_dimension(producer: &BaseProducer, topic: &str, sent: &mut Vec<Message>) {
    for (key, payload) in dims::hostile_messages() {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(key) = &key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &payload {
            record = record.payload(payload.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        sent.push((key, payload));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// The merged rows of the view as `SELECT * FROM serving.<view>` answers them.
async fn serving_rows(pool: &PgPool) -> Result<FloatRows, String> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM serving.{VIEW}")))
        .fetch_all(pool)
        .await
        .map_err(|e| format!("SELECT * FROM serving.{VIEW}: {e}"))?;
    let mut folded = FloatRows::new();
    for row in rows {
        let read = || -> Result<((String, i64), Folded), sqlx::Error> {
            let bucket: chrono::DateTime<chrono::Utc> = row.try_get("bucket_start")?;
            Ok((
                (row.try_get("page")?, bucket.timestamp_micros()),
                Folded {
                    count: row.try_get("count")?,
                    sum: row.try_get::<Option<f64>, _>("sum_v")?.unwrap_or(0.0),
                    scale: 0.0,
                    min: row.try_get("min_v")?,
                    max: row.try_get("max_v")?,
                    present: row.try_get("count_v")?,
                },
            ))
        };
        let (key, value) = read().map_err(|e| format!("serving.{VIEW}: {e}"))?;
        folded.insert(key, value);
    }
    Ok(folded)
}

/// The view as GET /v1/views/<view> answers it.
fn api_rows(address: &str) -> Result<FloatRows, String> {
    let (status, answer) = get(
        address,
        &format!("/v1/views/{VIEW}?from=2025-12-31T00:00:00Z&to=2026-01-02T00:00:00Z&limit=10000"),
    );
    if status != 200 {
        return Err(format!("GET /v1/views/{VIEW} answered {status}: {answer}"));
    }
    let number = |v: &Value| v.as_f64();
    let count = |v: &Value| v.as_i64().unwrap_or(-1);
    let mut folded = FloatRows::new();
    for row in answer["rows"].as_array().ok_or("no rows in the answer")? {
        let bucket = chrono::DateTime::parse_from_rfc3339(row["bucket_start"].as_str().unwrap())
            .map_err(|e| e.to_string())?
            .timestamp_micros();
        folded.insert(
            (row["page"].as_str().unwrap_or_default().to_string(), bucket),
            Folded {
                count: count(&row["count"]),
                sum: number(&row["sum_v"]).unwrap_or(0.0),
                scale: 0.0,
                min: number(&row["min_v"]),
                max: number(&row["max_v"]),
                present: count(&row["count_v"]),
            },
        );
    }
    Ok(folded)
}

/// The dead letters of `layer` with reason `number_out_of_range`, against the refused records.
async fn out_of_range_letters(
    pool: &PgPool,
    topic: &str,
    messages: &[oracle::RawMessage],
) -> Result<(), String> {
    let expected = messages
        .iter()
        .filter(|m| refusal(&m.payload) == Some("number_out_of_range"))
        .count();
    if expected == 0 {
        return Err("no record was out of range".into());
    }
    for layer in ["speed", "sink"] {
        let (letters,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM braid_internal.dead_letters \
             WHERE layer = $1 AND topic = $2 AND reason_code = 'number_out_of_range'",
        )
        .bind(layer)
        .bind(topic)
        .fetch_one(pool)
        .await
        .unwrap();
        if letters as usize != expected {
            return Err(format!(
                "{layer}: {letters} number_out_of_range dead letters, {expected} expected"
            ));
        }
    }
    Ok(())
}

/// The dimension table against the last valid change of each key, and one dead letter per
/// refused message.
async fn dimension_matches(
    pool: &PgPool,
    dimension_topic: &str,
    sent: &mut [Message],
) -> Result<(), String> {
    // The keys as Kafka delivers them (an empty key may come back absent).
    let delivered = read_topic(dimension_topic);
    if delivered.len() != sent.len() {
        return Err(format!(
            "{} dimension messages on the topic, {} sent",
            delivered.len(),
            sent.len()
        ));
    }
    for (message, read) in sent.iter_mut().zip(&delivered) {
        message.0.clone_from(&read.key);
    }
    let mut expected: BTreeMap<String, dims::Row> = BTreeMap::new();
    let mut refused = Vec::new();
    for (message, read) in sent.iter().zip(&delivered) {
        match dims::expected_change(message) {
            Some((key, Some(row))) => {
                expected.insert(key, row);
            }
            Some((key, None)) => {
                expected.remove(&key);
            }
            None => refused.push(read.offset),
        }
    }
    let rows: Vec<TableRow> =
        sqlx::query_as("SELECT page, section, weight, score FROM braid_dimensions.pages")
            .fetch_all(pool)
            .await
            .map_err(|e| e.to_string())?;
    let table: BTreeMap<String, dims::Row> = rows
        .into_iter()
        .map(|(page, section, weight, score)| (page, (section, weight, score)))
        .collect();
    if table != expected {
        return Err(format!(
            "the dimension table differs from the last valid value of each key: {table:?} vs {expected:?}"
        ));
    }
    let letters: Vec<(i64,)> = sqlx::query_as(
        "SELECT \"offset\" FROM braid_internal.dead_letters \
         WHERE layer = 'dimension' AND topic = $1 AND reason_code <> '' ORDER BY \"offset\"",
    )
    .bind(dimension_topic)
    .fetch_all(pool)
    .await
    .unwrap();
    let letters: Vec<i64> = letters.into_iter().map(|(o,)| o).collect();
    if letters != refused {
        return Err(format!(
            "dimension dead letters at {letters:?}, refused messages at {refused:?}"
        ));
    }
    Ok(())
}

#[sqlx::test(migrations = false)]
#[ignore = "kills processes at random; run by scripts/chaos"]
async fn chaos_hostile_f64_values_and_dimension_messages(pool: PgPool) {
    let name = "hostile-f64-and-dimensions";
    let mut pipeline = Pipeline::new(&format!("chaos-{name}"), &pool).await;
    let dimension_topic = format!("{}.pages", pipeline.topic);
    crate::kafka_admin::create_topic_with(&dimension_topic, 1, &[("cleanup.policy", "compact")])
        .await;
    pipeline.config = Some(write_config(&pipeline, &dimension_topic));
    let migrated = run(pipeline.braid().arg("migrate"));
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE braid_dimensions.pages ADD CONSTRAINT test_refused CHECK (section IS DISTINCT FROM '{}')",
        dims::REFUSED_SECTION
    )))
    .execute(&pool)
    .await
    .unwrap();
    pipeline.produce(1, 1, 4);

    let mut processes = Processes::start(&pipeline);
    let mut follower = start_follower(&pipeline, "0");
    wait_until("the API to be ready", Duration::from_secs(60), || {
        processes.api.assert_running("braid serve");
        let address = processes.address.clone();
        async move { ready(&address) }
    })
    .await;
    let (events, rate) = if short() {
        (6_000u64, 2_000)
    } else {
        (60_000, 5_000)
    };
    let stream = super::Stream {
        malformed: "0.05",
        hostile: "0.1",
        wire: super::Wire::Json,
    };
    let mut generator = super::start_generator(&pipeline, stream, 13, events, rate);
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();

    // Rounds of hostile values and dimension messages, each followed by a SIGKILL of one part
    // (speed, sink, scheduler, follower in turn), at least one of each, until the generator ends.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut sent: Vec<Message> = Vec::new();
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    let started = Instant::now();
    let mut round = 0;
    while round < 4 || generator.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the generator did not finish"
        );
        send_values(&producer, &pipeline.topic, round);
        send_dimension(&producer, &dimension_topic, &mut sent);
        // A random moment for the fault (a pause, not a synchronisation).
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..3_000))).await;
        let killed = if round % 4 == 3 {
            follower.kill();
            follower = start_follower(&pipeline, &round.to_string());
            "follower"
        } else {
            processes.kill_and_restart(&pipeline, round % 4)
        };
        *faults.entry(killed).or_default() += 1;
        round += 1;
        processes.assert_running();
        follower.assert_running("braid dimensions follow");
    }
    assert!(generator.wait_success(), "the generator failed");
    let summary = faults
        .iter()
        .map(|(f, n)| format!("{n}x SIGKILL {f}"))
        .collect::<Vec<_>>()
        .join(", ");

    let (outcome, exact) = settle_and_check(
        &pool,
        &pipeline,
        &mut processes,
        summary,
        super::Wire::Json,
        refusal,
    )
    .await;
    wait_followed(&pool, &dimension_topic, &mut follower).await;
    processes.api.assert_running("braid serve");
    follower.assert_running("braid dimensions follow");
    let messages = read_topic(&pipeline.topic);
    let expected = expected_view(&messages);
    // Every check runs, so that the report names each that fails.
    let checks = [
        exact,
        if expected.len() >= 2 * round.min(60) {
            Ok(())
        } else {
            Err(format!("only {} rows of {VIEW} expected", expected.len()))
        },
        serving_rows(&pool)
            .await
            .and_then(|rows| float_rows_differ(&expected, &rows, "serving.measurements")),
        api_rows(&processes.address)
            .and_then(|rows| float_rows_differ(&expected, &rows, "GET /v1/views/measurements")),
        out_of_range_letters(&pool, &pipeline.topic, &messages).await,
        dimension_matches(&pool, &dimension_topic, &mut sent).await,
    ];
    let failures: Vec<String> = checks.into_iter().filter_map(Result::err).collect();
    let exact = if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join(" | "))
    };
    let outcome = Outcome {
        faults: format!("{} + hostile f64 and dimension messages", outcome.faults),
        ..outcome
    };
    report(name, &outcome, exact);
}
