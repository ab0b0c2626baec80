//! Every Braid process of the soak, each restartable by the harness: the speed layer, the sink,
//! the scheduler, two alert evaluators (one leads, one stands by), the dimension follower and
//! `braid serve`, plus the demo generator that feeds them. A process that ends without being
//! killed is restarted too, and recorded: the report lists every such exit.

use std::time::{Duration, Instant};

use crate::support::{Pipeline, Running, log_file};

/// The soak's schedules: a batch run every minute, a compaction every 20 s, a vacuum every two
/// minutes (with the least retention Braid takes, an hour: it removes nothing this young, but
/// it runs and pins the versions batch runs read).
pub const SCHEDULE: [(&str, &str); 3] = [
    ("BRAID__JOBS__BATCH__SCHEDULE", "0 * * * * *"),
    ("BRAID__JOBS__COMPACT__SCHEDULE", "*/20 * * * * *"),
    ("BRAID__JOBS__VACUUM__SCHEDULE", "30 */2 * * * *"),
];

/// The webhook receiver's bearer token, in the evaluators' environment.
pub const WEBHOOK_TOKEN: &str = "soak-webhook-token";

/// Whether the speed layer and the sink are static group members (Kafka's
/// `group.instance.id` in `kafka.options`, which Braid does not set by default):
/// `BRAID_SOAK_STATIC=1`. By default they are dynamic members, as Braid runs them, and
/// rebalance on every restart. (Static members miss partitions added while they run:
/// docs/reliability.md.)
pub fn static_members() -> bool {
    std::env::var("BRAID_SOAK_STATIC").is_ok_and(|v| v == "1")
}

/// What a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Speed,
    Sink,
    Scheduler,
    Evaluator,
    Follower,
    Serve,
    Generator,
}

impl Kind {
    /// The Braid components the faults kill.
    pub const KILLED: [Kind; 6] = [
        Kind::Speed,
        Kind::Sink,
        Kind::Scheduler,
        Kind::Evaluator,
        Kind::Follower,
        Kind::Serve,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Speed => "speed",
            Kind::Sink => "sink",
            Kind::Scheduler => "scheduler",
            Kind::Evaluator => "evaluator",
            Kind::Follower => "follower",
            Kind::Serve => "serve",
            Kind::Generator => "generator",
        }
    }
}

/// One running process and how to start its successor.
struct Slot {
    kind: Kind,
    /// `evaluator-a`, `speed`, ...: the name in the report and in log file names.
    name: &'static str,
    running: Running,
    starts: usize,
    started_at: Instant,
}

/// A process that ended without being killed.
#[derive(Debug, Clone)]
pub struct Exit {
    pub at: Duration,
    pub name: &'static str,
    pub status: String,
    pub log: String,
}

pub struct Processes {
    pipeline: Pipeline,
    /// Where `braid serve` listens (every successor on the same address).
    pub address: String,
    /// The demo generator's rate, events/s.
    rate: u32,
    slots: Vec<Slot>,
    started: Instant,
    /// Processes that ended by themselves, in order.
    pub exits: Vec<Exit>,
}

impl Processes {
    /// Starts every process of `pipeline`, `braid serve` on `address`.
    pub fn start(pipeline: &Pipeline, address: &str, rate: u32, started: Instant) -> Self {
        let mut processes = Self {
            pipeline: pipeline.clone(),
            address: address.to_string(),
            rate,
            slots: Vec::new(),
            started,
            exits: Vec::new(),
        };
        for (kind, name) in [
            (Kind::Speed, "speed"),
            (Kind::Sink, "sink"),
            (Kind::Scheduler, "scheduler"),
            (Kind::Evaluator, "evaluator-a"),
            (Kind::Evaluator, "evaluator-b"),
            (Kind::Follower, "follower"),
            (Kind::Serve, "serve"),
            (Kind::Generator, "generator"),
        ] {
            let running = processes.spawn(kind, name, 0);
            processes.slots.push(Slot {
                kind,
                name,
                running,
                starts: 1,
                started_at: Instant::now(),
            });
        }
        processes
    }

