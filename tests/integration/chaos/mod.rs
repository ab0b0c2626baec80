//! Faults with nothing lost: each scenario runs the pipeline (speed layer, sink, scheduler with
//! frequent batch runs and compactions, the API) on a generated stream with a known truth,
//! injects its faults while records flow, and ends by checking, per key and bucket, that the
//! merged answer equals the oracle and that Delta holds each valid (partition, offset) exactly
//! once. Each appends a row to the report that `scripts/chaos` prints as a table.
//!
//! These tests crash PostgreSQL and Kafka, so they are ignored in the normal suite and run by
//! `scripts/chaos` one at a time against services of their own. `BRAID_CHAOS_SHORT=1` is the
//! short form CI runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sqlx::PgPool;

use crate::compare::{Source, read_rows};
use crate::http::{free_address, get, ready};
use crate::oracle;
mod hostile_values;
mod soak;

use crate::support::{
    Pipeline, Running, kafka_brokers, log_file, read_topic, repo_root, run, sink_caught_up,
    speed_caught_up, stderr, wait_until,
};

fn short() -> bool {
    std::env::var("BRAID_CHAOS_SHORT").is_ok_and(|v| v == "1")
}

/// The processes of a scenario, restartable by name.
struct Processes {
    speed: Running,
    sink: Running,
    scheduler: Running,
    api: Running,
    address: String,
    restarts: usize,
}

const SCHEDULE: [(&str, &str); 2] = [
    ("BRAID__JOBS__BATCH__SCHEDULE", "*/3 * * * * *"),
    ("BRAID__JOBS__COMPACT__SCHEDULE", "*/5 * * * * *"),
];

impl Processes {
    fn start(pipeline: &Pipeline) -> Self {
        let address = free_address();
        let api = Running(
            pipeline
                .braid()
                .args(["serve", "--listen", &address])
                .stdout(std::process::Stdio::null())
                .stderr(log_file(&format!("{}-serve", pipeline.topic)))
                .spawn()
                .unwrap(),
        );
        Self {
            speed: pipeline.start_speed("0", "speed"),
            sink: pipeline.start_sink("0", "sink"),
            scheduler: pipeline.start_scheduler("0", &SCHEDULE),
            api,
            address,
            restarts: 0,
        }
    }

    /// Kills one process with SIGKILL and starts it again; says which.
    fn kill_and_restart(&mut self, pipeline: &Pipeline, which: usize) -> &'static str {
        self.restarts += 1;
        let n = self.restarts.to_string();
        match which % 3 {
            0 => {
                self.speed.kill();
                self.speed = pipeline.start_speed(&n, "speed");
                "speed"
            }
            1 => {
                self.sink.kill();
                self.sink = pipeline.start_sink(&n, "sink");
                "sink"
            }
            _ => {
                self.scheduler.kill();
                self.scheduler = pipeline.start_scheduler(&n, &SCHEDULE);
                "scheduler"
            }
        }
    }

    fn assert_running(&mut self) {
        self.speed.assert_running("braid speed");
        self.sink.assert_running("braid sink");
        self.scheduler.assert_running("braid jobs");
        self.api.assert_running("braid serve");
    }
}

/// `scripts/services.sh ACTION` on the services this run uses (their env, not the given URLs).
fn services(action: &str) {
    let output = run(
        std::process::Command::new(repo_root().join("scripts/services.sh"))
            .arg(action)
            .env_remove("DATABASE_URL")
            .env_remove("KAFKA_BROKERS"),
    );
    assert!(
        output.status.success(),
        "services.sh {action}: {}",
        stderr(&output)
    );
}

/// What a scenario found.
struct Outcome {
    faults: String,
    records: usize,
    lost: usize,
    duplicated: usize,
}

