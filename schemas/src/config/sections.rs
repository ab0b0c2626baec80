//! The configuration sections, as written in `braid.toml`. Every struct refuses unknown keys.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::secrets::{RedactedOptions, redact_url};
use crate::duration::{Hours, Millis, Seconds};

use crate::alert::AlertRuleConfig;
use crate::dimension::DimensionConfig;
use crate::event_schema::FieldDef;
use crate::view::ViewConfig;

/// The whole file, before cross-checks. See [`crate::config::BraidConfig`] for the validated form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where records come from.
    pub kafka: KafkaConfig,
    /// Where the master dataset (Delta table) lives.
    pub lake: LakeConfig,
    /// The PostgreSQL database holding metadata, speed and batch rows, and serving views.
    pub postgres: PostgresConfig,
    /// Speed-layer tuning.
    pub speed: SpeedConfig,
    /// Delta sink tuning.
    pub sink: SinkConfig,
    /// Scheduled jobs.
    pub jobs: JobsConfig,
    /// Which engine computes batch runs.
    pub batch: BatchConfig,
    /// The REST API.
    pub serving: ServingConfig,
    /// The event schema.
    pub schema: SchemaConfig,
    /// Where an Avro topic's writer schemas are fetched.
    pub schema_registry: SchemaRegistryConfig,
    /// The views, declared once for both layers.
    #[serde(default)]
    pub views: Vec<ViewConfig>,
    /// How alerts are evaluated and delivered.
    pub alerting: AlertingConfig,
    /// Alert rules over the merged views.
    #[serde(default)]
    pub alerts: Vec<AlertRuleConfig>,
    /// Dimensions: attributes of key fields, joined to views when they are read.
    #[serde(default)]
    pub dimensions: Vec<DimensionConfig>,
}

/// `[alerting]`: the evaluator and its receivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Every rule is evaluated at least this often, so that `for` and `keep_firing_for` elapse
    /// without traffic.
    pub evaluation_interval_ms: Millis,
    /// A rule whose view a speed flush or a batch publish touched is evaluated again at most
    /// this often (the flushes in between are folded into one evaluation).
    pub min_interval_ms: Millis,
    /// The most instances one evaluation considers per rule (keys past it are left out, with
    /// a warning).
    pub max_instances: u32,
    /// Resolved and inactive instances, and transitions whose deliveries are all done (none
    /// pending, none the last of an instance still stored), are deleted by the `prune` job once
    /// older than this many hours.
    pub retention_hours: Hours,
    /// The first retry of a failed delivery waits this long; each further retry doubles it.
    pub retry_initial_ms: Millis,
    /// The longest wait between two attempts of one delivery.
    pub retry_max_ms: Millis,
    /// A webhook request that takes longer fails (and is retried).
    pub webhook_timeout_ms: Millis,
    /// Webhooks by name, referred to as `webhook:<name>` in a rule's `notify`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookConfig>,
}

/// `[kafka]`: the source topic and consumer groups.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated, e.g. `127.0.0.1:19092`.
    pub brokers: String,
    /// The source topic.
    pub topic: String,
    /// Consumer group of the speed layer.
    pub speed_group: String,
    /// Consumer group of the Delta sink. Must differ from `speed_group`.
    pub sink_group: String,
    /// Extra librdkafka properties passed through unchanged, e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `[lake]`: the Delta table.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// A local path (relative paths are taken from the working directory) or `s3://bucket/prefix`.
    pub uri: String,
    /// Object-store options (e.g. `AWS_ENDPOINT_URL`, `AWS_REGION`), passed to deltalake.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
}

/// `[postgres]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:port/database`.
    pub url: String,
    /// Connection-pool size per process.
    pub max_connections: u32,
}

/// `[speed]`: micro-batch flushing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedConfig {
    /// Flush the in-memory aggregates at least this often, in milliseconds.
    pub flush_interval_ms: Millis,
    /// Once the speed layer has read everything Kafka holds, flush as soon as this many
    /// milliseconds (and four times the last flush's duration) have passed since the last
    /// flush, rather than at `flush_interval_ms`: at
    /// live rates answers are fresher, and under load or while catching up (Kafka always has
    /// more) the flushes stay large. 0 turns this off; above `flush_interval_ms` it acts as that.
    pub flush_min_interval_ms: Millis,
    /// Flush early once this many records are buffered.
    pub flush_max_records: u64,
    /// The speed layer's dead letters keep at most this many bytes of the raw message (and its
    /// full length); the sink's own is `sink.dead_letter_max_payload_bytes`.
    pub dead_letter_max_payload_bytes: usize,
    /// Dead letters older than this many hours are deleted by the `prune` job, except the
    /// speed layer's `refused_by_database` ones, which the batch layer reads to leave the same
    /// records out.
    pub dead_letter_retention_hours: Hours,
}

/// Parquet compression of the Delta files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (smaller files).
    Zstd,
    /// snappy (faster).
    Snappy,
}

