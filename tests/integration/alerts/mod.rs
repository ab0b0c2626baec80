//! Alerts on the real services: the evaluator (`braid alerts run`) over the speed layer's and
//! batch runs' merged rows, its transitions checked against an independent fold over the
//! records produced at the positions each transition reports; deliveries to a real HTTP
//! receiver and a Kafka topic across a receiver outage and a SIGKILL of the evaluator; the
//! standby's takeover; and bad rules refused at start.

mod delivery;
pub(crate) mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{
    Pipeline, Running, braid, kafka_brokers, log_file, read_topic, run, stderr, wait_until,
};
use receiver::Receiver;

const WEBHOOK_TOKEN: &str = "alert-receiver-token";

/// One record the test produced, where it landed, and what the fold needs of it.
#[derive(Debug, Clone)]
struct Produced {
    partition: i32,
    offset: i64,
    page: String,
    event_micros: i64,
}

/// A producer of demo-schema page views with chosen pages and event times.
struct Producer {
    topic: String,
    producer: FutureProducer,
    sent: Vec<Produced>,
    next_id: u64,
}

impl Producer {
    async fn new(topic: &str, partitions: i32) -> Self {
        crate::kafka_admin::create_topic_with(topic, partitions, &[]).await;
        let producer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        Self {
            topic: topic.to_string(),
            producer,
            sent: Vec::new(),
            next_id: 0,
        }
    }

