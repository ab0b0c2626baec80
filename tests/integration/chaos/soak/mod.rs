//! The soak (issue 41): every component for a long time, many faults at once, nothing lost.
//! `scripts/chaos --soak DURATION` sets `BRAID_CHAOS_SOAK` and runs `chaos::soak::soak` on the
//! chaos services, the lake on their S3 server.
//!
//! Running: the speed layer, the sink, the scheduler (a batch run every minute, a compaction
//! every 20 s, a vacuum every 2 minutes), two alert evaluators (one stands by) posting to a
//! real webhook receiver, the dimension follower and `braid serve`, on the demo config plus a
//! followed dimension and two alert rules. Input: the demo generator on the wall clock (10 %
//! late, 2 % malformed, 5 % hostile but valid), a transactional producer that aborts every
//! fourth transaction, bursts that make the rules fire and resolve, and a changing dimension
//! topic. Faults at random moments (`faults::plan`): SIGKILLs of every process, PostgreSQL
//! immediate restarts, Kafka and S3 server SIGKILLs, the topic growing once and, as root, the S3
//! server's disk full for a while. Every few minutes a checkpoint (`checks`) compares, without
//! pausing anything, what Braid shows with an independent fold over exactly the records below
//! the positions it reports; at the end the input stops, everything catches up, a last batch
//! runs, and the same checks must find everything. The report (`report`) adds memory over time
//! and the longest stall of each component.

mod checks;
mod disk;
mod faults;
mod input;
mod monitor;
mod processes;
mod report;
mod topic;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::alerts::receiver::Receiver;
use crate::http::free_address;
use crate::support::{Pipeline, repo_root, run, stderr, wait_until};
use processes::{Kind, Processes};
use report::Checkpoint;
use topic::TopicCache;

/// The demo generator's rate, events/s (the soak shares two cores with its services).
const RATE: u32 = 150;

/// The duration `BRAID_CHAOS_SOAK` asks for: `60m`, `1h`, `90s` or minutes as a bare number.
fn duration() -> Option<Duration> {
    let text = std::env::var("BRAID_CHAOS_SOAK").ok()?;
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, "m"),
    };
    let n: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("BRAID_CHAOS_SOAK={text}: say e.g. 60m, 1h or 90s"));
    let seconds = match unit {
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => panic!("BRAID_CHAOS_SOAK={text}: unknown unit {other}"),
    };
    Some(Duration::from_secs_f64(seconds))
}

/// The soak's config: the demo's, with fast alert evaluation and retries, a webhook to the
/// test's receiver, two rules that the bursts of `input` make fire and resolve, and the
/// dimension `pages` followed from `dimension_topic`.
fn write_config(pipeline: &Pipeline, webhook: &str, dimension_topic: &str) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(repo_root().join("braid.toml")).unwrap();
    let extra = format!(
        r#"
[alerting]
evaluation_interval_ms = 1000
min_interval_ms = 250
retry_initial_ms = 200
retry_max_ms = 2000
webhook_timeout_ms = 2000

[alerting.webhooks.soak]
url = "{webhook}"
token_env = "SOAK_WEBHOOK_TOKEN"

[[alerts]]
name = "soak_burst"
view = "purchases_by_country"
where = {{ country = "ZZ" }}
metric = "count"
window = "1m"
op = "gt"
threshold = 20
for = "0s"
keep_firing_for = "0s"
group_by = ["country", "device"]
notify = ["webhook:soak"]

[[alerts]]
name = "soak_probe"
view = "events_by_type"
where = {{ event_type = "soak_probe" }}
metric = "count"
window = "1m"
op = "gt"
threshold = 20
for = "5s"
keep_firing_for = "15s"
group_by = ["event_type"]
notify = ["webhook:soak"]

# Each view in time slices of at most 50,000 records: at the memory rule's reference (10
# minutes, about 100,000 records) the scheduler's batches already hold one slice at a time, so
# the rule measures that their memory stays bounded as the history grows six-fold.
[batch]
slice_records = 50000

[[dimensions]]
name = "pages"
key = "page"
attributes = [{{ name = "section", type = "string" }}, {{ name = "weight", type = "i64" }}]
source = {{ kafka_topic = "{dimension_topic}", format = "json" }}
"#
    );
    let folder = std::env::temp_dir().join(format!("{}-config", pipeline.topic));
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("braid.toml");
    std::fs::write(&path, format!("{demo}\n{extra}")).unwrap();
    path
}