/// Appends the scenario's row to the report, then fails if anything was lost or doubled.
fn report(scenario: &str, outcome: &Outcome, exact: Result<(), String>) {
    let result = match (&exact, outcome.lost + outcome.duplicated) {
        (Ok(()), 0) => "pass".to_string(),
        (Err(why), _) => format!("FAIL: {why}"),
        _ => "FAIL".to_string(),
    };
    if let Ok(path) = std::env::var("BRAID_CHAOS_REPORT") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(
            file,
            "{scenario}\t{}\t{}\t{}\t{}\t{}",
            outcome.faults, outcome.records, outcome.lost, outcome.duplicated, result
        )
        .unwrap();
    }
    assert!(
        result == "pass",
        "{scenario}: {result}; lost {}, duplicated {}",
        outcome.lost,
        outcome.duplicated
    );
}

/// Why a scenario's config refuses a payload (`None`: valid), decided independently of Braid:
/// the demo oracle's [`oracle::refusal`], or one that adds a scenario's own fields.
type Refusal = fn(&[u8]) -> Option<&'static str>;

/// How a scenario's records are written to its topic.
#[derive(Clone, Copy)]
enum Wire {
    /// JSON text.
    Json,
    /// Avro in Confluent's wire format, under writer schemas in the schema registry.
    Avro,
}

/// The records an independent reading of `messages` accepts, in JSON form (for the fold), and
/// the refusals both layers must dead-letter as (partition, offset, reason code): JSON judged
/// by `refusal`; Avro decoded by apache-avro's reader with the registry's writer schemas, then
/// judged by `refusal` in its JSON form.
async fn judge(
    messages: &[oracle::RawMessage],
    wire: Wire,
    refusal: Refusal,
) -> (Vec<oracle::RawMessage>, BTreeSet<(i32, i64, String)>) {
    match wire {
        Wire::Json => {
            let mut accepted = Vec::new();
            let mut refused = BTreeSet::new();
            for message in messages {
                match refusal(&message.payload) {
                    None => accepted.push(message.clone()),
                    Some(code) => {
                        refused.insert((message.partition, message.offset, code.to_string()));
                    }
                }
            }
            (accepted, refused)
        }
        Wire::Avro => crate::registry::oracle_of(messages, refusal).await,
    }
}

