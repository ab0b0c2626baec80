//! The REST API end to end: producer → speed layer and sink → batch runs → `braid serve`,
//! while events keep flowing and late events arrive. At every moment the API's rows equal the
//! oracle over exactly the records below the positions the same answer reports.

mod decayed;
mod distinct;
mod fuzz;
mod quantiles;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use sqlx::PgPool;

use crate::compare::assert_rows_equal;
use crate::http::{free_address, get, ready, request};
use crate::oracle::{self, ViewRows};
use crate::support::{
    Pipeline, Running, kafka_brokers, log_file, read_topic, run, stderr, wait_until,
};

const TOKEN: &str = "e2e-admin-token";
/// Covers every event time the seeded generator makes (it starts 2026-01-01, late events reach
/// 30 minutes back) and the late event injected below.
pub(crate) const RANGE: &str = "from=2025-12-31T00:00:00Z&to=2026-01-02T00:00:00Z";

fn start_api(pipeline: &Pipeline, address: &str) -> Running {
    start_serve(
        pipeline,
        address,
        "",
        &[
            ("BRAID_ADMIN_TOKEN", TOKEN),
            ("BRAID__SERVING__MAX_LIMIT", "200000"),
        ],
    )
}

/// Starts `braid serve` for `pipeline` on `address` with `env`, logging to
/// `<topic>-serve[-name].log` (see `support::log_of`).
pub(super) fn start_serve(
    pipeline: &Pipeline,
    address: &str,
    name: &str,
    env: &[(&str, &str)],
) -> Running {
    let suffix = if name.is_empty() {
        String::new()
    } else {
        format!("-{name}")
    };
    let child = pipeline
        .braid()
        .args(["serve", "--listen", address])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log_file(&format!("{}-serve{suffix}", pipeline.topic)))
        .spawn()
        .expect("braid serve starts");
    Running(child)
}

/// Starts a speed layer and a sink named `name`, waits until both have caught up with the
/// topic, and runs a batch; returns both, still running.
pub(super) async fn caught_up_with_a_batch_run(
    pool: &PgPool,
    pipeline: &Pipeline,
    name: &str,
) -> (Running, Running) {
    let mut speed = pipeline.start_speed(name, "a");
    let mut sink = pipeline.start_sink(name, "a");
    crate::support::speed_caught_up(pool, pipeline, &mut [&mut speed]).await;
    crate::support::sink_caught_up(pipeline, &mut sink).await;
    let batch = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"]));
    assert!(batch.status.success(), "batch run: {}", stderr(&batch));
    (speed, sink)
}

/// [`start_serve`] on a free address, once it answers /readyz; returns it and its address.
pub(super) async fn serve_ready(
    pipeline: &Pipeline,
    name: &str,
    env: &[(&str, &str)],
) -> (Running, String) {
    let address = free_address();
    let mut api = start_serve(pipeline, &address, name, env);
    wait_until("the API to be ready", Duration::from_secs(60), || {
        api.assert_running("braid serve");
        let address = address.clone();
        async move { ready(&address) }
    })
    .await;
    (api, address)
}

