//! Progress of long operations: a redrawn line with a bar, records, rate and ETA on a
//! terminal; a log line every five seconds otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Reports `done` out of `total` records as an operation advances.
pub struct Progress {
    what: &'static str,
    total: u64,
    started: Instant,
    last_shown: Option<Instant>,
    terminal: bool,
}

impl Progress {
    /// Starts reporting an operation on `total` records.
    pub fn new(what: &'static str, total: u64) -> Self {
        Self {
            what,
            total,
            started: Instant::now(),
            last_shown: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, done: u64) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / seconds;
        let eta = if rate > 0.0 && done < self.total {
            format!("ETA {:.0} s", (self.total - done) as f64 / rate)
        } else {
            "ETA -".into()
        };
        format!("{done}/{} records, {rate:.0} records/s, {eta}", self.total)
    }

    /// Shows `done` (at most ten times a second on a terminal, every 5 s in logs).
    pub fn update(&mut self, done: u64) {
        let every = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last_shown.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_shown = Some(Instant::now());
        if self.terminal {
            let width = 30;
            let filled = (done.min(self.total) * width as u64)
                .checked_div(self.total)
                .map_or(width, |f| f as usize);
            eprint!(
                "\r{}: [{}{}] {}   ",
                self.what,
                "=".repeat(filled),
                " ".repeat(width - filled),
                self.line(done)
            );
            let _ = std::io::stderr().flush();
        } else {
            tracing::info!(operation = self.what, progress = %self.line(done), "progress");
        }
    }

    /// Ends the report.
    pub fn finish(&mut self, done: u64) {
        self.last_shown = None;
        self.update(done);
        if self.terminal {
            eprintln!();
        }
    }
}