/// `[sink]`: Delta file flushing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Commit at least this often, in milliseconds.
    pub flush_interval_ms: Millis,
    /// Commit early once this many bytes of input are buffered.
    pub flush_max_bytes: u64,
    /// The sink's dead letters keep at most this many bytes of the raw message (and its full
    /// length); the speed layer's own is `speed.dead_letter_max_payload_bytes`.
    pub dead_letter_max_payload_bytes: usize,
    /// Parquet compression.
    pub compression: Compression,
}

/// One scheduled job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSchedule {
    /// A cron expression with six fields, seconds first, e.g. `0 */15 * * * *`.
    pub schedule: String,
    /// Whether the scheduler runs it.
    pub enabled: bool,
}

/// The vacuum job: a schedule and a retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VacuumSchedule {
    /// A cron expression with six fields, seconds first.
    pub schedule: String,
    /// Whether the scheduler runs it.
    pub enabled: bool,
    /// Files unreferenced for longer than this many hours are deleted.
    pub retention_hours: Hours,
}

/// The batch job: a schedule and how long a run waits for the sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchJobConfig {
    /// A cron expression with six fields, seconds first.
    pub schedule: String,
    /// Whether the scheduler runs it.
    pub enabled: bool,
    /// Seconds a run waits for the Delta sink to reach its cut before it fails (and is retried).
    pub wait_timeout_s: Seconds,
}

/// `[batch]`: which engine computes batch runs. Only the computation moves between engines:
/// the cut, the wait for the sink, the pinned version, the run records and the atomic publish
/// are Braid's whichever computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// `polars` (in the Braid process, the default) or `spark` (a Spark job, see `[batch.spark]`).
    pub engine: BatchEngine,
    /// How Spark jobs are started, for `engine = "spark"`.
    pub spark: SparkConfig,
    /// With `engine = "polars"`, the most records a view is computed from at once. A run that
    /// reads more computes each view in time slices of whole buckets holding about this many
    /// records (a bucket holding more is a slice of its own), each copied into PostgreSQL
    /// before the next is read, so the batch's memory follows the slice, not the history.
    /// Smaller slices hold less and cost one more scan per view and slice (of the slice's row
    /// groups, found by their statistics). Spark jobs do not use it.
    pub slice_records: u64,
}

/// The engine of batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchEngine {
    /// Polars, in the Braid process: one machine, no cluster to run.
    Polars,
    /// Apache Spark, started with spark-submit: history larger than one machine.
    Spark,
}

/// `[batch.spark]`: how a batch run starts its Spark job.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkConfig {
    /// The spark-submit program: a path, or a name looked up on PATH.
    pub submit: String,
    /// The master URL: `local[*]`, `spark://host:7077`, `yarn`, `k8s://https://host:443`.
    pub master: String,
    /// Maven coordinates Spark resolves at start (`--packages`): delta-spark, and hadoop-aws for
    /// a lake on S3. They must match the Spark version that `submit` runs.
    pub packages: Vec<String>,
    /// Spark properties (`spark.driver.memory`, `spark.executor.instances`, ...). They reach
    /// spark-submit in a properties file readable only by Braid's user, never on its command
    /// line; the values of keys that look secret (key, secret, password, token) are redacted in
    /// logs.
    #[serde(default)]
    pub conf: BTreeMap<String, String>,
    /// Seconds a job may run before Braid kills it; the run then fails and is retried.
    pub timeout_s: Seconds,
    /// Where jobs write their rows before Braid loads them (a folder or `s3://…` that both the
    /// Spark cluster and Braid reach). Empty: `_braid_staging` inside `lake.uri`.
    #[serde(default)]
    pub staging_uri: String,
}

impl std::fmt::Debug for SparkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparkConfig")
            .field("submit", &self.submit)
            .field("master", &self.master)
            .field("packages", &self.packages)
            .field("conf", &RedactedOptions(&self.conf))
            .field("timeout_s", &self.timeout_s)
            .field("staging_uri", &self.staging_uri)
            .finish()
    }
}

/// `[jobs]`: the scheduler's jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Attempts per job run before it is recorded as failed for good.
    pub retry_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubled for each further one.
    pub retry_backoff_ms: Millis,
    /// Batch recompute of every view.
    pub batch: BatchJobConfig,
    /// Delta compaction (optimize small files).
    pub compact: JobSchedule,
    /// Delta vacuum.
    pub vacuum: VacuumSchedule,
    /// Deletion of old alert history and dead letters (`alerting.retention_hours`,
    /// `speed.dead_letter_retention_hours`), in bounded chunks.
    pub prune: JobSchedule,
}

