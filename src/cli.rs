//! The command line. Every flag can also be given as an environment variable (shown in --help).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

/// Braid: exact real-time and batch views over a Kafka stream.
///
/// Records arrive on a Kafka topic. The speed layer keeps real-time view aggregates in
/// PostgreSQL; the sink lands every valid record in a Delta Lake table; batch jobs recompute
/// the views from the lake; the API and SQL views serve the exact merge of both.
///
/// Configuration is layered: embedded defaults, then the config file, then BRAID__SECTION__KEY
/// environment variables (e.g. BRAID__SPEED__FLUSH_INTERVAL_MS=250), then the flags below.
#[derive(Debug, Parser)]
#[command(
    name = "braid",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The config file. When not given, ./braid.toml is used.
    #[arg(long, short, global = true, env = "BRAID_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Kafka bootstrap servers; overrides kafka.brokers.
    #[arg(
        long,
        global = true,
        env = "KAFKA_BROKERS",
        value_name = "HOST:PORT[,...]"
    )]
    pub brokers: Option<String>,

    /// PostgreSQL URL; overrides postgres.url.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Log format. The level is set with RUST_LOG (default: info).
    #[arg(long, global = true, env = "BRAID_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Braid's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process: migrations, then every component that exists, until Ctrl-C.
    Up(UpArgs),
    /// Speed layer: consume Kafka and keep exact real-time aggregates in PostgreSQL.
    ///
    /// Validates every message, aggregates a micro-batch per view, group key and bucket, and
    /// commits it together with the partitions' next offsets in one PostgreSQL transaction
    /// (every speed.flush_interval_ms or speed.flush_max_records). Refused records go to the
    /// dead-letter table with their reason. Run several processes to split the partitions.
    Speed(SpeedArgs),
    /// Delta sink: land every valid record in the Delta Lake table, exactly once.
    ///
    /// Consumes kafka.topic in its own group (kafka.sink_group), validates with the same code
    /// as the speed layer, and appends valid records with their lineage (_topic, _partition,
    /// _offset, _ingested_at) to the table at lake.uri, partitioned by event_date. Each commit
    /// records the next offset of every partition it covers in the Delta log; on start the sink
    /// resumes from there. Refused records go to the dead-letter table (layer 'sink').
    Sink(SinkArgs),
    /// Batch layer: recompute views from the Delta table and publish them atomically.
    Batch(BatchArgs),
    /// Scheduler: run batch recomputes, compaction and vacuum on their cron schedules; list and trigger jobs.
    ///
    /// `braid jobs` runs the scheduler: the jobs in [jobs] fire on their cron expressions (six
    /// fields, seconds first). Only one scheduler acts at a time (a PostgreSQL advisory lock);
    /// others wait as standby and take over within a second when it dies. Every run is
    /// recorded; failures are retried with backoff and never publish partial results.
    Jobs(JobsArgs),
    /// Serving: the REST API over the exact merge of batch and speed rows.
    ///
    /// GET /v1/views lists the views and their state; GET /v1/views/{view} answers merged rows
    /// (from, to, granularity, group_by, filter.<field>, order, limit); /rolling and /top answer
    /// windows ending now; /healthz, /readyz, /metrics and /openapi.json describe the server.
    /// Every answer carries its provenance: the active batch run, its covered epoch, and the
    /// speed layer's positions and freshness, all read in one snapshot with the rows.
    ///
    /// Admin endpoints (POST /v1/admin/jobs/{job}, GET /v1/jobs) need
    /// `Authorization: Bearer <token>` where the token is the environment variable
    /// BRAID_ADMIN_TOKEN; without it they are off.
    Serve(ServeArgs),
    /// Alerts: evaluate the [[alerts]] rules on the exact merged views; list, history, test.
    ///
    /// `braid alerts run` is the evaluator (also part of `braid up`). A rule watches one metric
    /// of one view over a rolling window ending now, one instance per value of its group_by
    /// fields, through the states inactive -> pending -> firing -> resolved (`for` and
    /// `keep_firing_for` as in Prometheus). It evaluates after every speed flush or batch publish
    /// that touched the view and every alerting.evaluation_interval_ms. State and every
    /// transition (value, threshold, window, and the batch run and speed positions the merge
    /// read) are kept in PostgreSQL; transitions go to the rule's receivers (webhook:<name>,
    /// kafka:<topic>) at least once, retried with backoff. Only one evaluator acts at a time (a
    /// PostgreSQL advisory lock); others wait as standby and take over within a second.
    Alerts(AlertsArgs),
    /// Dimensions: attributes of key fields (campaign per ad), for views to group and filter by.
    ///
    /// A [[dimensions]] entry names a key field of the event schema, its attributes and a
    /// source. Views grouped by the key answer by attribute too (group_by=campaign_id,
    /// filter.region=eu in the API; attribute columns in serving.<view>), joined when read:
    /// both layers keep raw keys, so the merge stays exact, and a change of the dimension applies
    /// to all history at once. A key missing from the dimension rolls up under null.
    /// `load NAME` replaces a CSV- or Parquet-sourced table; `follow` keeps Kafka-sourced ones
    /// current (braid up runs it too); a PostgreSQL table the user owns is read in place.
    Dimensions(DimensionsArgs),
    /// Replay history: rebuild the speed rows from Kafka after fixing a speed-layer bug.
    ///
    /// Kafka can replay only what it still retains; the Delta table holds everything, so
    /// history beyond Kafka's retention is recomputed by batch runs (and, when the speed layer
    /// itself fell behind retention, by `braid recover --from-lake`).
    Replay(ReplayArgs),
    /// Recover a speed layer whose stored positions Kafka no longer holds, from the lake.
    ///
    /// Takes a cut at the Delta sink's positions and moves the speed layer's positions there,
    /// in one transaction. The next batch run covers the gap from the lake, and the merged
    /// answer is exact again.
    Recover(RecoverArgs),
    /// Produce a realistic demo clickstream to Kafka, or print it as JSON lines.
    Generate(GenerateArgs),
    /// Apply database migrations and create the per-view tables.
    Migrate,
    /// Manage the local PostgreSQL and Kafka that Braid runs for development and tests.
    Services(ServicesArgs),
}