    /// Produces `count` page views of `page` with event time `at`, round robin over partitions.
    async fn send(&mut self, page: &str, at: DateTime<Utc>, count: usize) {
        for _ in 0..count {
            self.next_id += 1;
            let id = format!("alert-{}", self.next_id);
            let payload = serde_json::json!({
                "event_id": id, "ts": at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "event_type": "page_view", "user_id": "u1", "page": page,
                "country": "DE", "device": "web",
            })
            .to_string();
            let (partition, offset) = self
                .producer
                .send(
                    FutureRecord::to(&self.topic).key(&id).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map(|delivery| (delivery.partition, delivery.offset))
                .map_err(|(e, _)| e)
                .unwrap();
            self.sent.push(Produced {
                partition,
                offset,
                page: page.to_string(),
                event_micros: at.timestamp_micros(),
            });
        }
    }
}

/// A recorded transition as the test reads it.
#[derive(Debug, Clone)]
struct Seen {
    id: i64,
    fingerprint: String,
    page: Option<String>,
    from: String,
    to: String,
    value: Option<f64>,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    batch: Option<Value>,
    positions: BTreeMap<i32, i64>,
    at: DateTime<Utc>,
}

/// The transitions of `rule`, oldest first.
async fn transitions(pool: &PgPool, rule: &str) -> Vec<Seen> {
    let mut recorded = alerts::store::history(pool, Some(rule), 100_000)
        .await
        .unwrap();
    recorded.reverse();
    recorded
        .into_iter()
        .map(|t| {
            let labels: Value = serde_json::from_str(&t.labels).unwrap();
            let e = t.evaluation;
            Seen {
                id: t.id,
                fingerprint: t.fingerprint,
                page: labels["page"].as_str().map(str::to_string),
                from: t.from.to_string(),
                to: t.to.to_string(),
                value: t.value,
                window_start: e.window_start,
                window_end: e.window_end,
                batch: e.batch.map(|b| serde_json::from_str(&b).unwrap()),
                positions: crate::support::reported_positions(
                    &serde_json::from_str(&e.speed).unwrap(),
                ),
                at: e.at,
            }
        })
        .collect()
}

/// The independent fold: page views of `page` below `positions` with event times in the window.
fn fold(sent: &[Produced], page: &str, t: &Seen) -> u64 {
    let (start, end) = (
        t.window_start.timestamp_micros(),
        t.window_end.timestamp_micros(),
    );
    sent.iter()
        .filter(|r| r.page == page)
        .filter(|r| {
            t.positions
                .get(&r.partition)
                .is_some_and(|&next| r.offset < next)
        })
        .filter(|r| (start..end).contains(&r.event_micros))
        .count() as u64
}

/// Each transition's value equals the fold at the positions and window it reports.
fn assert_values_equal_the_fold(sent: &[Produced], seen: &[Seen]) {
    for t in seen {
        let page = t.page.as_deref().expect("the rules group by page");
        let expected = fold(sent, page, t);
        let actual = t.value.map_or(0, |v| v as u64);
        assert_eq!(
            actual, expected,
            "transition #{} {} -> {} of {page}: the value {:?} differs from the fold over the records below {:?} in [{}, {})",
            t.id, t.from, t.to, t.value, t.positions, t.window_start, t.window_end
        );
    }
}

/// Every instance's transitions form one chain: each starts where the previous one ended.
fn assert_chains(seen: &[Seen]) {
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for t in seen {
        let before = last
            .get(t.fingerprint.as_str())
            .copied()
            .unwrap_or("inactive");
        assert_eq!(
            t.from, before,
            "transition #{} of {} does not start where the last ended",
            t.id, t.fingerprint
        );
        assert_ne!(t.from, t.to, "transition #{} changes nothing", t.id);
        last.insert(&t.fingerprint, &t.to);
    }
}

/// The test's config: the demo's, with a view of page views per page and second, the given
/// rules, fast evaluation and retries, and a webhook to `webhook_url`.
fn write_config(pipeline: &Pipeline, webhook_url: &str, rules: &str) -> PathBuf {
    let demo = std::fs::read_to_string(crate::support::repo_root().join("braid.toml")).unwrap();
    let text = format!(
        "{demo}\n[[views]]\nname = \"alert_pages\"\nfilter = {{ field = \"event_type\", op = \"eq\", value = \"page_view\" }}\n\
         group_by = [\"page\"]\nbucket = \"1s\"\nmetrics = [\"count\"]\n\n\
         [alerting]\nevaluation_interval_ms = 250\nmin_interval_ms = 100\nretry_initial_ms = 200\n\
         retry_max_ms = 1000\nwebhook_timeout_ms = 2000\n\n\
         [alerting.webhooks.test]\nurl = \"{webhook_url}\"\ntoken_env = \"ALERT_TEST_TOKEN\"\n{rules}"
    );
    let path = std::env::temp_dir().join(format!("{}.toml", pipeline.topic));
    std::fs::write(&path, text).unwrap();
    path
}

fn rule(
    name: &str,
    window: &str,
    threshold: u32,
    hold: &str,
    keep: &str,
    alerts_topic: &str,
) -> String {
    format!(
        "\n[[alerts]]\nname = \"{name}\"\nview = \"alert_pages\"\nmetric = \"count\"\nwindow = \"{window}\"\n\
         op = \"gt\"\nthreshold = {threshold}\nfor = \"{hold}\"\nkeep_firing_for = \"{keep}\"\n\
         group_by = [\"page\"]\nnotify = [\"webhook:test\", \"kafka:{alerts_topic}\"]\n"
    )
}

/// A pipeline on `pool` with the test config, migrated.
async fn pipeline_with(
    pool: &PgPool,
    test: &str,
    webhook_url: &str,
    rules: impl Fn(&str) -> String,
) -> (Pipeline, String) {
    let mut pipeline = Pipeline::new(test, pool).await;
    let alerts_topic = format!("{}.alerts", pipeline.topic);
    pipeline.config = Some(write_config(&pipeline, webhook_url, &rules(&alerts_topic)));
    let migrated = run(pipeline.braid().arg("migrate"));
    assert!(
        migrated.status.success(),
        "braid migrate: {}",
        stderr(&migrated)
    );
    (pipeline, alerts_topic)
}

fn start_evaluator(pipeline: &Pipeline, name: &str, env: &[(&str, &str)]) -> Running {
    let child = pipeline
        .braid()
        .args(["alerts", "run"])
        .envs(env.iter().copied())
        .env("ALERT_TEST_TOKEN", WEBHOOK_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(log_file(&format!("{}-alerts-{name}", pipeline.topic)))
        .spawn()
        .expect("braid alerts run starts");
    Running(child)
}

/// The server processes holding the evaluator's advisory lock in this test's database (a
/// bigint key shows in pg_locks as its high half in classid and its low half in objid; other
/// advisory locks, such as sqlx's while it migrates, have other keys).
async fn lock_holders(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() \
           AND l.objsubid = 1 \
           AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext($1)::bigint",
    )
    .bind(::alerts::evaluator::EVALUATOR_LOCK)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Waits until every transition of `rule` is delivered to every receiver, then checks that
/// the webhook and the Kafka topic each got every transition at least once.
async fn assert_every_transition_delivered(
    pool: &PgPool,
    rule: &str,
    receiver: &Receiver,
    alerts_topic: &str,
    processes: &mut [&mut Running],
) {
    wait_until("every delivery to be recorded as delivered", Duration::from_secs(60), || {
        for p in processes.iter_mut() {
            p.assert_running("an alert evaluator");
        }
        async {
            let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM braid_internal.alert_deliveries WHERE status <> 'delivered'")
                .fetch_one(pool)
                .await
                .unwrap();
            pending == 0
        }
    })
    .await;
    let seen = transitions(pool, rule).await;
    let expected: BTreeSet<i64> = seen.iter().map(|t| t.id).collect();
    let received = receiver.received();
    let by_webhook: BTreeSet<i64> = received
        .iter()
        .filter(|d| d.body["braid"]["rule"] == rule)
        .map(|d| d.body["braid"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(by_webhook, expected, "the webhook got every transition");
    for d in &received {
        assert_eq!(
            d.authorization.as_deref(),
            Some(&*format!("Bearer {WEBHOOK_TOKEN}")),
            "the token from the environment"
        );
        assert_eq!(
            d.idempotency_key, d.body["idempotency_key"],
            "the key is the header and the field"
        );
        let t = seen
            .iter()
            .find(|t| Some(t.id) == d.body["braid"]["id"].as_i64());
        if let Some(t) = t {
            assert_eq!(d.body["braid"]["to"], t.to.as_str());
            assert_eq!(d.body["alerts"][0]["fingerprint"], t.fingerprint.as_str());
            assert_eq!(d.body["alerts"][0]["labels"]["alertname"], rule);
        }
    }
    let keys: BTreeMap<i64, BTreeSet<String>> =
        received.iter().fold(BTreeMap::new(), |mut m, d| {
            m.entry(d.body["braid"]["id"].as_i64().unwrap())
                .or_default()
                .insert(d.idempotency_key.clone());
            m
        });
    assert!(
        keys.values().all(|k| k.len() == 1),
        "a retried delivery carries the same idempotency key: {keys:?}"
    );
    let by_kafka: Vec<(String, i64)> = read_topic(alerts_topic)
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            (
                String::from_utf8(m.key.clone().unwrap()).unwrap(),
                body["braid"]["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let kafka_ids: BTreeSet<i64> = by_kafka.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        kafka_ids, expected,
        "the Kafka topic holds every transition"
    );
    for (key, id) in &by_kafka {
        let t = seen.iter().find(|t| t.id == *id).unwrap();
        assert_eq!(key, &t.fingerprint, "keyed by fingerprint");
    }
}

#[sqlx::test(migrations = false)]
async fn one_key_goes_pending_firing_and_resolved_with_values_equal_to_the_fold(pool: PgPool) {
    let receiver = Receiver::start().await;
    let (pipeline, alerts_topic) =
        pipeline_with(&pool, "alerts-lifecycle", &receiver.url(), |topic| {
            rule("hot_page", "10s", 5, "2s", "3s", topic)
        })
        .await;
    let mut producer = Producer::new(&pipeline.topic, 2).await;
    let mut speed = pipeline.start_speed("a", "a");
    let mut evaluator = start_evaluator(&pipeline, "a", &[]);
    producer.send("/cold", Utc::now(), 2).await;
    producer.send("/hot", Utc::now(), 8).await;
    let started = Instant::now();
    // Keep /hot above the threshold for longer than `for`, then let it age out of the window.
    while started.elapsed() < Duration::from_secs(3) {
        producer.send("/hot", Utc::now(), 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_until(
        "/hot to go pending, firing and resolved",
        Duration::from_secs(60),
        || {
            speed.assert_running("braid speed");
            evaluator.assert_running("braid alerts run");
            let pool = pool.clone();
            async move {
                transitions(&pool, "hot_page")
                    .await
                    .iter()
                    .any(|t| t.to == "resolved")
            }
        },
    )
    .await;
    let seen = transitions(&pool, "hot_page").await;
    let path: Vec<&str> = seen.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(path, ["pending", "firing", "resolved"], "{seen:#?}");
    assert!(
        seen.iter().all(|t| t.page.as_deref() == Some("/hot")),
        "only /hot has an instance: {seen:#?}"
    );
    let cold: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM braid_internal.alert_instances WHERE labels->>'page' = '/cold'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(cold, 0, "/cold never held");
    assert!(
        seen[1].at - seen[0].at >= chrono::Duration::seconds(2),
        "firing waited for `for`"
    );
    assert!(
        seen[2].at - seen[1].at >= chrono::Duration::seconds(3),
        "resolved waited for `keep_firing_for`"
    );
    assert!(seen[0].value.unwrap() > 5.0 && seen[1].value.unwrap() > 5.0);
    assert!(seen[2].value.is_none_or(|v| v <= 5.0));
    assert_values_equal_the_fold(&producer.sent, &seen);
    assert_chains(&seen);
    assert_every_transition_delivered(
        &pool,
        "hot_page",
        &receiver,
        &alerts_topic,
        &mut [&mut evaluator],
    )
    .await;

    // The API and the CLI show the same.
    let address = crate::http::free_address();
    let mut api = crate::serving::start_serve(
        &pipeline,
        &address,
        "alerts",
        &[("BRAID_ADMIN_TOKEN", "admin-t")],
    );
    wait_until("the API to be ready", Duration::from_secs(60), || {
        api.assert_running("braid serve");
        let ready = crate::http::ready(&address);
        async move { ready }
    })
    .await;
    let (status, body) = crate::http::get(&address, "/v1/alerts?rule=hot_page");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alerts"][0]["state"], "resolved", "{body}");
    assert_eq!(body["alerts"][0]["labels"]["page"], "/hot", "{body}");
    let (status, body) = crate::http::get(&address, "/v1/alerts/history?rule=hot_page&limit=10");
    assert_eq!(status, 200, "{body}");
    let ids: Vec<i64> = body["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        seen.iter().rev().map(|t| t.id).collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(
        body["transitions"][0]["deliveries"][0]["status"], "delivered",
        "{body}"
    );
    let (status, _) = crate::http::get(&address, "/v1/alerts?rule=nope");
    assert_eq!(status, 404);
    let (status, _) = crate::http::request_with_body(
        &address,
        "POST",
        "/v1/admin/alerts/hot_page/silence",
        None,
        r#"{"duration":"10m"}"#,
    );
    assert_eq!(status, 401, "silencing needs the token");
    let (status, body) = crate::http::request_with_body(
        &address,
        "POST",
        "/v1/admin/alerts/hot_page/silence",
        Some("admin-t"),
        r#"{"duration":"soon"}"#,
    );
    assert_eq!(
        (status, body["error"]["parameter"].as_str()),
        (400, Some("duration")),
        "{body}"
    );
    let (status, body) = crate::http::request_with_body(
        &address,
        "POST",
        "/v1/admin/alerts/hot_page/silence",
        Some("admin-t"),
        r#"{"duration":"10m"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, body) = crate::http::get(&address, "/v1/alerts?rule=hot_page");
    assert!(body["rules"][0]["silenced_until"].is_string(), "{body}");
    let listed = run(pipeline
        .braid()
        .args(["alerts", "list", "--rule", "hot_page"]));
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("resolved") && text.contains("/hot"), "{text}");
    let tested = run(pipeline.braid().args(["alerts", "test", "hot_page"]));
    assert!(tested.status.success(), "{}", stderr(&tested));
    assert!(String::from_utf8_lossy(&tested.stdout).contains("nothing is written"));
    let tokenless = run(pipeline
        .braid()
        .args(["alerts", "run"])
        .env_remove("ALERT_TEST_TOKEN"));
    assert!(
        !tokenless.status.success(),
        "a webhook without its token stops the start"
    );
    assert!(
        stderr(&tokenless).contains("token_env names `ALERT_TEST_TOKEN`, which is not set"),
        "{}",
        stderr(&tokenless)
    );
    let unknown = run(pipeline.braid().args(["alerts", "test", "nope"]));
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no alert rule is named `nope`"),
        "{}",
        stderr(&unknown)
    );
}

#[sqlx::test(migrations = false)]
async fn a_late_event_fires_and_a_batch_publish_that_changes_nothing_changes_no_state(
    pool: PgPool,
) {
    let receiver = Receiver::start().await;
    let (pipeline, _) = pipeline_with(&pool, "alerts-late", &receiver.url(), |topic| {
        rule("late_page", "2m", 3, "0s", "0s", topic)
    })
    .await;
    let mut producer = Producer::new(&pipeline.topic, 2).await;
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    // No periodic evaluation within the test: every evaluation after the first is woken by a
    // speed flush or a batch publish that touched the view.
    let mut evaluator = start_evaluator(
        &pipeline,
        "a",
        &[("BRAID__ALERTING__EVALUATION_INTERVAL_MS", "600000")],
    );
    // Three page views 30 s late: 3 is not above 3.
    producer
        .send("/late", Utc::now() - chrono::Duration::seconds(30), 3)
        .await;
    let produced = producer.sent.len() as i64;
    wait_until(
        "an evaluation that read all three",
        Duration::from_secs(60),
        || {
            speed.assert_running("braid speed");
            evaluator.assert_running("braid alerts run");
            let pool = pool.clone();
            async move {
                let Some(last) = alerts::store::last_evaluation(&pool, "late_page")
                    .await
                    .unwrap()
                else {
                    return false;
                };
                let speed: Value = serde_json::from_str(&last.speed).unwrap();
                let read: i64 = speed["positions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["next_offset"].as_i64().unwrap())
                    .sum();
                read >= produced
            }
        },
    )
    .await;
    assert!(
        transitions(&pool, "late_page").await.is_empty(),
        "3 is not above the threshold"
    );
    // One more, 40 s late: its bucket is long closed, but inside the window.
    producer
        .send("/late", Utc::now() - chrono::Duration::seconds(40), 1)
        .await;
    wait_until(
        "the late event to fire the rule",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move { !transitions(&pool, "late_page").await.is_empty() }
        },
    )
    .await;
    let before = transitions(&pool, "late_page").await;
    assert_eq!(before.len(), 1, "{before:#?}");
    assert_eq!(
        (before[0].from.as_str(), before[0].to.as_str()),
        ("inactive", "firing")
    );
    assert_eq!(before[0].value, Some(4.0));
    assert!(before[0].batch.is_none(), "evaluated before any batch run");
    assert_values_equal_the_fold(&producer.sent, &before);
    let state = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, String, Option<f64>, Option<i64>)>(
            "SELECT fingerprint, state, value, last_transition_id FROM braid_internal.alert_instances ORDER BY fingerprint",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let instances_before = state(pool.clone()).await;

    // A batch run moves every row from the speed layer into the batch layer: the merged answer,
    // and so every alert, stays the same.
    crate::support::sink_caught_up(&pipeline, &mut sink).await;
    let batch = run(pipeline.braid().args(["batch", "run"]));
    assert!(
        batch.status.success(),
        "braid batch run: {}",
        stderr(&batch)
    );
    let run_id: i64 = sqlx::query_scalar("SELECT max(run_id) FROM braid_internal.batch_runs WHERE status = 'active' AND view_name = 'alert_pages'")
        .fetch_one(&pool)
        .await
        .unwrap();
    wait_until(
        "an evaluation that read the published run",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move {
                let last = alerts::store::last_evaluation(&pool, "late_page")
                    .await
                    .unwrap()
                    .unwrap();
                let batch: Value = last
                    .batch
                    .as_deref()
                    .map(|b| serde_json::from_str(b).unwrap())
                    .unwrap_or(Value::Null);
                batch["run_id"].as_i64() == Some(run_id)
            }
        },
    )
    .await;
    let speed_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM braid_internal.alert_instances")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(speed_rows, 1);
    assert_eq!(
        transitions(&pool, "late_page").await.len(),
        1,
        "the publish changed no state"
    );
    assert_eq!(
        state(pool.clone()).await,
        instances_before,
        "same state, value and last transition"
    );
}

#[sqlx::test(migrations = false)]
async fn deliveries_survive_a_receiver_outage_and_a_sigkill_of_the_evaluator_whose_standby_takes_over(
    pool: PgPool,
) {
    let mut receiver = Receiver::start().await;
    let (pipeline, alerts_topic) =
        pipeline_with(&pool, "alerts-failover", &receiver.url(), |topic| {
            // A window long enough that a burst fires even when the speed layer, started just
            // before, takes seconds to deliver it (a 6 s window once let a burst age out while
            // pending, so it never fired nor resolved).
            rule("burst_page", "10s", 2, "1s", "1s", topic)
        })
        .await;
    let mut producer = Producer::new(&pipeline.topic, 2).await;
    let mut speed = pipeline.start_speed("a", "a");
    let mut first = start_evaluator(&pipeline, "first", &[]);
    wait_until(
        "the first evaluator to lead",
        Duration::from_secs(30),
        || {
            first.assert_running("the first evaluator");
            let pool = pool.clone();
            async move { lock_holders(&pool).await.len() == 1 }
        },
    )
    .await;
    let leader_pid = lock_holders(&pool).await[0];
    let mut second = start_evaluator(&pipeline, "second", &[]);
    // The receiver is down while the first burst's transitions are recorded and the leader dies.
    receiver.stop().await;
    let outage = Instant::now();
    producer.send("/burst", Utc::now(), 4).await;
    wait_until(
        "the first burst's first transitions",
        Duration::from_secs(30),
        || {
            speed.assert_running("braid speed");
            let pool = pool.clone();
            async move { !transitions(&pool, "burst_page").await.is_empty() }
        },
    )
    .await;
    let pause = rand::rng().random_range(0..2_000);
    tokio::time::sleep(Duration::from_millis(pause)).await;
    first.kill();
    let killed = Instant::now();
    wait_until("the standby to take over", Duration::from_secs(30), || {
        second.assert_running("the second evaluator");
        let pool = pool.clone();
        async move {
            lock_holders(&pool)
                .await
                .iter()
                .any(|&pid| pid != leader_pid)
        }
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!(
        "the standby took over {takeover:?} after the SIGKILL ({pause} ms after the first transition)"
    );
    assert!(
        takeover < Duration::from_secs(5),
        "the standby took over after {takeover:?}"
    );
    let wait_resolved = async |count: usize, second: &mut Running| {
        wait_until(
            &format!("burst {count} to resolve"),
            Duration::from_secs(60),
            || {
                second.assert_running("the second evaluator");
                let pool = pool.clone();
                async move {
                    let seen = transitions(&pool, "burst_page").await;
                    seen.iter().filter(|t| t.to == "resolved").count() >= count
                }
            },
        )
        .await;
    };
    wait_resolved(1, &mut second).await;
    producer.send("/burst", Utc::now(), 4).await;
    // The outage lasts at least 8 s whatever the timing above.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(outage.elapsed())).await;
    receiver.restart().await;
    eprintln!("the receiver was down for {:?}", outage.elapsed());
    wait_resolved(2, &mut second).await;
    producer.send("/burst", Utc::now(), 4).await;
    wait_resolved(3, &mut second).await;
    let seen = transitions(&pool, "burst_page").await;
    let path: Vec<&str> = seen.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(
        path,
        ["pending", "firing", "resolved"].repeat(3),
        "{seen:#?}"
    );
    assert_values_equal_the_fold(&producer.sent, &seen);
    assert_chains(&seen);
    assert_every_transition_delivered(
        &pool,
        "burst_page",
        &receiver,
        &alerts_topic,
        &mut [&mut second],
    )
    .await;
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM braid_internal.alert_deliveries WHERE attempts > 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(retried > 0, "the outage made some deliveries retry");
}

#[test]
fn bad_rules_stop_the_start_naming_the_key() {
    let demo = std::fs::read_to_string(crate::support::repo_root().join("braid.toml")).unwrap();
    let cases = [
        ("view = \"nope\"", "alerts[", "].view"),
        (
            "view = \"events_by_type\"\nmetric = \"sum_price\"",
            "",
            "].metric",
        ),
        ("view = \"events_by_type\"\nwindow = \"5s\"", "", "].window"),
        ("view = \"events_by_type\"\nfor = \"-1m\"", "", "].for"),
    ];
    for (part, prefix, suffix) in cases {
        let mut fields: BTreeMap<&str, String> = BTreeMap::from([
            ("name", "\"bad\"".to_string()),
            ("metric", "\"count\"".to_string()),
            ("window", "\"1m\"".to_string()),
            ("op", "\"gt\"".to_string()),
            ("threshold", "1".to_string()),
        ]);
        for line in part.lines() {
            let (k, v) = line.split_once(" = ").unwrap();
            fields.insert(k, v.to_string());
        }
        let body: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let path = std::env::temp_dir().join(format!(
            "braid-bad-rule-{}-{}.toml",
            std::process::id(),
            suffix.trim_matches(|c: char| !c.is_alphanumeric())
        ));
        std::fs::write(&path, format!("{demo}\n[[alerts]]\n{body}")).unwrap();
        let output = run(braid().args(["alerts", "run"]).env("BRAID_CONFIG", &path));
        assert!(!output.status.success(), "{part}: the start is refused");
        let text = stderr(&output);
        assert!(
            text.contains(prefix) && text.contains(suffix),
            "{part}: the error names the key: {text}"
        );
    }
}
