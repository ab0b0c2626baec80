//! The soak's report (Markdown, to `BRAID_SOAK_REPORT` and stderr): faults by kind, each
//! checkpoint, each process's memory over time, the longest stall of each component, and every
//! process that ended by itself.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::faults::{Fault, Injected};
use super::monitor::{COMPONENTS, Samples};
use super::processes::{Exit, Kind};

/// One checkpoint's outcome.
pub struct Checkpoint {
    pub name: String,
    pub at: Duration,
    pub took: Duration,
    pub records: usize,
    pub failures: Vec<String>,
}

/// Faults by kind: `12x SIGKILL speed, ...`.
pub fn fault_counts(injected: &[Injected]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for f in injected {
        let kind = match f.kind {
            // The two evaluators count as one component.
            Fault::Kill(Kind::Evaluator) => "SIGKILL evaluator".to_string(),
            _ => f.what.clone(),
        };
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

/// Per process, its peak resident MiB in each window of `window` seconds.
pub fn memory_table(samples: &Samples, window: u64) -> BTreeMap<&'static str, BTreeMap<u64, u64>> {
    let mut table: BTreeMap<&'static str, BTreeMap<u64, u64>> = BTreeMap::new();
    for &(at, name, kib) in &samples.memory {
        let cell = table
            .entry(name)
            .or_default()
            .entry(at / window)
            .or_default();
        *cell = (*cell).max(kib);
    }
    table
}

/// Peak resident KiB of each process in `[from, to)` seconds.
pub fn peak_between(samples: &Samples, from: u64, to: u64) -> BTreeMap<&'static str, u64> {
    let mut peaks = BTreeMap::new();
    for &(at, name, kib) in &samples.memory {
        if (from..to).contains(&at) {
            let peak: &mut u64 = peaks.entry(name).or_default();
            *peak = (*peak).max(kib);
        }
    }
    peaks
}

/// Whether a fault can stall `component`: its own SIGKILL, and every service fault.
fn stalls(fault: Fault, component: &str) -> bool {
    match fault {
        Fault::Kill(kind) => kind.name() == component,
        Fault::KillSchedulerInBatch => component == "scheduler",
        _ => true,
    }
}

/// Per component: the longest time from a fault that can stall it to its next progress, and
/// that fault.
pub fn longest_stalls(
    samples: &Samples,
    injected: &[Injected],
    end: Duration,
) -> BTreeMap<&'static str, (Duration, String)> {
    let mut longest = BTreeMap::new();
    for component in COMPONENTS {
        let progress = samples.progress.get(component).cloned().unwrap_or_default();
        let mut worst = (Duration::ZERO, "none".to_string());
        for fault in injected.iter().filter(|f| stalls(f.kind, component)) {
            let stall = match progress.iter().find(|&&p| p > fault.at) {
                Some(p) => *p - fault.at,
                None => end.saturating_sub(fault.at),
            };
            if stall > worst.0 {
                worst = (
                    stall,
                    format!("{} at {:.0} s", fault.what, fault.at.as_secs_f64()),
                );
            }
        }
        longest.insert(component, worst);
    }
    longest
}

/// Everything the report shows.
pub struct Report<'a> {
    pub title: String,
    pub injected: &'a [Injected],
    pub checkpoints: &'a [Checkpoint],
    pub samples: &'a Samples,
    pub exits: &'a [Exit],
    pub starts: Vec<(&'static str, usize)>,
    pub stalls: BTreeMap<&'static str, (Duration, String)>,
    pub memory_window: u64,
    pub memory_flat: BTreeMap<&'static str, (u64, u64)>,
    pub summary: Vec<(String, String)>,
}

impl Report<'_> {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n", self.title);
        out.push_str("| figure | value |\n|---|---|\n");
        for (k, v) in &self.summary {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        out.push_str("\n| fault | injected |\n|---|---|\n");
        for (kind, n) in fault_counts(self.injected) {
            let _ = writeln!(out, "| {kind} | {n} |");
        }
        out.push_str("\n| process | started (1 + restarts) |\n|---|---|\n");
        for (name, n) in &self.starts {
            let _ = writeln!(out, "| {name} | {n} |");
        }
        out.push_str("\n| checkpoint | at | took | records | result |\n|---|---|---|---|---|\n");
        for c in self.checkpoints {
            let result = if c.failures.is_empty() {
                "pass".to_string()
            } else {
                format!("FAIL: {}", c.failures.join("; ").replace('|', "\\|"))
            };
            let _ = writeln!(
                out,
                "| {} | {:.0} s | {:.0} s | {} | {result} |",
                c.name,
                c.at.as_secs_f64(),
                c.took.as_secs_f64(),
                c.records
            );
        }
        out.push_str(
            "\n| component | longest stall (fault to next progress) | after |\n|---|---|---|\n",
        );
        for (component, (stall, after)) in &self.stalls {
            let _ = writeln!(
                out,
                "| {component} | {:.1} s | {after} |",
                stall.as_secs_f64()
            );
        }
        let table = memory_table(self.samples, self.memory_window);
        let windows: Vec<u64> = table
            .values()
            .flat_map(|w| w.keys().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let _ = writeln!(
            out,
            "\nResident memory (VmRSS, peak MiB per {} s window, by window start):\n",
            self.memory_window
        );
        out.push_str("| process |");
        for w in &windows {
            let _ = write!(out, " {} s |", w * self.memory_window);
        }
        out.push_str(" reference → end | \n|---|");
        for _ in &windows {
            out.push_str("---|");
        }
        out.push_str("---|\n");
        for (name, cells) in &table {
            let _ = write!(out, "| {name} |");
            for w in &windows {
                match cells.get(w) {
                    Some(kib) => {
                        let _ = write!(out, " {} |", kib / 1024);
                    }
                    None => out.push_str(" |"),
                }
            }
            match self.memory_flat.get(name) {
                Some((reference, end)) => {
                    let _ = writeln!(
                        out,
                        " {} → {} MiB ({:+.0} %) |",
                        reference / 1024,
                        end / 1024,
                        (*end as f64 / (*reference).max(1) as f64 - 1.0) * 100.0
                    );
                }
                None => out.push_str(" |\n"),
            }
        }
        if self.exits.is_empty() {
            out.push_str("\nNo process ended by itself.\n");
        } else {
            out.push_str("\nProcesses that ended by themselves (restarted by the harness):\n\n");
            for e in self.exits {
                let _ = writeln!(
                    out,
                    "- {:.0} s: {} ({}), log {}",
                    e.at.as_secs_f64(),
                    e.name,
                    e.status,
                    e.log
                );
            }
        }
        out
    }
}