/// Options of `braid speed`.
#[derive(Debug, Args)]
pub struct SpeedArgs {
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464.
    #[arg(long, env = "BRAID_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `braid replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// What to replay.
    #[command(subcommand)]
    pub command: ReplayCommand,
}

/// `braid replay` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Rebuild the speed rows from Kafka, starting at the last cut.
    ///
    /// In one transaction that holds the epoch (so no flush interleaves): deletes the speed
    /// rows written after the last cut and moves the stored positions back to it. Running
    /// speed processes are fenced on their next flush and re-read from there. Records below
    /// the cut belong to the batch layer, so an earlier start is refused. Then waits, with
    /// progress, until the speed layer has read again up to where it was.
    Speed {
        /// The cut to start from; only the last cut is accepted (default: the last cut).
        #[arg(long, env = "BRAID_REPLAY_FROM_CUT", value_name = "EPOCH")]
        from_cut: Option<i64>,
        /// Return at once instead of waiting for the speed layer to catch up.
        #[arg(long, env = "BRAID_REPLAY_NO_WAIT")]
        no_wait: bool,
        /// Give up waiting after this many seconds (the replay itself stays done).
        #[arg(
            long,
            env = "BRAID_REPLAY_WAIT_TIMEOUT",
            default_value_t = 3600,
            value_name = "SECONDS"
        )]
        wait_timeout: u64,
    },
    /// Compute a view from the Delta table as it was at a version or a time (time travel).
    ///
    /// Reads every record of that table version (the lake keeps everything Kafka no longer
    /// does), computes the view with the batch layer's code and writes a Parquet or CSV file,
    /// sorted by group and bucket. Live views and batch runs are untouched.
    #[command(disable_version_flag = true)]
    AsOf {
        /// The Delta table version to read.
        #[arg(
            long,
            env = "BRAID_AS_OF_VERSION",
            required_unless_present = "timestamp",
            conflicts_with = "timestamp"
        )]
        version: Option<i64>,
        /// Read the latest version committed at or before this instant (RFC 3339).
        #[arg(long, env = "BRAID_AS_OF_TIMESTAMP", value_name = "RFC3339")]
        timestamp: Option<String>,
        /// The view to compute.
        #[arg(long, env = "BRAID_AS_OF_VIEW")]
        view: String,
        /// The output file: FILE.parquet or FILE.csv.
        #[arg(long, env = "BRAID_AS_OF_OUT", value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Republish records from the Delta table into a Kafka topic, for downstream systems.
    ///
    /// Selects the records with from ≤ event time < to in the table's latest version and sends
    /// them in (partition, offset) order with their original key and a JSON payload re-encoded
    /// from the stored fields. Headers mark them: braid-replayed, braid-replay-id, braid-source
    /// (partition:offset) and braid-source-topic. Resumable: run the same command again after an
    /// interruption and the records the target topic already holds for this replay id are
    /// skipped, so each selected record is published once.
    Publish {
        /// Start of the event-time range (RFC 3339, inclusive).
        #[arg(long, env = "BRAID_PUBLISH_FROM", value_name = "RFC3339")]
        from: String,
        /// End of the event-time range (RFC 3339, exclusive).
        #[arg(long, env = "BRAID_PUBLISH_TO", value_name = "RFC3339")]
        to: String,
        /// The topic to publish to (created with the source's partition count if missing).
        #[arg(long, env = "BRAID_PUBLISH_TOPIC")]
        topic: String,
        /// Records per second at most (default: as fast as the broker takes them).
        #[arg(long, env = "BRAID_PUBLISH_RATE", value_name = "RECORDS_PER_SECOND")]
        rate: Option<u32>,
        /// The replay's identity for resuming (default: source topic, from and to).
        #[arg(long, env = "BRAID_PUBLISH_ID")]
        id: Option<String>,
    },
}

