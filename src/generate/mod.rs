//! `braid generate`: the demo clickstream, to Kafka or to standard output.

pub mod ads;
pub mod avro;
pub mod clickstream;
pub mod encode;
#[cfg(test)]
mod format_check;
mod produce;
pub mod protobuf;
pub mod sampler;

use std::io::Write;

use anyhow::Context;
use chrono::DateTime;

pub use clickstream::{Clickstream, ClickstreamOptions, GeneratedMessage};
pub use produce::{ProduceSummary, produce};

use crate::cli::GenerateArgs;

/// The first event time of a seeded stream when --start is not given.
pub const SEEDED_START: &str = "2026-01-01T00:00:00Z";

/// Where event times come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClock {
    /// Event i happens at start + i / rate: reproducible.
    Logical {
        /// The first event time, microseconds since the epoch.
        start_micros: i64,
        /// Microseconds between events.
        step_micros: i64,
    },
    /// Events happen now.
    Wall,
}

impl EventClock {
    /// The clock for these options: logical when seeded, when a start is given or when writing
    /// to standard output; the wall clock otherwise.
    pub fn for_args(args: &GenerateArgs) -> anyhow::Result<Self> {
        let start = match (&args.start, args.seed) {
            (Some(text), _) => Some(text.as_str()),
            (None, Some(_)) => Some(SEEDED_START),
            (None, None) if args.stdout => None,
            (None, None) => return Ok(EventClock::Wall),
        };
        let start_micros = match start {
            Some(text) => DateTime::parse_from_rfc3339(text)
                .with_context(|| format!("--start: `{text}` is not an RFC 3339 instant"))?
                .timestamp_micros(),
            None => chrono::Utc::now().timestamp_micros(),
        };
        let step_micros = match (args.event_interval_us, args.rate) {
            (Some(step), _) => step,
            (None, 0) => 1_000,
            (None, rate) => (1_000_000 / i64::from(rate)).max(1),
        };
        Ok(EventClock::Logical {
            start_micros,
            step_micros,
        })
    }

    /// The event time of message number `sequence`.
    pub fn at(self, sequence: u64) -> i64 {
        match self {
            EventClock::Logical {
                start_micros,
                step_micros,
            } => start_micros + sequence as i64 * step_micros,
            EventClock::Wall => chrono::Utc::now().timestamp_micros(),
        }
    }
}

/// Checks the options that do not depend on clap's parsing.
pub fn check_args(args: &GenerateArgs) -> anyhow::Result<()> {
    for (name, value) in [
        ("--late-fraction", args.late_fraction),
        ("--malformed-fraction", args.malformed_fraction),
        ("--hostile-fraction", args.hostile_fraction),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&value),
            "{name} must be between 0 and 1, got {value}"
        );
    }
    anyhow::ensure!(
        args.partitions >= 1,
        "--partitions must be at least 1, got {}",
        args.partitions
    );
    Ok(())
}

/// A generated stream: the demo clickstream or the YSB ad events.
pub enum Stream {
    /// `--workload clickstream`.
    Clickstream(Clickstream),
    /// `--workload ysb`.
    Ads(ads::AdStream),
    /// `--workload ysb-campaigns`.
    Campaigns(ads::CampaignStream),
}

impl Stream {
    /// The next message at `now_micros`.
    pub fn next_message(&mut self, now_micros: i64) -> GeneratedMessage {
        match self {
            Stream::Clickstream(s) => s.next_message(now_micros),
            Stream::Ads(s) => s.next_message(now_micros),
            Stream::Campaigns(s) => s.next_message(),
        }
    }
}

/// The stream these options describe.
pub fn stream(args: &GenerateArgs) -> Stream {
    let seed = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    match args.workload {
        crate::cli::Workload::Clickstream => {
            Stream::Clickstream(Clickstream::new(ClickstreamOptions {
                seed,
                late_fraction: args.late_fraction,
                malformed_fraction: args.malformed_fraction,
                hostile_fraction: args.hostile_fraction,
            }))
        }
        crate::cli::Workload::Ysb => Stream::Ads(ads::AdStream::new(seed)),
        crate::cli::Workload::YsbCampaigns => Stream::Campaigns(ads::CampaignStream::default()),
    }
}

/// Writes the stream as JSON lines (the raw payloads, one per line). Stops quietly when the
/// reader goes away.
pub fn write_lines(args: &GenerateArgs, out: impl Write) -> anyhow::Result<u64> {
    check_args(args)?;
    let clock = EventClock::for_args(args)?;
    let mut stream = stream(args);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut written = 0;
    while args.count.is_none_or(|count| written < count) {
        let message = stream.next_message(clock.at(written));
        let result = out
            .write_all(&message.payload)
            .and_then(|()| out.write_all(b"\n"));
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(written),
            other => other.context("writing to standard output")?,
        }
        written += 1;
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(written),
        other => other
            .map(|()| written)
            .context("writing to standard output"),
    }
}