/// Waits for the pipeline to take in everything, runs a last batch, and counts what Delta and
/// the merged answer hold against the valid records (as [`judge`] reads them).
async fn settle_and_check(
    pool: &PgPool,
    pipeline: &Pipeline,
    processes: &mut Processes,
    faults: String,
    wire: Wire,
    refusal: Refusal,
) -> (Outcome, Result<(), String>) {
    speed_caught_up(
        pool,
        pipeline,
        &mut [&mut processes.speed, &mut processes.sink],
    )
    .await;
    sink_caught_up(pipeline, &mut processes.sink).await;
    processes.scheduler.kill();
    let batch = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "180"]));
    assert!(
        batch.status.success(),
        "the last batch run: {}",
        stderr(&batch)
    );

    let messages = read_topic(&pipeline.topic);
    let (accepted, reasons) = judge(&messages, wire, refusal).await;
    let valid: BTreeSet<(i64, i64)> = accepted
        .iter()
        .map(|m| (i64::from(m.partition), m.offset))
        .collect();
    let contents = pipeline.lake.read_with_python();
    let mut seen: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for row in contents["rows"].as_array().unwrap() {
        *seen
            .entry((
                row["_partition"].as_i64().unwrap(),
                row["_offset"].as_i64().unwrap(),
            ))
            .or_default() += 1;
    }
    let lost = valid.iter().filter(|p| !seen.contains_key(p)).count();
    let duplicated = seen.values().map(|n| n - 1).sum::<usize>()
        + seen.keys().filter(|p| !valid.contains(p)).count();

    // Every refused record is a dead letter with its reason.
    let refused = reasons.len();
    let (letters,): (i64,) = sqlx::query_as(
        "SELECT count(DISTINCT (partition, \"offset\")) FROM braid_internal.dead_letters WHERE layer = 'speed' AND reason <> ''",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    // Both layers refuse the same records for the same reasons as an independent check does.
    let mut disagreeing = Vec::new();
    for layer in ["speed", "sink"] {
        let stored: BTreeSet<(i32, i64, String)> = sqlx::query_as(
            "SELECT partition, \"offset\", reason_code FROM braid_internal.dead_letters WHERE layer = $1",
        )
        .bind(layer)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
        if stored != reasons {
            disagreeing.push(format!(
                "{layer}: {} dead letters, {} expected, {} differ",
                stored.len(),
                reasons.len(),
                stored.symmetric_difference(&reasons).count()
            ));
        }
    }
    // An Avro stream has messages that fail to decode in each way, and decoded records that
    // validation refuses.
    let uncovered: Vec<&str> = match wire {
        Wire::Json => Vec::new(),
        Wire::Avro => [
            "wrong_magic_byte",
            "undecodable",
            "unknown_schema_id",
            "unstorable_text",
            "string_too_long",
            "event_time_out_of_range",
        ]
        .into_iter()
        .filter(|code| !reasons.iter().any(|(_, _, reason)| reason == code))
        .collect(),
    };
    // The demo views over the records valid under the scenario's config (the demo oracle
    // refuses the rest of its own accord).
    let expected = oracle::demo_views(accepted.iter());
    let merged = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    let sketches =
        crate::compare::distinct_sketches_match(&mut pool.acquire().await.unwrap(), &accepted)
            .await;
    // Quantile sketches and samples (page_latency): counts exact, quantiles within the
    // accuracy of an exact sort, samples the K smallest position hashes.
    let latency =
        crate::latency::latency_sketches_match(&mut pool.acquire().await.unwrap(), &accepted).await;
    let exact = std::panic::catch_unwind(|| {
        crate::compare::assert_rows_equal(&expected, &merged, "after the faults")
    })
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "the merged answer differs".into())
    })
    .and(sketches)
    .and(latency)
    .and_then(|()| {
        if !disagreeing.is_empty() {
            Err(format!("dead letters differ: {}", disagreeing.join("; ")))
        } else if !uncovered.is_empty() {
            Err(format!("the stream has no refusal {uncovered:?}"))
        } else if letters as usize == refused {
            Ok(())
        } else {
            Err(format!(
                "{letters} dead letters for {refused} refused records"
            ))
        }
    });
    let outcome = Outcome {
        faults,
        records: messages.len(),
        lost,
        duplicated,
    };
    (outcome, exact)
}

/// The generated stream of a scenario: fractions of malformed and of hostile-but-valid records,
/// and how they are written.
#[derive(Clone, Copy)]
struct Stream<'a> {
    malformed: &'a str,
    hostile: &'a str,
    wire: Wire,
}

const NORMAL: Stream<'static> = Stream {
    malformed: "0.01",
    hostile: "0",
    wire: Wire::Json,
};

/// Starts `braid generate` for `pipeline`: `events` records of `stream` at `rate` per second
/// over 4 partitions (10 % late), seeded with `seed`.
fn start_generator(
    pipeline: &Pipeline,
    stream: Stream<'_>,
    seed: u64,
    events: u64,
    rate: u64,
) -> Running {
    pipeline
        .braid()
        .args([
            "generate",
            "--late-fraction",
            "0.1",
            "--malformed-fraction",
            stream.malformed,
            "--hostile-fraction",
            stream.hostile,
            "--seed",
            &seed.to_string(),
            "--partitions",
            "4",
        ])
        .args(["--count", &events.to_string(), "--rate", &rate.to_string()])
        .args(match stream.wire {
            Wire::Json => &[][..],
            // The writer schema registered under `<topic>-value`; what Avro cannot carry (the
            // malformed records) is sent as its JSON bytes.
            Wire::Avro => &["--format", "avro"][..],
        })
        .stdout(std::process::Stdio::null())
        .stderr(log_file(&format!("{}-generate", pipeline.topic)))
        .spawn()
        .map(Running)
        .unwrap()
}

