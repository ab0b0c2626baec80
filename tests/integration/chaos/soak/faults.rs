//! The faults, on a thread of their own: a plan of random moments drawn at the start (counts
//! that scale with the duration, so that an hour has at least 55 SIGKILLs of each Braid
//! component and 6 crashes of each service), executed in time order while the checkpoints run.
//! Process SIGKILLs go on during a checkpoint; a service crash waits until the checkpoint has
//! read what it needs (the `gate`), since the checks read PostgreSQL, Kafka and the lake.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;

use super::processes::{Kind, Processes};
use crate::support::{repo_root, run, stderr};

/// One fault of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of a Braid process (its successor started at once).
    Kill(Kind),
    /// SIGKILL of the scheduler while a batch run is running (waited for, up to 75 s).
    KillSchedulerInBatch,
    /// `pg_ctl stop -m immediate`, then start.
    CrashPostgres,
    /// SIGKILL of the broker, then start.
    CrashKafka,
    /// SIGKILL of the S3 server, then start.
    CrashS3,
    /// The topic grows from 4 to 6 partitions.
    GrowPartitions,
    /// The S3 server's filesystem is filled up ([`Fault::FreeS3Disk`] follows 30-60 s later).
    FillS3Disk,
    /// The filler is deleted.
    FreeS3Disk,
}

impl Fault {
    /// Whether the fault is a service's (run on the services' thread) rather than a process's.
    fn of_a_service(self) -> bool {
        !matches!(self, Fault::Kill(_) | Fault::KillSchedulerInBatch)
    }
}

/// A fault that happened.
#[derive(Debug, Clone)]
pub struct Injected {
    pub at: Duration,
    pub what: String,
    /// The components it may stall (a kill: its own; a service crash: all).
    pub kind: Fault,
}

/// What the fault threads share.
#[derive(Clone)]
pub struct Shared {
    pub processes: Arc<Mutex<Processes>>,
    /// Held by a checkpoint while it reads, and by a service crash while it lasts.
    pub gate: Arc<tokio::sync::Mutex<()>>,
    pub injected: Arc<Mutex<Vec<Injected>>>,
    pub stop: Arc<AtomicBool>,
}

/// The plan for `duration`: each fault at a random moment between 30 s in and 30 s before the
/// end.
pub fn plan(duration: Duration, seed: u64, disk: bool) -> Vec<(Duration, Fault)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let fraction = duration.as_secs_f64() / 3600.0;
    let kills = (55.0 * fraction).ceil() as usize;
    let crashes = ((6.0 * fraction).ceil() as usize).max(1);
    let mut faults = Vec::new();
    for kind in Kind::KILLED {
        let n = if kind == Kind::Scheduler {
            kills - kills / 3
        } else {
            kills
        };
        faults.extend(std::iter::repeat_n(Fault::Kill(kind), n));
    }
    faults.extend(std::iter::repeat_n(Fault::KillSchedulerInBatch, kills / 3));
    for fault in [Fault::CrashPostgres, Fault::CrashKafka, Fault::CrashS3] {
        faults.extend(std::iter::repeat_n(fault, crashes));
    }
    faults.shuffle(&mut rng);
    let (first, last) = (30.0, (duration.as_secs_f64() - 30.0).max(31.0));
    let mut planned: Vec<(Duration, Fault)> = faults
        .into_iter()
        .map(|f| (Duration::from_secs_f64(rng.random_range(first..last)), f))
        .collect();
    // Once each, in the middle third.
    let middle = duration.as_secs_f64() / 3.0..duration.as_secs_f64() * 2.0 / 3.0;
    planned.push((
        Duration::from_secs_f64(rng.random_range(middle.clone())),
        Fault::GrowPartitions,
    ));
    if disk {
        planned.push((
            Duration::from_secs_f64(rng.random_range(middle)),
            Fault::FillS3Disk,
        ));
    }
    planned.sort_by_key(|(at, _)| *at);
    planned
}

/// `scripts/services.sh ACTION` on the soak's own services (never given ones).
fn services(action: &str) -> Result<(), String> {
    let output = run(
        std::process::Command::new(repo_root().join("scripts/services.sh"))
            .arg(action)
            .env_remove("DATABASE_URL")
            .env_remove("KAFKA_BROKERS")
            .env_remove("BRAID_S3_ENDPOINT")
            .env_remove("BRAID_SCHEMA_REGISTRY_URL"),
    );
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("services.sh {action}: {}", stderr(&output)))
    }
}

/// Runs the plan until it is done or `stop` is set, on two threads (the processes' faults on
/// one, the services' on the other, so that a Kafka restart holds up no SIGKILL). Returns them.
pub fn start(
    shared: &Shared,
    planned: Vec<(Duration, Fault)>,
    started: Instant,
    database_url: &str,
    topic: &str,
    seed: u64,
) -> Vec<JoinHandle<Result<(), String>>> {
    let (services, processes): (Vec<_>, Vec<_>) =
        planned.into_iter().partition(|(_, f)| f.of_a_service());
    [(processes, seed), (services, seed + 1)]
        .into_iter()
        .map(|(planned, seed)| {
            let (shared, url, topic) =
                (shared.clone(), database_url.to_string(), topic.to_string());
            std::thread::spawn(move || {
                let result = run_plan(&shared, planned, started, &url, &topic, seed);
                // A disk left full by a stop is freed.
                if super::disk::path().is_some() {
                    super::disk::free()?;
                }
                result
            })
        })
        .collect()
}