/// `[serving]`: the REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    /// Listen address, `host:port`.
    pub listen: String,
    /// The largest `limit` a query may ask for.
    pub max_limit: u32,
    /// The widest time range a query may ask for, in days.
    pub max_range_days: u32,
    /// The read-only login role for BI tools, created by `braid migrate` when the environment
    /// variable BRAID_BI_PASSWORD holds its password. It can read the `serving` schema only.
    /// Braid refuses to take over a role of this name that it did not create.
    pub bi_role: String,
    /// The BI role's statement timeout, in milliseconds: a runaway dashboard query is cancelled.
    pub bi_statement_timeout_ms: Millis,
    /// The BI role's idle-in-transaction timeout, in milliseconds: a BI session left idle in an
    /// open transaction is ended, so it cannot hold locks on the serving views for ever.
    pub bi_idle_in_transaction_timeout_ms: Millis,
    /// How many sessions the BI role may open at once.
    pub bi_connection_limit: u32,
    /// How long the API may answer a repeated query from memory, in milliseconds (0: never).
    /// A cached answer is dropped as soon as its view changes (the speed layer's flush and
    /// the batch publish notify), so this bounds only changes that do not notify (a replay of
    /// the speed layer, a recovery); answers that join dimensions are never cached.
    pub answer_cache_ms: Millis,
    /// The most answers kept in memory; when full, the cache is emptied.
    pub answer_cache_entries: usize,
}

/// `[schema]`: the event schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    /// How messages are encoded: `json` (a JSON object each, the default), `avro` or `protobuf`
    /// (Confluent's wire format: a magic byte 0, the writer schema's id in `[schema_registry]`,
    /// the datum; for Protobuf, its message indexes first).
    #[serde(default)]
    pub format: SchemaFormat,
    /// The name of the event-time field (a required timestamp field).
    #[serde(default)]
    pub event_time: Option<String>,
    /// Messages larger than this are dead-lettered as `too_large`.
    pub max_record_bytes: usize,
    /// String values longer than this many bytes are dead-lettered as `string_too_long`. It
    /// applies to every string field, since any string field can become a view's group key,
    /// and every view's group key must fit in a PostgreSQL index entry (checked at start).
    pub max_group_value_bytes: usize,
    /// Event times before this RFC 3339 instant are dead-lettered.
    pub event_time_min: String,
    /// Event times at or after this RFC 3339 instant are dead-lettered.
    pub event_time_max: String,
    /// The declared fields, in order: `[[schema.fields]]` with name, type, required.
    #[serde(default)]
    pub fields: Vec<FieldDef>,
}

/// `[schema_registry]`: a registry with Confluent's REST API (Confluent Schema Registry, or
/// Apicurio Registry under `/apis/ccompat/v7`), from which the layers fetch the writer schema
/// a message names, once per id. Needed when `schema.format` is not `json`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// The API's base URL, e.g. `http://127.0.0.1:18081/apis/ccompat/v7` ("" when unused).
    pub url: String,
    /// A user name for basic authentication ("" for none).
    pub username: String,
    /// The environment variable holding the basic-authentication password.
    pub password_env: String,
    /// A file holding the basic-authentication password (instead of `password_env`), e.g. a
    /// mounted secret; read at start, a final newline dropped.
    pub password_file: String,
    /// The environment variable holding a bearer token (instead of basic authentication).
    pub token_env: String,
    /// A file holding a bearer token (instead of `token_env`); read at start.
    pub token_file: String,
    /// A PEM file of CA certificates to trust for an `https` URL, beside the system's.
    pub ca_file: String,
    /// A PEM file with a client certificate (and its chain) for a registry that asks for one
    /// (mutual TLS); with `key_file`.
    pub cert_file: String,
    /// The PEM file of `cert_file`'s private key.
    pub key_file: String,
    /// How long one request may take.
    pub timeout_ms: Millis,
    /// The longest wait between retries of a fetch while the registry is down (the first is
    /// 200 ms, doubled each time). A record is never refused because the registry is down.
    pub retry_max_ms: Millis,
}

impl fmt::Debug for SchemaRegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistryConfig")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("ca_file", &self.ca_file)
            .field("timeout_ms", &self.timeout_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .finish()
    }
}

/// `schema.format`: how messages are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaFormat {
    /// A JSON object per message.
    #[default]
    Json,
    /// Avro in Confluent's wire format, the writer schemas from the schema registry.
    Avro,
    /// Protobuf in Confluent's wire format, the writer schemas (`.proto` text) from the schema
    /// registry.
    Protobuf,
}

// Printed with secrets hidden: configs reach logs and error messages.

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("speed_group", &self.speed_group)
            .field("sink_group", &self.sink_group)
            .field("options", &RedactedOptions(&self.options))
            .finish()
    }
}

impl fmt::Debug for LakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeConfig")
            .field("uri", &self.uri)
            .field("storage_options", &RedactedOptions(&self.storage_options))
            .finish()
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// `[alerting.webhooks.<name>]`: an HTTP endpoint that receives transitions as JSON POSTs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The environment variable holding a bearer token for the `Authorization` header.
    /// The token itself never goes in the file.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("token_env", &self.token_env)
            .finish()
    }
}