/// Runs the pipeline on `events` generated records while `fault` is called every 1-3 s.
/// `throughout` names the standing fault of a scenario that injects none at moments.
async fn scenario(
    pool: &PgPool,
    name: &str,
    stream: Stream<'_>,
    throughout: &str,
    mut fault: impl FnMut(&Pipeline, &mut Processes, usize) -> String,
) {
    let events: u64 = if short() { 20_000 } else { 150_000 };
    let rate = if short() { 4_000 } else { 5_000 };
    let pipeline = match stream.wire {
        Wire::Json => Pipeline::new(&format!("chaos-{name}"), pool).await,
        Wire::Avro => {
            let env =
                crate::registry::registry_pipeline_env("avro", &crate::registry::registry_url());
            Pipeline::with_env(&format!("chaos-{name}"), pool, env).await
        }
    };
    pipeline.produce(1, 1, 4);
    let mut processes = Processes::start(&pipeline);
    wait_until("the API to be ready", Duration::from_secs(60), || {
        processes.api.assert_running("braid serve");
        let address = processes.address.clone();
        async move { ready(&address) }
    })
    .await;
    let mut producer = start_generator(&pipeline, stream, 7, events, rate);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut faults = Vec::new();
    let started = Instant::now();
    while producer.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the producer did not finish"
        );
        // A random moment for the next fault (a pause, not a synchronisation).
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..3_000))).await;
        if producer.0.try_wait().unwrap().is_some() {
            break;
        }
        faults.push(fault(&pipeline, &mut processes, faults.len()));
        processes.assert_running();
    }
    assert!(producer.wait_success(), "the producer failed");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for fault in faults.iter().filter(|f| !f.is_empty()) {
        *counts.entry(fault.clone()).or_default() += 1;
    }
    let summary = counts
        .iter()
        .map(|(f, n)| format!("{n}x {f}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (outcome, exact) = settle_and_check(
        pool,
        &pipeline,
        &mut processes,
        if summary.is_empty() {
            throughout.to_string()
        } else {
            summary
        },
        stream.wire,
        oracle::refusal,
    )
    .await;
    report(name, &outcome, exact);
}

#[sqlx::test(migrations = false)]
#[ignore = "kills processes at random; run by scripts/chaos"]
async fn chaos_sigkill_of_speed_sink_and_scheduler(pool: PgPool) {
    scenario(
        &pool,
        "sigkill",
        NORMAL,
        "none",
        |pipeline, processes, n| format!("SIGKILL {}", processes.kill_and_restart(pipeline, n)),
    )
    .await;
}

#[sqlx::test(migrations = false)]
#[ignore = "crashes PostgreSQL; run by scripts/chaos against its own services"]
async fn chaos_postgres_restart_under_load(pool: PgPool) {
    let mut crashes = 0;
    scenario(
        &pool,
        "postgres-restart",
        NORMAL,
        "none",
        |_, processes, _| {
            if crashes >= if short() { 1 } else { 3 } {
                return String::new();
            }
            crashes += 1;
            services("crash-postgres");
            let (status, body) = get(&processes.address, "/v1/views");
            assert_eq!(
                status, 503,
                "the API answers 503 while the database is down: {body}"
            );
            services("up");
            "PostgreSQL immediate shutdown + restart".into()
        },
    )
    .await;
}

#[sqlx::test(migrations = false)]
#[ignore = "kills the broker; run by scripts/chaos against its own services"]
async fn chaos_kafka_broker_restart_under_load(pool: PgPool) {
    let mut crashes = 0;
    scenario(&pool, "kafka-restart", NORMAL, "none", |_, _, _| {
        if crashes >= if short() { 1 } else { 3 } {
            return String::new();
        }
        crashes += 1;
        services("crash-kafka");
        services("up");
        "Kafka SIGKILL + restart".into()
    })
    .await;
}

#[sqlx::test(migrations = false)]
#[ignore = "long; run by scripts/chaos"]
async fn chaos_bad_input_storm(pool: PgPool) {
    scenario(
        &pool,
        "bad-input-storm",
        Stream {
            malformed: "0.5",
            hostile: "0",
            wire: Wire::Json,
        },
        "half the records malformed (every rejection kind)",
        |_, _, _| String::new(),
    )
    .await;
}