/// What the checkpoints share.
struct Context {
    pool: PgPool,
    pipeline: Pipeline,
    address: String,
    range: String,
    dimension_topic: String,
    receiver: Receiver,
    records: TopicCache,
    dimension: TopicCache,
    gate: Arc<tokio::sync::Mutex<()>>,
    started: Instant,
}

/// Every check once. Holds the gate, so no service crashes meanwhile; process SIGKILLs go on.
async fn checkpoint(ctx: &mut Context, name: String) -> (Checkpoint, Option<checks::Lake>) {
    let gate = ctx.gate.clone();
    let _gate = gate.lock().await;
    let at = ctx.started.elapsed();
    let begun = Instant::now();
    let mut results: Vec<(&str, checks::Checked)> = Vec::new();
    results.push((
        "api",
        checks::api(&ctx.address, &ctx.range, &mut ctx.records).await,
    ));
    let (_, sql) = checks::sql_views_sketches_and_dead_letters(
        &ctx.pool,
        &ctx.pipeline.topic,
        &mut ctx.records,
    )
    .await;
    results.extend(sql);
    let (lake, checked) = checks::lake(&ctx.pool, &ctx.pipeline, &mut ctx.records).await;
    results.extend(checked);
    results.push((
        "dimension",
        checks::dimension(&ctx.pool, &ctx.dimension_topic, &mut ctx.dimension).await,
    ));
    let (alerts, checked) = checks::alerts(&ctx.pool, &ctx.receiver).await;
    results.push(("alerts", checked));
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|(what, r)| r.err().map(|e| format!("{what}: {e}")))
        .collect();
    let checkpoint = Checkpoint {
        name,
        at,
        took: begun.elapsed(),
        records: ctx.records.len(),
        failures,
    };
    eprintln!(
        "soak: checkpoint {} at {:.0} s ({:.0} s, {} records{}{}): {}",
        checkpoint.name,
        at.as_secs_f64(),
        checkpoint.took.as_secs_f64(),
        checkpoint.records,
        lake.as_ref()
            .map(|l| format!(", lake v{} {} rows", l.version, l.rows))
            .unwrap_or_default(),
        alerts
            .as_ref()
            .map(|a| format!(
                ", {} transitions, {} delivered, {} pending",
                a.transitions, a.delivered, a.pending
            ))
            .unwrap_or_default(),
        if checkpoint.failures.is_empty() {
            "pass".to_string()
        } else {
            checkpoint.failures.join(" | ")
        }
    );
    (checkpoint, lake)
}

/// Where each layer stands against the ends of the topics: what falls short, if anything.
async fn behind(
    ctx: &Context,
    ends: &topic::Positions,
    dimension_ends: &topic::Positions,
) -> Vec<String> {
    let fell_short = |name: &str, at: &topic::Positions, ends: &topic::Positions| {
        let short: Vec<String> = ends
            .iter()
            .filter(|(p, end)| at.get(p).is_none_or(|at| at < end))
            .map(|(p, end)| {
                format!(
                    "{p}: {} of {end}",
                    at.get(p).map_or("none".into(), |a| a.to_string())
                )
            })
            .collect();
        (!short.is_empty()).then(|| format!("{name} at {}", short.join(", ")))
    };
    let mut behind = Vec::new();
    match schemas::pg::load_positions(&ctx.pool, &ctx.pipeline.topic).await {
        Ok(speed) => behind.extend(fell_short("speed layer", &speed, ends)),
        Err(e) => behind.push(format!("speed positions: {e}")),
    }
    match dimensions::store::load_positions(&ctx.pool, "pages", &ctx.dimension_topic).await {
        Ok(followed) => behind.extend(fell_short("follower", &followed, dimension_ends)),
        Err(e) => behind.push(format!("follower positions: {e}")),
    }
    let schema = schemas::BraidConfig::load(ctx.pipeline.config.as_deref())
        .unwrap()
        .schema;
    let partitions: Vec<i32> = ends.keys().copied().collect();
    match ctx.pipeline.lake.open(&schema).await {
        Some(table) => {
            let sink =
                batch_layer::lake::positions_in_log(&table, &ctx.pipeline.topic, &partitions)
                    .await
                    .unwrap_or_default();
            behind.extend(fell_short("sink", &sink, ends));
        }
        None => behind.push("the Delta table does not open".into()),
    }
    match sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM braid_internal.alert_deliveries WHERE status = 'pending'",
    )
    .fetch_one(&ctx.pool)
    .await
    {
        Ok(0) => {}
        Ok(n) => behind.push(format!("{n} alert deliveries pending")),
        Err(e) => behind.push(format!("deliveries: {e}")),
    }
    behind
}