    fn spawn(&self, kind: Kind, name: &str, start: usize) -> Running {
        let p = &self.pipeline;
        let log = format!("{name}-{start}");
        match kind {
            Kind::Speed | Kind::Sink if !static_members() => {
                let command = if kind == Kind::Speed { "speed" } else { "sink" };
                Running(
                    p.braid()
                        .arg(command)
                        .env("BRAID__KAFKA__OPTIONS__SESSION.TIMEOUT.MS", "6000")
                        .stdout(std::process::Stdio::null())
                        .stderr(log_file(&format!("{}-{command}-{log}", p.topic)))
                        .spawn()
                        .expect("braid starts"),
                )
            }
            Kind::Speed => p.start_speed(&log, "speed"),
            Kind::Sink => p.start_sink(&log, "sink"),
            Kind::Scheduler => p.start_scheduler(&log, &SCHEDULE),
            Kind::Follower => crate::dimensions::start_follower(p, &log),
            Kind::Serve => crate::serving::start_serve(
                p,
                &self.address,
                &log,
                &[("BRAID__SERVING__MAX_LIMIT", "500000")],
            ),
            Kind::Evaluator => Running(
                p.braid()
                    .args(["alerts", "run"])
                    .env("SOAK_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
                    .stdout(std::process::Stdio::null())
                    .stderr(log_file(&format!("{}-alerts-{log}", p.topic)))
                    .spawn()
                    .expect("braid alerts run starts"),
            ),
            // Wall-clock event times (no seed), so that alert windows ending now see them;
            // 10 % late (up to 30 min back), 2 % malformed, 5 % hostile but valid.
            Kind::Generator => Running(
                p.braid()
                    .args([
                        "generate",
                        "--late-fraction",
                        "0.1",
                        "--malformed-fraction",
                        "0.02",
                        "--hostile-fraction",
                        "0.05",
                        "--partitions",
                        "4",
                        "--rate",
                        &self.rate.to_string(),
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(log_file(&format!("{}-generate-{log}", p.topic)))
                    .spawn()
                    .expect("braid generate starts"),
            ),
        }
    }

    fn restart(&mut self, index: usize) {
        let (kind, name, starts) = {
            let slot = &self.slots[index];
            (slot.kind, slot.name, slot.starts)
        };
        let running = self.spawn(kind, name, starts);
        let slot = &mut self.slots[index];
        slot.running = running;
        slot.starts += 1;
        slot.started_at = Instant::now();
    }

    /// SIGKILLs one process of `kind` (`choice` picks among several) and starts its successor;
    /// says which.
    pub fn kill_and_restart(&mut self, kind: Kind, choice: usize) -> &'static str {
        let indices: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].kind == kind)
            .collect();
        let index = indices[choice % indices.len()];
        self.reap_one(index);
        self.slots[index].running.kill();
        self.restart(index);
        self.slots[index].name
    }

    /// Restarts every process that ended by itself, recording why it ended.
    pub fn reap(&mut self) {
        for index in 0..self.slots.len() {
            self.reap_one(index);
        }
    }

    fn reap_one(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Ok(Some(status)) = slot.running.0.try_wait() else {
            return;
        };
        let log = format!(
            "{}/braid-test-logs/{}-*-{}-{}.log",
            std::env::temp_dir().display(),
            self.pipeline.topic,
            slot.name,
            slot.starts - 1
        );
        eprintln!(
            "soak: {} ended by itself ({status}) after {:.1} s; see {log}",
            slot.name,
            slot.started_at.elapsed().as_secs_f64()
        );
        self.exits.push(Exit {
            at: self.started.elapsed(),
            name: slot.name,
            status: status.to_string(),
            log,
        });
        self.restart(index);
    }

    /// (name, pid) of every running process.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.slots
            .iter()
            .map(|s| (s.name, s.running.0.id()))
            .collect()
    }

    /// Kills one process for good (the generator at the end, the scheduler before the last
    /// batch run).
    pub fn stop(&mut self, kind: Kind) {
        self.reap();
        let mut kept = Vec::new();
        for mut slot in std::mem::take(&mut self.slots) {
            if slot.kind == kind {
                slot.running.kill();
            } else {
                kept.push(slot);
            }
        }
        self.slots = kept;
    }

    /// When the (first) process of `kind` started, by the wall clock.
    pub fn started_at(&self, kind: Kind) -> chrono::DateTime<chrono::Utc> {
        let elapsed = self
            .slots
            .iter()
            .find(|s| s.kind == kind)
            .map_or(Duration::ZERO, |s| s.started_at.elapsed());
        chrono::Utc::now() - chrono::Duration::from_std(elapsed).unwrap()
    }

    /// SIGKILLs every process (the end, or a failing soak).
    pub fn kill_all(&mut self) {
        for slot in &mut self.slots {
            slot.running.kill();
        }
        self.slots.clear();
    }

    /// How many times each process was started.
    pub fn starts(&self) -> Vec<(&'static str, usize)> {
        self.slots.iter().map(|s| (s.name, s.starts)).collect()
    }
}

/// Kills every process and stops the soak's threads when dropped, so that a soak that fails
/// (a panic unwinds past it while the fault and monitor threads still hold the processes)
/// leaves nothing running.
pub struct Teardown {
    pub processes: std::sync::Arc<std::sync::Mutex<Processes>>,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut processes = match self.processes.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        processes.kill_all();
    }
}