/// Options of `braid recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Recover from the Delta table (the only source there is today).
    #[arg(long, required = true)]
    pub from_lake: bool,
    /// Recover even though no partition is behind Kafka's retention (the speed layer then skips
    /// records it could still read, until the next batch run covers them).
    #[arg(long)]
    pub force: bool,
}

/// Options of `braid serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on this address; overrides serving.listen.
    #[arg(long, env = "BRAID_SERVING_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Options of `braid sink`.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9465.
    #[arg(long, env = "BRAID_SINK_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `braid batch`.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BatchCommand,
}

/// `braid batch` subcommands.
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Recompute views from the whole Delta table and publish them atomically.
    ///
    /// Takes a cut of the speed layer (its stored positions become the boundary and the epoch
    /// moves on), waits until the Delta sink has committed up to the cut, pins that Delta
    /// version, computes every view over exactly the records below the cut (with Polars in this
    /// process, or with a Spark job when batch.engine = "spark": see [batch.spark]), loads the
    /// rows under a new run id and, in one transaction, makes them active and deletes the speed
    /// rows they cover. Only one batch run acts at a time; a second exits with code 3.
    Run {
        /// Recompute only this view.
        #[arg(long, env = "BRAID_BATCH_VIEW")]
        view: Option<String>,
        /// Seconds to wait for the Delta sink to reach the cut (default: jobs.batch.wait_timeout_s).
        #[arg(long, env = "BRAID_BATCH_WAIT_TIMEOUT")]
        wait_timeout: Option<u64>,
    },
}

/// `braid jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// What to do; without one, run the scheduler.
    #[command(subcommand)]
    pub command: Option<JobsCommand>,
}

/// `braid jobs` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Show the history of job runs, newest first.
    List {
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Run one job now (batch, compact or vacuum) and record it.
    Run {
        /// The job: batch, compact or vacuum.
        name: String,
    },
}

/// `braid alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AlertsCommand,
}

/// `braid alerts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Run the evaluator (leader or standby) and its notification workers until Ctrl-C.
    Run {
        /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9466.
        #[arg(long, env = "BRAID_ALERTS_METRICS_LISTEN", value_name = "HOST:PORT")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Show every rule's instances and their states.
    List {
        /// Only this rule.
        #[arg(long, env = "BRAID_ALERTS_RULE")]
        rule: Option<String>,
    },
    /// Show transitions, newest first, with value, window, provenance and deliveries.
    History {
        /// Only this rule.
        #[arg(long, env = "BRAID_ALERTS_RULE")]
        rule: Option<String>,
        /// How many transitions to show.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Evaluate RULE now and print each instance's value and the state it would enter. Writes
    /// nothing and notifies no one.
    Test {
        /// The rule's name, as in [[alerts]].
        rule: String,
    },
}

/// `braid dimensions`.
#[derive(Debug, Args)]
pub struct DimensionsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DimensionsCommand,
}

/// `braid dimensions` subcommands.
#[derive(Debug, Subcommand)]
pub enum DimensionsCommand {
    /// Replace the rows of dimension NAME with its file (source.csv or source.file), in one
    /// transaction. A row that does not fit refuses the whole load, naming row and column.
    Load {
        /// The dimension's name, as in [[dimensions]].
        name: String,
    },
    /// Follow every dimension whose source is a kafka_topic until Ctrl-C: each message (a JSON
    /// object of the key and attributes; no payload deletes the key) is applied with its
    /// position in one transaction; a malformed one is dead-lettered (layer 'dimension').
    Follow,
    /// Show each dimension, its source and how many rows its table holds.
    List,
}

/// A generated workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Page views, clicks and purchases (braid.toml).
    Clickstream,
    /// The Yahoo Streaming Benchmark's ad events (examples/ysb.toml).
    Ysb,
    /// The YSB campaign dimension: one message per ad (ad_id, campaign_id), keyed by ad_id, for
    /// the compacted topic examples/ysb.toml follows (give --count 1000 for every ad once).
    YsbCampaigns,
}

/// How `braid generate` encodes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateFormat {
    /// A JSON object per message.
    Json,
    /// Avro in Confluent's wire format, the writer schema registered in the schema registry.
    Avro,
    /// Protobuf in Confluent's wire format, the writer schema (`.proto` text) registered in the
    /// schema registry.
    Protobuf,
}