/// Waits (at most `deadline`) until every layer has taken in everything on the topics and
/// every delivery is made; returns what still falls short after the deadline.
async fn settle(
    ctx: &mut Context,
    processes: &Arc<Mutex<Processes>>,
    deadline: Duration,
) -> Vec<String> {
    topic::refresh(&mut ctx.records).await.unwrap();
    topic::refresh(&mut ctx.dimension).await.unwrap();
    let ends = ctx.records.committed_ends();
    let dimension_ends = ctx.dimension.committed_ends();
    let until = Instant::now() + deadline;
    loop {
        processes.lock().unwrap().reap();
        let short = behind(ctx, &ends, &dimension_ends).await;
        if short.is_empty() || Instant::now() > until {
            return short;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[sqlx::test(migrations = false)]
#[ignore = "runs for an hour with faults at random; run by scripts/chaos --soak"]
async fn soak(pool: PgPool) {
    let Some(duration) = duration() else {
        eprintln!("BRAID_CHAOS_SOAK is not set: the soak runs under scripts/chaos --soak only");
        return;
    };
    let seed: u64 = std::env::var("BRAID_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp() as u64);
    eprintln!("soak: {duration:?}, seed {seed} (BRAID_SOAK_SEED repeats the fault plan)");
    // The webhook receiver on a runtime of its own: the test's has one thread, which the
    // checks keep busy for seconds at a time.
    let receiver_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let receiver = {
        let handle = receiver_runtime.handle().clone();
        tokio::task::spawn_blocking(move || handle.block_on(Receiver::start()))
            .await
            .unwrap()
    };
    let mut pipeline = Pipeline::on_s3("chaos-soak", &pool).await;
    let dimension_topic = format!("{}.pages", pipeline.topic);
    crate::kafka_admin::create_topic_with(&pipeline.topic, 4, &[]).await;
    crate::kafka_admin::create_topic_with(&dimension_topic, 1, &[("cleanup.policy", "compact")])
        .await;
    pipeline.config = Some(write_config(&pipeline, &receiver.url(), &dimension_topic));
    let migrated = run(pipeline.braid().arg("migrate"));
    assert!(
        migrated.status.success(),
        "braid migrate: {}",
        stderr(&migrated)
    );

    let started = Instant::now();
    let wall_start = chrono::Utc::now();
    let address = free_address();
    let processes = Arc::new(Mutex::new(Processes::start(
        &pipeline, &address, RATE, started,
    )));
    let stop = Arc::new(AtomicBool::new(false));
    let _teardown = processes::Teardown {
        processes: processes.clone(),
        stop: stop.clone(),
    };
    wait_until("the API to be ready", Duration::from_secs(120), || {
        processes.lock().unwrap().reap();
        let address = address.clone();
        async move {
            tokio::task::spawn_blocking(move || crate::http::ready(&address))
                .await
                .unwrap_or(false)
        }
    })
    .await;
    let mut input = input::Input::start(&pipeline.topic, &dimension_topic, seed);
    let samples = Arc::new(Mutex::new(monitor::Samples::default()));
    let monitor = monitor::start(
        pipeline.database_url.clone(),
        pipeline.topic.clone(),
        processes.clone(),
        samples.clone(),
        started,
        stop.clone(),
    );
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    let injected = Arc::new(Mutex::new(Vec::new()));
    let disk = disk::path().is_some();
    let plan = faults::plan(duration, seed, disk);
    eprintln!(
        "soak: {} faults planned{}",
        plan.len(),
        if disk {
            ""
        } else {
            " (no S3 disk to fill: BRAID_SOAK_S3_DISK unset)"
        }
    );
    let fault_threads = faults::start(
        &faults::Shared {
            processes: processes.clone(),
            gate: gate.clone(),
            injected: injected.clone(),
            stop: stop.clone(),
        },
        plan,
        started,
        &pipeline.database_url,
        &pipeline.topic,
        seed,
    );

    let format = "%Y-%m-%dT%H:%M:%SZ";
    let to = wall_start + chrono::Duration::from_std(duration).unwrap() + chrono::Duration::days(1);
    let mut ctx = Context {
        pool: pool.clone(),
        pipeline: pipeline.clone(),
        address: address.clone(),
        range: format!(
            "from={}&to={}",
            (wall_start - chrono::Duration::hours(2)).format(format),
            to.format(format)
        ),
        dimension_topic: dimension_topic.clone(),
        receiver,
        records: TopicCache::new(&pipeline.topic),
        dimension: TopicCache::new(&dimension_topic),
        gate,
        started,
    };
    // Checkpoints every few minutes (every 5 in an hour, a quarter of a short soak).
    let every = (duration / 12).clamp(Duration::from_secs(90), Duration::from_secs(300));
    let mut checkpoints = Vec::new();
    let mut next = every;
    while next + Duration::from_secs(30) < duration {
        // The moment of the next checkpoint (a pause, not a synchronisation).
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
        let (checkpoint, _) = checkpoint(&mut ctx, format!("{}", checkpoints.len() + 1)).await;
        checkpoints.push(checkpoint);
        next = (next + every).max(started.elapsed() + Duration::from_secs(30));
    }
    tokio::time::sleep(duration.saturating_sub(started.elapsed())).await;

    // The end: no more faults (the one under way completes), every service up, no more input.
    stop.store(true, Ordering::SeqCst);
    let faulted = tokio::task::spawn_blocking(move || {
        fault_threads
            .into_iter()
            .map(|t| t.join().expect("a fault thread does not panic"))
            .collect::<Result<Vec<()>, String>>()
    })
    .await
    .unwrap();
    let fault_period = started.elapsed();
    tokio::task::spawn_blocking(move || monitor.join())
        .await
        .unwrap()
        .expect("the monitor does not panic");
    let up = run(
        std::process::Command::new(repo_root().join("scripts/services.sh"))
            .arg("up")
            .env_remove("DATABASE_URL")
            .env_remove("KAFKA_BROKERS")
            .env_remove("BRAID_S3_ENDPOINT"),
    );
    assert!(up.status.success(), "services.sh up: {}", stderr(&up));
    let input = tokio::task::spawn_blocking(move || {
        input.stop();
        input
    })
    .await
    .unwrap();
    // How often each process was started, before the generator and the scheduler go.
    let starts = processes.lock().unwrap().starts();
    processes.lock().unwrap().stop(Kind::Generator);
    let settling = Instant::now();
    let short = settle(&mut ctx, &processes, Duration::from_secs(300)).await;
    let caught_up = settling.elapsed();
    if !short.is_empty() {
        eprintln!(
            "soak: after 300 s the layers still fall short: {}",
            short.join("; ")
        );
    }
    processes.lock().unwrap().stop(Kind::Scheduler);
    let batch = {
        let pipeline = pipeline.clone();
        tokio::task::spawn_blocking(move || {
            run(pipeline
                .braid()
                .args(["batch", "run", "--wait-timeout", "300"]))
        })
        .await
        .unwrap()
    };
    let (mut last, lake) = checkpoint(&mut ctx, "end".into()).await;
    if !batch.status.success() {
        last.failures
            .push(format!("the last batch run: {}", stderr(&batch)));
    }
    if let Err(e) = faulted {
        last.failures
            .push(format!("a fault could not be injected: {e}"));
    }
    if !short.is_empty() {
        last.failures.push(format!(
            "300 s after the input stopped, not caught up: {}",
            short.join("; ")
        ));
    }
    let ends = ctx.records.committed_ends();
    if let Some(lake) = &lake
        && !ends
            .iter()
            .all(|(p, end)| lake.positions.get(p).is_some_and(|at| at >= end))
    {
        last.failures.push(format!(
            "the lake's positions {:?} fall short of the topic's ends {ends:?}",
            lake.positions
        ));
    }
    checkpoints.push(last);
    {
        let mut processes = processes.lock().unwrap();
        processes.reap();
    }

    // The report.
    let processes = processes.lock().unwrap();
    let injected = injected.lock().unwrap().clone();
    let samples = samples.lock().unwrap();
    let counts = report::fault_counts(&injected);
    let end_s = fault_period.as_secs();
    // Each process's peak over the same length of time before the reference moment (10
    // minutes in an hour's soak) and before the end: the report's window (5 minutes in an
    // hour). Shorter windows compared a scheduler that happened to run no batch in one minute
    // (SIGKILLed, it starts a batch every minute) with one that did in the other.
    let window = memory_window(duration);
    let reference = (duration.as_secs() / 6).clamp(120, 600).max(window);
    let before = report::peak_between(&samples, reference - window, reference);
    let after = report::peak_between(&samples, end_s.saturating_sub(window), end_s + 1);
    let memory_flat: std::collections::BTreeMap<&'static str, (u64, u64)> = before
        .iter()
        .filter_map(|(name, b)| after.get(name).map(|a| (*name, (*b, *a))))
        .collect();
    let mut failures: Vec<String> = Vec::new();
    for (name, (b, a)) in &memory_flat {
        if *a as f64 > *b as f64 * 1.2 {
            failures.push(format!(
                "{name}: resident {} MiB at the end, {} MiB at {reference} s (more than +20 %)",
                a / 1024,
                b / 1024
            ));
        }
    }
    let component_exits: Vec<_> = processes
        .exits
        .iter()
        .filter(|e| e.name != "generator")
        .collect();
    if !component_exits.is_empty() {
        failures.push(format!(
            "{} Braid processes ended by themselves",
            component_exits.len()
        ));
    }
    let passed = checkpoints.iter().filter(|c| c.failures.is_empty()).count();
    for c in checkpoints.iter().filter(|c| !c.failures.is_empty()) {
        failures.push(format!("checkpoint {}: {}", c.name, c.failures.join("; ")));
    }
    let kills_short: Vec<String> = Kind::KILLED
        .iter()
        .map(|k| {
            let n: usize = counts
                .iter()
                .filter(|(f, _)| f.starts_with(&format!("SIGKILL {}", k.name())))
                .map(|(_, n)| n)
                .sum();
            format!("{n}x SIGKILL {}", k.name())
        })
        .collect();
    let services: Vec<String> = counts
        .iter()
        .filter(|(f, _)| !f.starts_with("SIGKILL"))
        .map(|(f, n)| format!("{n}x {f}"))
        .collect();
    let stalls = report::longest_stalls(&samples, &injected, fault_period);
    // Lost: valid records of the topic the lake lacks at the end, once everything has caught up
    // (or should have).
    let (lost, duplicated) = lake
        .as_ref()
        .map_or((0, 0), |l| (l.lost.max(l.missing), l.duplicated));
    let title = format!(
        "Soak {} s (scripts/chaos --soak {}), seed {seed}, speed and sink {} group members",
        duration.as_secs(),
        std::env::var("BRAID_CHAOS_SOAK").unwrap_or_default(),
        if processes::static_members() {
            "static"
        } else {
            "dynamic"
        }
    );
    let summary = vec![
        (
            "records (committed on the topic)".to_string(),
            ctx.records.len().to_string(),
        ),
        ("lost".into(), lost.to_string()),
        ("duplicated".into(), duplicated.to_string()),
        (
            "checkpoints passed".into(),
            format!("{passed} of {}", checkpoints.len()),
        ),
        (
            "catch-up after the faults stopped".into(),
            format!("{:.0} s", caught_up.as_secs_f64()),
        ),
        ("dimension messages".into(), ctx.dimension.len().to_string()),
        (
            "transactions (5 records each)".into(),
            format!(
                "{} committed, {} aborted, {} failed (Kafka away)",
                input.counts.committed.load(Ordering::Relaxed),
                input.counts.aborted.load(Ordering::Relaxed),
                input.counts.failed.load(Ordering::Relaxed)
            ),
        ),
        (
            "alert bursts".into(),
            input.counts.bursts.load(Ordering::Relaxed).to_string(),
        ),
        (
            "result".into(),
            if failures.is_empty() {
                "pass".into()
            } else {
                format!("FAIL: {}", failures.join("; "))
            },
        ),
    ];
    let markdown = report::Report {
        title,
        injected: &injected,
        checkpoints: &checkpoints,
        samples: &samples,
        exits: &processes.exits,
        starts,
        stalls,
        memory_window: window,
        memory_flat,
        summary,
    }
    .markdown();
    eprintln!("{markdown}");
    if let Ok(path) = std::env::var("BRAID_SOAK_REPORT") {
        std::fs::write(&path, &markdown).unwrap();
    }
    let outcome = super::Outcome {
        faults: [kills_short, services].concat().join(", "),
        records: ctx.records.len(),
        lost,
        duplicated,
    };
    let exact = if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    };
    // The receiver's runtime may not be dropped in this async context (tokio panics there,
    // which failed a soak whose every check had passed): shut it down without waiting, before
    // the report's verdict, which panics on a failure.
    receiver_runtime.shutdown_background();
    super::report(
        &format!(
            "soak-{}",
            std::env::var("BRAID_CHAOS_SOAK").unwrap_or_default()
        ),
        &outcome,
        exact,
    );
}

/// The length of the windows whose peak resident sizes the report lists and the memory rule
/// compares: a tenth of the soak, from one to five minutes.
fn memory_window(duration: Duration) -> u64 {
    (duration.as_secs() / 10).clamp(60, 300)
}
