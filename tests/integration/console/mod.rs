//! The web console in a real browser: Debian's headless Chromium, driven by
//! `console/tests/browser/console.test.mjs` (playwright-core over the DevTools protocol),
//! against a real pipeline (Kafka, PostgreSQL, a Delta table; speed, sink, a batch run, the
//! alert evaluator and `braid serve`) fed by the demo generator. The script compares every
//! page's numbers with the public API's, waits for a live update while this test produces more
//! records, checks that records holding HTML and script are shown as text, follows a republish
//! and a batch run started from the page, and saves screenshots under
//! `.braid/artifacts/console/`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;

use crate::http::{free_address, get};
use crate::serving::start_serve;
use crate::support::{
    Pipeline, kafka_brokers, log_file, repo_root, run, sink_caught_up, speed_caught_up, stderr,
    wait_until,
};

const TOKEN: &str = "console-test-token";

/// A page name that is HTML with a script and an image whose error handler runs script.
const HOSTILE_PAGE: &str = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=1</script>";

/// A message that is not JSON and holds a script: dead-lettered, its payload shown as text.
const HOSTILE_PAYLOAD: &str = "<script>window.__xss=2</script> is not JSON";

/// Debian's Chromium (scripts/browser-env.sh installs it), or BRAID_CHROMIUM.
fn chromium() -> PathBuf {
    let path = std::env::var_os("BRAID_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "no Chromium at {}: run scripts/browser-env.sh (it installs Debian's chromium) or set BRAID_CHROMIUM",
        path.display()
    );
    path
}

/// The browser test's folder, with its npm packages installed.
fn browser_test() -> PathBuf {
    let dir = repo_root().join("console/tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let installed = run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir));
        assert!(
            installed.status.success(),
            "npm ci in {}: {}",
            dir.display(),
            stderr(&installed)
        );
    }
    dir
}

/// The demo configuration with the purchase rule made to fire on the test's few records.
fn config_with_a_firing_rule(pipeline: &Pipeline) -> PathBuf {
    let demo = std::fs::read_to_string(repo_root().join("braid.toml")).unwrap();
    let start = demo
        .find("name = \"purchase_surge\"")
        .expect("the demo rule");
    let (head, rule) = demo.split_at(start);
    let mut changed = rule.to_string();
    for (from, to) in [
        ("window = \"1m\"", "window = \"30m\""),
        ("threshold = 600", "threshold = 10"),
        ("for = \"30s\"", "for = \"1s\""),
    ] {
        assert!(changed.contains(from), "the demo rule has {from}");
        changed = changed.replacen(from, to, 1);
    }
    let path = std::env::temp_dir().join(format!("{}-console.toml", pipeline.topic));
    std::fs::write(&path, format!("{head}{changed}")).unwrap();
    path
}

/// One valid page view whose page is [`HOSTILE_PAGE`] and one [`HOSTILE_PAYLOAD`] message.
async fn produce_hostile_records(topic: &str) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let event = serde_json::json!({
        "event_id": "console-hostile-1",
        "ts": chrono::Utc::now().to_rfc3339(),
        "event_type": "page_view",
        "user_id": "<b>user</b>",
        "page": HOSTILE_PAGE,
        "country": "DE",
        "device": "web",
    })
    .to_string();
    for payload in [event.as_str(), HOSTILE_PAYLOAD] {
        producer
            .send(
                FutureRecord::to(topic).key("hostile").payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Produces `count` seeded demo events (some late, some malformed) whose event times start
/// `ago` before now and advance by `step` per event, so that they fall in the console's
/// windows (the seeded default starts in 2026-01-01).
fn produce_recent(pipeline: &Pipeline, count: u64, seed: u64, ago: Duration, step: Duration) {
    let start = chrono::Utc::now() - chrono::Duration::from_std(ago).unwrap();
    let output = run(pipeline
        .braid()
        .args(["generate", "--rate", "0", "--partitions", "4"])
        .args(["--late-fraction", "0.1", "--malformed-fraction", "0.03"])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .args(["--start", &start.to_rfc3339()])
        .args(["--event-interval-us", &step.as_micros().to_string()]));
    assert!(output.status.success(), "generate: {}", stderr(&output));
}

#[sqlx::test(migrations = false)]
async fn every_page_shows_the_apis_numbers_updates_live_escapes_records_and_follows_jobs(
    pool: PgPool,
) {
    let chromium = chromium();
    let script_dir = browser_test();
    let mut pipeline = Pipeline::new("console", &pool).await;
    pipeline.config = Some(config_with_a_firing_rule(&pipeline));
    produce_recent(
        &pipeline,
        3_000,
        20,
        Duration::from_secs(15 * 60),
        Duration::from_millis(250),
    );
    let mut speed = pipeline.start_speed("console", "a");
    let mut sink = pipeline.start_sink("console", "a");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;
    sink_caught_up(&pipeline, &mut sink).await;
    let batch = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"]));
    assert!(batch.status.success(), "batch run: {}", stderr(&batch));
    // Records after the batch run: the speed part of the merge.
    produce_recent(
        &pipeline,
        500,
        21,
        Duration::from_secs(120),
        Duration::from_millis(200),
    );
    // Last, so that the overview's ten most recent dead letters include the hostile one.
    produce_hostile_records(&pipeline.topic).await;
    speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;
    sink_caught_up(&pipeline, &mut sink).await;

    let address = free_address();
    let _serve = start_serve(
        &pipeline,
        &address,
        "console",
        &[("BRAID_ADMIN_TOKEN", TOKEN)],
    );
    let _alerts = crate::support::Running(
        pipeline
            .braid()
            .args(["alerts", "run"])
            .stdout(Stdio::null())
            .stderr(log_file(&format!("{}-alerts-console", pipeline.topic)))
            .spawn()
            .expect("braid alerts run starts"),
    );
    wait_until(
        "braid serve to be ready",
        Duration::from_secs(60),
        || async { crate::http::ready(&address) },
    )
    .await;
    wait_until(
        "the purchase rule to fire",
        Duration::from_secs(60),
        || async {
            let (status, body) = get(&address, "/v1/alerts");
            status == 200
                && body["alerts"]
                    .as_array()
                    .is_some_and(|alerts| alerts.iter().any(|a| a["state"] == "firing"))
        },
    )
    .await;

    let shots = repo_root().join(".braid/artifacts/console");
    let replay_topic = format!("{}.console-replay", pipeline.topic);
    let mut browser = Command::new("node")
        .arg("console.test.mjs")
        .current_dir(&script_dir)
        .env("BRAID_URL", format!("http://{address}"))
        .env("BRAID_ADMIN_TOKEN", TOKEN)
        .env("BRAID_CHROMIUM", &chromium)
        .env("BRAID_SCREENSHOTS", &shots)
        .env("BRAID_HOSTILE_PAGE", HOSTILE_PAGE)
        .env("BRAID_HOSTILE_PAYLOAD", HOSTILE_PAYLOAD)
        .env("BRAID_REPLAY_TOPIC", &replay_topic)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file(&format!("{}-browser", pipeline.topic)))
        .spawn()
        .expect("node runs the browser test (Node.js 18+ is needed)");
    let (lines, mut answers) = (
        BufReader::new(browser.stdout.take().unwrap()).lines(),
        browser.stdin.take().unwrap(),
    );
    let mut result = None;
    for line in lines {
        let line = line.unwrap();
        if line == "WAITING live" {
            produce_recent(
                &pipeline,
                400,
                22,
                Duration::from_secs(60),
                Duration::from_millis(100),
            );
            speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;
            writeln!(answers, "produced").unwrap();
        } else if let Some(figures) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<serde_json::Value>(figures).unwrap());
        }
    }
    drop(answers);
    let status = browser.wait().unwrap();
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("braid-test-logs/{}-browser.log", pipeline.topic)),
    )
    .unwrap_or_default();
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{log}"
    );
    let figures = result.unwrap_or_else(|| panic!("the browser test printed no result:\n{log}"));
    eprintln!("console figures: {figures}");
    std::fs::write(shots.join("figures.json"), figures.to_string()).unwrap();
    for shot in [
        "overview.png",
        "view.png",
        "view-hostile.png",
        "alerts.png",
        "jobs-progress.png",
        "jobs.png",
    ] {
        assert!(shots.join(shot).exists(), "the screenshot {shot} was saved");
    }
}