/// Options of `braid up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Also produce a demo clickstream at this many events per second.
    #[arg(long, env = "BRAID_UP_GENERATE", value_name = "EVENTS_PER_SECOND")]
    pub generate: Option<u32>,

    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, env = "BRAID_UP_DURATION", value_name = "SECONDS")]
    pub duration: Option<u64>,
}

/// Options of `braid generate`.
#[derive(Debug, Args, Clone)]
pub struct GenerateArgs {
    /// Events per second; 0 means as fast as possible.
    #[arg(long, env = "BRAID_GENERATE_RATE", default_value_t = 1000)]
    pub rate: u32,

    /// Stop after this many events (default: run until Ctrl-C).
    #[arg(long, env = "BRAID_GENERATE_COUNT")]
    pub count: Option<u64>,

    /// Make the stream reproducible: the same seed gives the same records, byte for byte. A
    /// seeded stream also takes its event times from a logical clock that starts at --start
    /// (default 2026-01-01T00:00:00Z) and advances by 1/rate per event.
    #[arg(long, env = "BRAID_GENERATE_SEED")]
    pub seed: Option<u64>,

    /// Event time of the first event (RFC 3339). Without --seed, event times follow the wall clock.
    #[arg(long, env = "BRAID_GENERATE_START", value_name = "RFC3339")]
    pub start: Option<String>,

    /// Fraction of events whose event time lies 1 s to 30 min in the past.
    #[arg(long, env = "BRAID_GENERATE_LATE_FRACTION", default_value_t = 0.02)]
    pub late_fraction: f64,

    /// Fraction of records that are malformed (bad JSON, wrong types, missing fields, ...).
    #[arg(
        long,
        env = "BRAID_GENERATE_MALFORMED_FRACTION",
        default_value_t = 0.01
    )]
    pub malformed_fraction: f64,

    /// Fraction of valid records with hostile values that every store must still take: i64
    /// prices and durations at the type's bounds (their sums overflow i64), control characters,
    /// quotes and long strings in group-by fields, epoch-millisecond times, repeated keys and
    /// deeply nested unknown fields.
    #[arg(long, env = "BRAID_GENERATE_HOSTILE_FRACTION", default_value_t = 0.0)]
    pub hostile_fraction: f64,

    /// Write JSON lines to standard output instead of producing to Kafka.
    #[arg(long)]
    pub stdout: bool,

    /// Produce to this topic instead of kafka.topic.
    #[arg(long, env = "BRAID_GENERATE_TOPIC")]
    pub topic: Option<String>,

    /// Partitions of the topic if it has to be created.
    #[arg(long, env = "BRAID_GENERATE_PARTITIONS", default_value_t = 4)]
    pub partitions: i32,

    /// What to generate: the demo clickstream (for braid.toml), or the Yahoo Streaming
    /// Benchmark's ad events (for examples/ysb.toml; no late or malformed records).
    #[arg(long, env = "BRAID_GENERATE_WORKLOAD", value_enum, default_value_t = Workload::Clickstream)]
    pub workload: Workload,

    /// How to encode the events: `json`, `avro` or `protobuf` (Confluent's wire format; the
    /// writer schema, derived from [schema], is registered under `<topic>-value` in
    /// [schema_registry] first). Default: the config's schema.format when producing to Kafka;
    /// --stdout always writes JSON lines.
    #[arg(long, env = "BRAID_GENERATE_FORMAT", value_enum)]
    pub format: Option<GenerateFormat>,

    /// Event time between consecutive events of a logical clock (seeded or --start), in
    /// microseconds. Default: 1 s / --rate, or 1 ms with --rate 0. E.g. 60000 spreads 1.44M
    /// events over 24 hours of event time, however fast they are produced.
    #[arg(long, env = "BRAID_GENERATE_EVENT_INTERVAL_US", value_name = "MICROS",
          value_parser = clap::value_parser!(i64).range(1..))]
    pub event_interval_us: Option<i64>,
}

/// Options of `braid services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// What to do.
    #[arg(value_enum)]
    pub action: ServicesAction,
}

/// `braid services` actions (they run scripts/services.sh).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ServicesAction {
    /// Install what is missing, start PostgreSQL and Kafka, wait until they answer.
    Up,
    /// Stop both; their state is kept.
    Down,
    /// Say what runs where.
    Status,
    /// Print the environment to use: eval "$(braid services env)".
    Env,
    /// Stop both and delete their state.
    Reset,
}

impl ServicesAction {
    /// The script's argument.
    pub fn as_str(self) -> &'static str {
        match self {
            ServicesAction::Up => "up",
            ServicesAction::Down => "down",
            ServicesAction::Status => "status",
            ServicesAction::Env => "env",
            ServicesAction::Reset => "reset",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_help() {
        for sub in Cli::command().get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
        }
    }
}