#[sqlx::test(migrations = false)]
#[ignore = "long; run by scripts/chaos"]
async fn chaos_batch_runs_and_compaction_racing_the_sink(pool: PgPool) {
    // The scheduler runs a batch every 3 s and a compaction every 5 s throughout.
    scenario(
        &pool,
        "batch-and-compaction-race",
        NORMAL,
        "batch every 3 s, compaction every 5 s",
        |_, _, _| String::new(),
    )
    .await;
}

#[sqlx::test(migrations = false)]
#[ignore = "kills processes at random; run by scripts/chaos"]
async fn chaos_hostile_input(pool: PgPool) {
    // Values a store would refuse (NUL, over-long group values, out-of-range times) and values
    // every store must take (i64 bounds whose sums overflow i64, control characters, quotes,
    // repeated keys, deep nesting), while the speed layer and the sink are SIGKILLed.
    scenario(
        &pool,
        "hostile-input",
        Stream {
            malformed: "0.2",
            hostile: "0.3",
            wire: Wire::Json,
        },
        "none",
        |pipeline, processes, n| {
            format!(
                "SIGKILL {} amid hostile input",
                processes.kill_and_restart(pipeline, n % 2)
            )
        },
    )
    .await;
}

/// Framed messages an Avro topic must refuse that `braid generate --format avro` never writes
/// (it sends what Avro cannot carry as JSON, refused as `wrong_magic_byte`), made from a record
/// it did write: cut short, with a byte left over, under a schema id the registry does not know,
/// with another magic byte, empty, and shorter than the frame.
struct UndecodableAvro {
    producer: BaseProducer,
    /// A framed record of the topic, read once it has one.
    record: Option<Vec<u8>>,
}

impl UndecodableAvro {
    fn new() -> Self {
        Self {
            producer: rdkafka::ClientConfig::new()
                .set("bootstrap.servers", kafka_brokers())
                .create()
                .unwrap(),
            record: None,
        }
    }

    /// Sends one of each to partition `round % 4` of `topic` and waits for their delivery.
    fn send(&mut self, topic: &str, round: usize) {
        let record = self.record.get_or_insert_with(|| {
            read_topic(topic)
                .into_iter()
                .map(|m| m.payload)
                .find(|payload| payload.len() > 8 && payload[0] == 0)
                .expect("the generator has written a framed Avro record")
        });
        let mut unknown_id = record.clone();
        unknown_id[1..5].copy_from_slice(&999_999u32.to_be_bytes());
        let payloads: [Vec<u8>; 6] = [
            record[..record.len() - 3].to_vec(),
            [&record[..], &[0]].concat(),
            unknown_id,
            [&[1], &record[1..]].concat(),
            Vec::new(),
            vec![0, 0, 0],
        ];
        for payload in &payloads {
            self.producer
                .send(
                    BaseRecord::to(topic)
                        .partition((round % 4) as i32)
                        .key("undecodable")
                        .payload(payload),
                )
                .unwrap();
        }
        self.producer.flush(Duration::from_secs(30)).unwrap();
    }
}

#[sqlx::test(migrations = false)]
#[ignore = "kills processes at random; run by scripts/chaos with its schema registry"]
async fn chaos_sigkill_of_speed_and_sink_on_an_avro_topic(pool: PgPool) {
    // The demo stream in Avro (Confluent's wire format, the writer schema registered by
    // `braid generate --format avro`), malformed records and hostile values among it, plus
    // messages that do not decode, while the speed layer and the sink are SIGKILLed; the oracle
    // decodes with apache-avro and the registry's schemas.
    let mut undecodable = UndecodableAvro::new();
    scenario(
        &pool,
        "avro-sigkill",
        Stream {
            malformed: "0.05",
            hostile: "0.1",
            wire: Wire::Avro,
        },
        "none",
        |pipeline, processes, n| {
            undecodable.send(&pipeline.topic, n);
            format!(
                "SIGKILL {} after undecodable Avro",
                processes.kill_and_restart(pipeline, n % 2)
            )
        },
    )
    .await;
}