fn run_plan(
    shared: &Shared,
    planned: Vec<(Duration, Fault)>,
    started: Instant,
    database_url: &str,
    topic: &str,
    seed: u64,
) -> Result<(), String> {
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pool = runtime.block_on(async {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy(database_url)
                .unwrap()
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // (moment, fault, its first planned moment), latest first.
        let mut queue: Vec<(Duration, Fault, Duration)> = planned
            .into_iter()
            .rev()
            .map(|(at, f)| (at, f, at))
            .collect();
        while let Some((at, fault, first)) = queue.pop() {
            // Wait for the fault's moment (a pause, not a synchronisation), reaping meanwhile.
            while started.elapsed() < at {
                if shared.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                shared.processes.lock().unwrap().reap();
                std::thread::sleep(
                    Duration::from_millis(200).min(at.saturating_sub(started.elapsed())),
                );
            }
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let at = started.elapsed();
            let what = match fault {
                Fault::Kill(kind) => {
                    let name = shared
                        .processes
                        .lock()
                        .unwrap()
                        .kill_and_restart(kind, rng.random_range(0..2));
                    format!("SIGKILL {name}")
                }
                Fault::KillSchedulerInBatch => {
                    // Waits (at most 75 s past its moment, other faults going on) for a batch
                    // run of the running scheduler, then a random moment inside it: its read,
                    // its aggregation or its publish.
                    let since = shared.processes.lock().unwrap().started_at(Kind::Scheduler);
                    let in_batch = runtime.block_on(batch_running(&pool, since));
                    if !in_batch && started.elapsed() < first + Duration::from_secs(75) {
                        let next = started.elapsed() + Duration::from_millis(500);
                        requeue(&mut queue, (next, fault, first));
                        continue;
                    }
                    if in_batch {
                        std::thread::sleep(Duration::from_millis(rng.random_range(0..2_000)));
                    }
                    let still = in_batch && runtime.block_on(batch_running(&pool, since));
                    shared
                        .processes
                        .lock()
                        .unwrap()
                        .kill_and_restart(Kind::Scheduler, 0);
                    if still {
                        "SIGKILL scheduler during a batch run".to_string()
                    } else {
                        "SIGKILL scheduler".to_string()
                    }
                }
                Fault::CrashPostgres
                | Fault::CrashKafka
                | Fault::CrashS3
                | Fault::FillS3Disk
                | Fault::FreeS3Disk => {
                    // Not while a checkpoint reads: try again a little later.
                    let Ok(_gate) = shared.gate.try_lock() else {
                        let next = started.elapsed() + Duration::from_secs(5);
                        requeue(&mut queue, (next, fault, first));
                        continue;
                    };
                    match fault {
                        Fault::CrashPostgres => {
                            services("crash-postgres")?;
                            services("up")?;
                            "PostgreSQL immediate shutdown + restart".to_string()
                        }
                        Fault::CrashKafka => {
                            services("crash-kafka")?;
                            services("up")?;
                            "Kafka SIGKILL + restart".to_string()
                        }
                        Fault::CrashS3 => {
                            services("crash-s3")?;
                            services("up")?;
                            "S3 server SIGKILL + restart".to_string()
                        }
                        Fault::FillS3Disk => {
                            let taken = super::disk::fill()?;
                            let held = Duration::from_secs(rng.random_range(30..60));
                            let free = started.elapsed() + held;
                            requeue(&mut queue, (free, Fault::FreeS3Disk, free));
                            format!(
                                "S3 disk filled ({} MiB) for {} s",
                                taken >> 20,
                                held.as_secs()
                            )
                        }
                        _ => {
                            super::disk::free()?;
                            "S3 disk freed".to_string()
                        }
                    }
                }
                Fault::GrowPartitions => {
                    runtime.block_on(crate::kafka_admin::grow_partitions(topic, 6));
                    "topic grown from 4 to 6 partitions".to_string()
                }
            };
            eprintln!("soak: {:>6.1} s  {what}", started.elapsed().as_secs_f64());
            shared.injected.lock().unwrap().push(Injected {
                at,
                what,
                kind: fault,
            });
        }
        Ok(())
    }
}

/// Puts a fault back into the queue (kept latest first) for a later moment.
fn requeue(queue: &mut Vec<(Duration, Fault, Duration)>, entry: (Duration, Fault, Duration)) {
    queue.push(entry);
    queue.sort_by_key(|(at, _, _)| std::cmp::Reverse(*at));
}

/// Whether a batch run started by the scheduler running `since` is running now (a killed
/// scheduler's run stays `running` in the history).
async fn batch_running(pool: &PgPool, since: chrono::DateTime<chrono::Utc>) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM braid_internal.job_runs WHERE job = 'batch' AND status = 'running' \
         AND started_at > $1)",
    )
    .bind(since)
    .fetch_one(pool)
    .await
    .unwrap_or(false)
}