/// One view's rows from an API answer, keyed like the oracle's.
pub(crate) fn rows_of(answer: &Value, groups: &[&str], metrics: &[&str]) -> ViewRows {
    let mut rows = ViewRows::new();
    for row in answer["rows"].as_array().expect("rows") {
        let key: Vec<Option<String>> = groups
            .iter()
            .map(|g| match &row[*g] {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect();
        let bucket = chrono::DateTime::parse_from_rfc3339(row["bucket_start"].as_str().unwrap())
            .unwrap()
            .timestamp_micros();
        let values = metrics
            .iter()
            .map(|m| match &row[*m] {
                Value::Null => None,
                number => Some(number.to_string().parse::<i128>().expect("an integer")),
            })
            .collect();
        rows.insert((key, bucket), values);
    }
    rows
}

/// Asks the API for every demo view and checks each answer against the oracle over the
/// records below the positions that answer reports.
async fn assert_api_exact(address: &str, topic: &str, when: &str) {
    let views = crate::oracle::DEMO_VIEW_COLUMNS;
    let answers: Vec<Value> = views
        .iter()
        .map(|(view, _, _)| {
            let (status, answer) = get(address, &format!("/v1/views/{view}?{RANGE}"));
            assert_eq!(status, 200, "{when}: {answer}");
            assert_eq!(answer["truncated"], false, "{when}: raise the test's limit");
            answer
        })
        .collect();
    // Read after the answers, so the topic holds every record below their positions.
    let messages = read_topic(topic);
    for ((view, groups, metrics), answer) in views.into_iter().zip(answers) {
        let positions = crate::support::reported_positions(&answer["provenance"]["speed"]);
        let covered = messages.iter().filter(|m| {
            positions
                .get(&m.partition)
                .is_some_and(|next| m.offset < *next)
        });
        let expected: BTreeMap<&'static str, ViewRows> = oracle::demo_views(covered)
            .into_iter()
            .filter(|(name, _)| *name == view)
            .collect();
        let actual = BTreeMap::from([(view.to_string(), rows_of(&answer, groups, metrics))]);
        assert_rows_equal(&expected, &actual, &format!("{when}, GET /v1/views/{view}"));
    }
}

/// Produces one page view for an old bucket, one the first batch run has already covered.
fn produce_late_event(topic: &str) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let payload = r#"{"event_id":"late-1","ts":"2026-01-01T00:00:01Z","event_type":"page_view","user_id":"u-late","page":"/late/1","country":"DE","device":"web","duration_ms":1234}"#;
    producer
        .send(BaseRecord::to(topic).key("late-1").payload(payload))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}

#[sqlx::test(migrations = false)]
async fn the_api_answers_the_exact_merge_while_events_flow_and_batches_run(pool: PgPool) {
    let pipeline = Pipeline::new("serving-e2e", &pool).await;
    pipeline.produce(1, 41, 4);
    let address = free_address();
    let mut api = start_api(&pipeline, &address);
    let mut producer = pipeline.produce_in_background(40_000, 42, 5_000, 4);
    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    wait_until("the API to be ready", Duration::from_secs(60), || {
        api.assert_running("braid serve");
        let address = address.clone();
        async move { ready(&address) }
    })
    .await;
    wait_until("the first flushes", Duration::from_secs(60), || async {
        crate::support::stored_total(&pool, &pipeline.topic).await > 3_000
    })
    .await;
    assert_api_exact(&address, &pipeline.topic, "before the first batch").await;

    let first = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"]));
    assert!(first.status.success(), "{}", stderr(&first));
    assert_api_exact(&address, &pipeline.topic, "right after a publish").await;

    // A late event for a bucket the batch run covers shows up at once, from the speed layer.
    produce_late_event(&pipeline.topic);
    let late = "/v1/views/page_views?from=2026-01-01T00:00:00Z&to=2026-01-01T00:01:00Z&filter.page=/late/1";
    wait_until("the late event to show", Duration::from_secs(60), || {
        let address = address.clone();
        async move { get(&address, late).1["rows"][0]["count"] == 1 }
    })
    .await;
    let (_, answer) = get(&address, late);
    assert_eq!(answer["rows"][0]["sum_duration_ms"], 1234);
    assert!(
        answer["provenance"]["batch"]["covered_epoch"].is_i64(),
        "{answer}"
    );

    // A batch run started through the admin API; the answers stay exact while it runs.
    let (status, started) = request(&address, "POST", "/v1/admin/jobs/batch", Some(TOKEN));
    assert_eq!(status, 202, "{started}");
    let job = format!("/v1/jobs/{}", started["id"]);
    let mut checks_while_running = 0;
    loop {
        let (status, state) = request(&address, "GET", &job, Some(TOKEN));
        assert_eq!(status, 200, "{state}");
        if state["status"] != "running" {
            assert_eq!(state["status"], "succeeded", "{state}");
            break;
        }
        assert_api_exact(&address, &pipeline.topic, "while a batch runs").await;
        checks_while_running += 1;
    }
    assert!(
        checks_while_running > 0,
        "the batch ended before any check; nothing was tested while it ran"
    );
    assert_api_exact(&address, &pipeline.topic, "after the second publish").await;

    assert!(producer.wait_success());
    let ends = crate::support::high_watermarks(&pipeline.topic);
    wait_until(
        "the speed layer to catch up",
        Duration::from_secs(120),
        || {
            speed.assert_running("braid speed");
            sink.assert_running("braid sink");
            let ends = ends.clone();
            let address = address.clone();
            async move {
                let (_, views) = get(&address, "/v1/views");
                views["speed"]["offset_lag"] == 0
                    && views["speed"]["positions"].as_array().is_some_and(|p| {
                        p.iter().all(|p| {
                            ends.get(&(p["partition"].as_i64().unwrap() as i32))
                                == p["next_offset"].as_i64().as_ref()
                        })
                    })
            }
        },
    )
    .await;
    assert_api_exact(&address, &pipeline.topic, "at the end").await;
    api.assert_running("braid serve");
}

#[sqlx::test(migrations = false)]
async fn braid_serve_reports_readiness_metrics_and_openapi(pool: PgPool) {
    let pipeline = Pipeline::new("serving-health", &pool).await;
    pipeline.produce(10, 43, 1);
    let (_api, address) = serve_ready(
        &pipeline,
        "",
        &[
            ("BRAID_ADMIN_TOKEN", TOKEN),
            ("BRAID__SERVING__MAX_LIMIT", "200000"),
        ],
    )
    .await;
    let (_, ready) = get(&address, "/readyz");
    assert_eq!(ready["database"]["reachable"], true);
    assert_eq!(ready["kafka"]["reachable"], true);
    let (status, document) = get(&address, "/openapi.json");
    assert_eq!(status, 200);
    assert!(document["paths"]["/v1/views/{view}/top"]["get"].is_object());
    let (status, _) = get(&address, "/v1/views/page_views?granularity=7s");
    assert_eq!(status, 400);
    let (status, metrics) = get(&address, "/metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("braid_serving_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("braid_serving_request_duration_seconds"),
        "{metrics}"
    );
}
