//! Once a second: each process's resident size (VmRSS of /proc/PID/status) and each
//! component's progress (the speed layer's stored positions, the Delta log's version, the
//! scheduler's job starts, the evaluators' evaluations, the follower's positions, a 200 from
//! `braid serve`'s /readyz). The report takes memory over time and, per component, the longest
//! time from a fault to its next progress.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::processes::Processes;

/// Components whose progress is watched.
pub const COMPONENTS: [&str; 6] = [
    "speed",
    "sink",
    "scheduler",
    "evaluator",
    "follower",
    "serve",
];

#[derive(Default)]
pub struct Samples {
    /// (seconds since the start, process name, resident KiB).
    pub memory: Vec<(u64, &'static str, u64)>,
    /// Component → the moments (since the start) it was seen to progress.
    pub progress: BTreeMap<&'static str, Vec<Duration>>,
}

/// VmRSS of a process in KiB.
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The Delta log's folder on the S3 server's disk, when the soak's services serve it.
pub fn delta_log_dir(prefix: &str) -> Option<PathBuf> {
    let state = std::env::var_os("BRAID_STATE_DIR")?;
    let bucket = std::env::var("BRAID_S3_BUCKET").ok()?;
    Some(
        PathBuf::from(state)
            .join("s3/data")
            .join(bucket)
            .join(prefix)
            .join("_delta_log"),
    )
}

async fn counters(pool: &PgPool, topic: &str) -> Option<[i64; 4]> {
    let row: (Option<i64>, Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT sum(next_offset)::bigint FROM braid_internal.speed_positions WHERE topic = $1), \
                (SELECT max(id) FROM braid_internal.job_runs), \
                (SELECT sum(evaluations)::bigint FROM braid_internal.alert_evaluations), \
                (SELECT sum(next_offset)::bigint FROM braid_internal.dimension_positions)",
    )
    .bind(topic)
    .fetch_one(pool)
    .await
    .ok()?;
    Some([
        row.0.unwrap_or(0),
        row.1.unwrap_or(0),
        row.2.unwrap_or(0),
        row.3.unwrap_or(0),
    ])
}

/// Samples until `stop`, on a thread with a runtime and connections of its own (the test's
/// runtime has one thread, which the checks keep busy for seconds). Returns the thread.
pub fn start(
    database_url: String,
    topic: String,
    processes: Arc<Mutex<Processes>>,
    samples: Arc<Mutex<Samples>>,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(sample(
            database_url,
            topic,
            processes,
            samples,
            started,
            stop,
        ));
    })
}

async fn sample(
    database_url: String,
    topic: String,
    processes: Arc<Mutex<Processes>>,
    samples: Arc<Mutex<Samples>>,
    started: Instant,
    stop: Arc<AtomicBool>,
) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&database_url)
        .unwrap();
    {
        let log = delta_log_dir(&topic);
        let address = processes.lock().unwrap().address.clone();
        let mut last: [i64; 4] = [0; 4];
        let mut version: i64 = -1;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let at = started.elapsed();
            let pids = processes.lock().unwrap().pids();
            let mut progressed: Vec<&'static str> = Vec::new();
            if let Some(now) = counters(&pool, &topic).await {
                for (i, name) in ["speed", "scheduler", "evaluator", "follower"]
                    .into_iter()
                    .enumerate()
                {
                    if now[i] > last[i] {
                        progressed.push(name);
                    }
                }
                last = now;
            }
            if let Some(log) = &log {
                let before = version;
                while log.join(format!("{:020}.json", version + 1)).exists() {
                    version += 1;
                }
                if version > before {
                    progressed.push("sink");
                }
            }
            let ready = {
                let address = address.clone();
                tokio::task::spawn_blocking(move || {
                    crate::http::try_get(&address, "/readyz", Duration::from_secs(2))
                        .is_ok_and(|(status, _)| status == 200)
                })
                .await
                .unwrap_or(false)
            };
            if ready {
                progressed.push("serve");
            }
            let mut samples = samples.lock().unwrap();
            for (name, pid) in pids {
                if let Some(kib) = resident_kib(pid) {
                    samples.memory.push((at.as_secs(), name, kib));
                }
            }
            for name in progressed {
                samples.progress.entry(name).or_default().push(at);
            }
        }
    }
}
