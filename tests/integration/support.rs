//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root: the checkout `cargo test` runs in. Read at run time, because a build
/// cache shared between checkouts (CI reuses one) can hold a test binary compiled in another.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// A `braid` command run from the repository root (so ./braid.toml is the demo config).
pub fn braid() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_braid"));
    command.current_dir(repo_root());
    command
}

/// Runs a command and returns its output, with stderr shown on failure by the caller.
pub fn run(command: &mut Command) -> Output {
    command.output().expect("the braid binary runs")
}

/// The brokers of the real Kafka. Tests fail (not skip) without them.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: start the services with scripts/services.sh up and eval its env",
    )
}

/// A topic name no other test (or earlier run) uses.
pub fn unique_topic(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test.{test}.{}.{nanos}", std::process::id())
}

/// Text of a process's stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The URL of the fresh database `sqlx::test` made for a test.
pub async fn url_of(pool: &sqlx::PgPool) -> String {
    let (database,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base =
        std::env::var("DATABASE_URL").expect("DATABASE_URL is not set: run scripts/services.sh up");
    let (server, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL ends with /database");
    format!("{server}/{database}")
}

/// How many records the speed layer has stored positions past, over all partitions.
pub async fn stored_total(pool: &sqlx::PgPool, topic: &str) -> i64 {
    schemas::pg::load_positions(pool, topic)
        .await
        .unwrap()
        .values()
        .sum()
}

/// Polls `condition` until it holds or `timeout` passes; panics with `what` on timeout.
pub async fn wait_until<F, Fut>(what: &str, timeout: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Where a test's Delta table lives: a folder in the temp dir, or a prefix in the bucket of
/// the S3-compatible server that scripts/services.sh starts.
#[derive(Debug, Clone)]
pub enum TestLake {
    /// A local folder.
    Local(PathBuf),
    /// `s3://bucket/prefix` on the local S3 server.
    S3(S3Lake),
}

/// A table on the local S3-compatible server, and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Lake {
    /// `s3://bucket/prefix`.
    pub uri: String,
    /// The server's URL.
    pub endpoint: String,
    /// Its access key id (given to processes as `AWS_ACCESS_KEY_ID`, as the AWS SDK reads it).
    pub access_key_id: String,
    /// Its secret key.
    pub secret_access_key: String,
}

impl S3Lake {
    /// A fresh prefix named `name` in the bucket of scripts/services.sh. Tests fail (not skip)
    /// without the server.
    pub fn new(name: &str) -> Self {
        let var = |key: &str| {
            std::env::var(key).unwrap_or_else(|_| {
                panic!("{key} is not set: start the services with scripts/services.sh up and eval its env")
            })
        };
        Self {
            uri: format!("s3://{}/{name}", var("BRAID_S3_BUCKET")),
            endpoint: var("BRAID_S3_ENDPOINT"),
            access_key_id: var("BRAID_S3_ACCESS_KEY_ID"),
            secret_access_key: var("BRAID_S3_SECRET_ACCESS_KEY"),
        }
    }

    /// The `[lake.storage_options]` of such a table. Credentials are not among them: processes
    /// read them from the environment.
    pub fn config_options(&self) -> std::collections::HashMap<String, String> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl TestLake {
    /// The table's URI, as `lake.uri` takes it.
    pub fn uri(&self) -> String {
        match self {
            TestLake::Local(path) => path.to_string_lossy().into_owned(),
            TestLake::S3(s3) => s3.uri.clone(),
        }
    }

    /// The storage options for an in-process reader (credentials included).
    pub fn storage_options(&self) -> std::collections::HashMap<String, String> {
        match self {
            TestLake::Local(_) => Default::default(),
            TestLake::S3(s3) => {
                let mut options = s3.config_options();
                options.insert("AWS_ACCESS_KEY_ID".into(), s3.access_key_id.clone());
                options.insert("AWS_SECRET_ACCESS_KEY".into(), s3.secret_access_key.clone());
                options
            }
        }
    }

    /// Sets what a `braid` process needs to reach the table.
    pub fn configure(&self, command: &mut Command) {
        command.env("BRAID__LAKE__URI", self.uri());
        if let TestLake::S3(s3) = self {
            for (key, value) in s3.config_options() {
                command.env(format!("BRAID__LAKE__STORAGE_OPTIONS__{key}"), value);
            }
            command
                .env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
                .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key);
        }
    }

    /// What the independent reader (tests/interop/read_delta.py, Python deltalake) sees: the
    /// version, schema and rows, as JSON.
    pub fn read_with_python(&self) -> serde_json::Value {
        self.read_with("read_delta.py")
    }

    /// The (partition, offset) of every row as DuckDB's `delta_scan` sees them
    /// (tests/interop/read_delta_duckdb.py), sorted, duplicates kept.
    pub fn positions_read_by_duckdb(&self) -> Vec<(i64, i64)> {
        let read = self.read_with("read_delta_duckdb.py");
        read["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_i64().unwrap(), p[1].as_i64().unwrap()))
            .collect()
    }

    fn read_with(&self, script: &str) -> serde_json::Value {
        let python = std::env::var("BRAID_PYTHON").unwrap_or_else(|_| "python3".into());
        let options = serde_json::to_string(&self.storage_options()).unwrap();
        let output = Command::new(&python)
            .arg(repo_root().join("tests/interop").join(script))
            .arg(self.uri())
            .env("BRAID_STORAGE_OPTIONS", options)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "the independent reader {script} failed (BRAID_PYTHON={python}; scripts/test.sh installs it): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The handle of the table, with `schema` and `topic`, as the layers build it.
    pub fn handle(&self, schema: &schemas::EventSchema, topic: &str) -> batch_layer::lake::Lake {
        batch_layer::lake::Lake::new(batch_layer::lake::LakeSettings {
            uri: self.uri(),
            storage_options: self.storage_options(),
            schema: schema.clone(),
            topic: topic.to_string(),
        })
    }

    /// The table opened at its latest version (`None` if it cannot be opened yet). Opening
    /// reads no records, so no topic is needed.
    pub async fn open(&self, schema: &schemas::EventSchema) -> Option<deltalake::DeltaTable> {
        self.handle(schema, "").open().await.ok()
    }
}

/// One pipeline under test: its own topic, consumer groups, database and Delta table.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The topic.
    pub topic: String,
    /// The database URL.
    pub database_url: String,
    /// The Delta table.
    pub lake: TestLake,
    /// A config file other than braid.toml, for every command of the pipeline.
    pub config: Option<PathBuf>,
    /// More environment for every command of the pipeline (e.g. `BRAID__BATCH__ENGINE`).
    pub env: Vec<(String, String)>,
}

impl Pipeline {
    /// A pipeline for `test` on the database of `pool`, migrated, with its table in a local
    /// folder.
    pub async fn new(test: &str, pool: &sqlx::PgPool) -> Self {
        let topic = unique_topic(test);
        let lake = TestLake::Local(std::env::temp_dir().join("braid-test-lakes").join(&topic));
        Self::with_lake(topic, lake, pool).await
    }

    /// A pipeline for `test` like [`Pipeline::new`], with more environment for every command
    /// (set before `braid migrate`, which records the validation rules it implies).
    pub async fn with_env(test: &str, pool: &sqlx::PgPool, env: Vec<(String, String)>) -> Self {
        let topic = unique_topic(test);
        let lake = TestLake::Local(std::env::temp_dir().join("braid-test-lakes").join(&topic));
        Self::with_lake_and_env(topic, lake, pool, env).await
    }

    /// A pipeline for `test` whose table is on the local S3-compatible server, reached through
    /// `endpoint` (a proxy to it), with more environment for every command.
    pub async fn on_s3_through(
        test: &str,
        pool: &sqlx::PgPool,
        endpoint: &str,
        env: Vec<(String, String)>,
    ) -> Self {
        let topic = unique_topic(test);
        let mut s3 = S3Lake::new(&topic);
        s3.endpoint = endpoint.to_string();
        Self::with_lake_and_env(topic, TestLake::S3(s3), pool, env).await
    }

    /// A pipeline for `test` whose table is on the local S3-compatible server.
    pub async fn on_s3(test: &str, pool: &sqlx::PgPool) -> Self {
        let topic = unique_topic(test);
        let lake = TestLake::S3(S3Lake::new(&topic));
        Self::with_lake(topic, lake, pool).await
    }

    async fn with_lake(topic: String, lake: TestLake, pool: &sqlx::PgPool) -> Self {
        Self::with_lake_and_env(topic, lake, pool, Vec::new()).await
    }

    async fn with_lake_and_env(
        topic: String,
        lake: TestLake,
        pool: &sqlx::PgPool,
        env: Vec<(String, String)>,
    ) -> Self {
        let pipeline = Self {
            topic,
            database_url: url_of(pool).await,
            lake,
            config: None,
            env,
        };
        let migrated = run(pipeline.braid().arg("migrate"));
        assert!(
            migrated.status.success(),
            "braid migrate: {}",
            stderr(&migrated)
        );
        pipeline
    }

    /// A `braid` command wired to this pipeline.
    pub fn braid(&self) -> Command {
        let mut command = braid();
        command
            .env("BRAID__KAFKA__TOPIC", &self.topic)
            .env("BRAID__KAFKA__SPEED_GROUP", format!("{}.speed", self.topic))
            .env("BRAID__KAFKA__SINK_GROUP", format!("{}.sink", self.topic))
            .env("BRAID__SPEED__FLUSH_INTERVAL_MS", "100")
            .env("BRAID__SINK__FLUSH_INTERVAL_MS", "300")
            .env("DATABASE_URL", &self.database_url)
            .env("KAFKA_BROKERS", kafka_brokers());
        self.lake.configure(&mut command);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(config) = &self.config {
            command.env("BRAID_CONFIG", config);
        }
        command
    }

    /// Produces `count` seeded demo events (some late, some malformed) and waits for delivery.
    pub fn produce(&self, count: u64, seed: u64, partitions: i32) {
        let output = run(self
            .braid()
            .args([
                "generate",
                "--rate",
                "0",
                "--late-fraction",
                "0.1",
                "--malformed-fraction",
                "0.03",
            ])
            .args([
                "--count".to_string(),
                count.to_string(),
                "--seed".to_string(),
                seed.to_string(),
                "--partitions".to_string(),
                partitions.to_string(),
            ]));
        assert!(
            output.status.success(),
            "generate failed: {}",
            stderr(&output)
        );
    }

    /// Starts a generator in the background at `rate` events/s.
    pub fn produce_in_background(
        &self,
        count: u64,
        seed: u64,
        rate: u32,
        partitions: i32,
    ) -> Running {
        self.braid()
            .args([
                "generate",
                "--late-fraction",
                "0.1",
                "--malformed-fraction",
                "0.03",
            ])
            .args([
                "--count",
                &count.to_string(),
                "--seed",
                &seed.to_string(),
                "--rate",
                &rate.to_string(),
                "--partitions",
                &partitions.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(Running)
            .expect("braid generate starts")
    }

    /// Starts `braid speed` for this pipeline, logging to a file in the temp dir. Processes
    /// started with the same `member` are one static group member (Kafka's group.instance.id):
    /// a restarted one takes its predecessor's partitions at once, without a rebalance.
    pub fn start_speed(&self, name: &str, member: &str) -> Running {
        self.start("speed", name, member)
    }

    /// Starts `braid sink` for this pipeline; `member` as for [`Self::start_speed`].
    pub fn start_sink(&self, name: &str, member: &str) -> Running {
        self.start("sink", name, member)
    }

    /// Starts `braid jobs` (the scheduler) with extra environment, e.g. schedules.
    pub fn start_scheduler(&self, name: &str, env: &[(&str, &str)]) -> Running {
        let log = log_file(&format!("{}-jobs-{name}", self.topic));
        let mut command = self.braid();
        command
            .arg("jobs")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        Running(command.spawn().expect("braid jobs starts"))
    }

    fn start(&self, command: &str, name: &str, member: &str) -> Running {
        let log = log_file(&format!("{}-{command}-{name}", self.topic));
        self.braid()
            .arg(command)
            .env("BRAID__KAFKA__OPTIONS__GROUP.INSTANCE.ID", member)
            .env("BRAID__KAFKA__OPTIONS__SESSION.TIMEOUT.MS", "6000")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map(Running)
            .unwrap_or_else(|e| panic!("braid {command} does not start: {e}"))
    }
}

/// A child process that is killed (SIGKILL) when dropped, so a failing test leaves nothing
/// running against its database.
#[derive(Debug)]
pub struct Running(pub std::process::Child);

impl Running {
    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Panics if the process has ended (so a wait on its progress fails fast, with why).
    pub fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.0.try_wait().unwrap() {
            panic!(
                "{what} exited early ({status}); see its log under {}",
                std::env::temp_dir().join("braid-test-logs").display()
            );
        }
    }

    /// Waits for the process to end and says whether it succeeded.
    pub fn wait_success(&mut self) -> bool {
        self.0.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A log file for a child process, kept for post-mortems.
pub fn log_file(name: &str) -> std::fs::File {
    let dir = std::env::temp_dir().join("braid-test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::File::create(dir.join(format!("{name}.log"))).unwrap()
}

/// Reads every committed message of `topic` from the beginning up to the current high
/// watermarks, as both layers read it (`read_committed`: aborted records and transaction markers
/// are skipped). A partition is done at its end-of-partition event or once a message reaches its
/// high watermark, never by counting offsets, which markers occupy too.
pub fn read_topic(topic: &str) -> Vec<crate::oracle::RawMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("{topic}.oracle"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let ends = high_watermarks(topic);
    let mut assignment = TopicPartitionList::new();
    let mut reading = std::collections::BTreeSet::new();
    for (&partition, &end) in &ends {
        let (low, _) = consumer
            .fetch_watermarks(topic, partition, std::time::Duration::from_secs(10))
            .unwrap();
        if end > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .unwrap();
            reading.insert(partition);
        }
    }
    let mut messages = Vec::new();
    if reading.is_empty() {
        return messages;
    }
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !reading.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} messages; partitions {reading:?} of {topic} did not reach their end",
            messages.len()
        );
        let message = match consumer.poll(std::time::Duration::from_millis(100)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                reading.remove(&partition);
                continue;
            }
            Some(other) => other.unwrap(),
        };
        let end = ends[&message.partition()];
        if message.offset() + 1 >= end {
            reading.remove(&message.partition());
        }
        if message.offset() < end {
            use rdkafka::message::Headers;
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| {
                            (
                                header.key.to_string(),
                                header.value.unwrap_or_default().to_vec(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            messages.push(crate::oracle::RawMessage {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    messages
}

/// Per partition, the position after the last committed record (the low watermark when there
/// is none): where a layer that has read everything stands, before any trailing transaction
/// markers.
pub fn committed_ends(topic: &str) -> std::collections::BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let mut ends: std::collections::BTreeMap<i32, i64> = high_watermarks(topic)
        .keys()
        .map(|&p| {
            let (low, _) = consumer
                .fetch_watermarks(topic, p, std::time::Duration::from_secs(10))
                .unwrap();
            (p, low)
        })
        .collect();
    for message in read_topic(topic) {
        ends.insert(message.partition, message.offset + 1);
    }
    ends
}

/// The high watermark of every partition of `topic`.
pub fn high_watermarks(topic: &str) -> std::collections::BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    partitions
        .into_iter()
        .map(|p| {
            (
                p,
                consumer
                    .fetch_watermarks(topic, p, std::time::Duration::from_secs(10))
                    .unwrap()
                    .1,
            )
        })
        .collect()
}

/// The text a child process wrote to its log file.
pub fn log_of(pipeline: &Pipeline, command: &str, name: &str) -> String {
    std::fs::read_to_string(std::env::temp_dir().join(format!(
        "braid-test-logs/{}-{command}-{name}.log",
        pipeline.topic
    )))
    .unwrap_or_default()
}

/// Waits until the speed layer's stored positions reach the topic's last committed records
/// (not the high watermarks: transaction markers after them never arrive as records).
pub async fn speed_caught_up(
    pool: &sqlx::PgPool,
    pipeline: &Pipeline,
    processes: &mut [&mut Running],
) {
    let ends = committed_ends(&pipeline.topic);
    wait_until(
        "the speed layer to catch up",
        std::time::Duration::from_secs(120),
        || {
            for process in processes.iter_mut() {
                process.assert_running("a pipeline process");
            }
            async {
                let stored = schemas::pg::load_positions(pool, &pipeline.topic)
                    .await
                    .unwrap();
                ends.iter()
                    .all(|(p, end)| stored.get(p).is_some_and(|at| at >= end))
            }
        },
    )
    .await;
}

/// Waits until the Delta sink has committed past the topic's last committed records.
pub async fn sink_caught_up(pipeline: &Pipeline, sink: &mut Running) {
    sinks_caught_up(pipeline, &mut [sink]).await;
}

/// Waits until the Delta log's positions reach the topic's last committed records, with every
/// one of `sinks` (one consumer group) running meanwhile.
pub async fn sinks_caught_up(pipeline: &Pipeline, sinks: &mut [&mut Running]) {
    let ends = committed_ends(&pipeline.topic);
    let partitions: Vec<i32> = ends.keys().copied().collect();
    let file = pipeline
        .config
        .clone()
        .unwrap_or_else(|| repo_root().join("braid.toml"));
    let schema = schemas::BraidConfig::load(Some(&file)).unwrap().schema;
    wait_until(
        "the sink to catch up",
        std::time::Duration::from_secs(180),
        || {
            for sink in sinks.iter_mut() {
                sink.assert_running("braid sink");
            }
            async {
                let Some(table) = pipeline.lake.open(&schema).await else {
                    return false;
                };
                let committed =
                    batch_layer::lake::positions_in_log(&table, &pipeline.topic, &partitions)
                        .await
                        .unwrap_or_default();
                ends.iter()
                    .all(|(p, end)| committed.get(p).is_some_and(|at| at >= end))
            }
        },
    )
    .await;
}

/// The speed positions an answer's provenance reports (`{"positions": [{"partition",
/// "next_offset"}, ...]}`), by partition.
pub fn reported_positions(speed: &serde_json::Value) -> std::collections::BTreeMap<i32, i64> {
    speed["positions"]
        .as_array()
        .expect("provenance lists positions")
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap() as i32,
                p["next_offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// (partition, offset, reason code) of a layer's dead letters.
pub async fn dead_letters(
    pool: &sqlx::PgPool,
    layer: &str,
) -> std::collections::BTreeSet<(i32, i64, String)> {
    sqlx::query_as("SELECT partition, \"offset\", reason_code FROM braid_internal.dead_letters WHERE layer = $1")
        .bind(layer)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// A TCP proxy on 127.0.0.1 to `upstream` (`host:port`) that refuses connections (a reset, as
/// from a server that is gone) while `down` is set; its `host:port`.
pub async fn tcp_proxy(
    upstream: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if down.load(std::sync::atomic::Ordering::Relaxed) {
                drop(client);
                continue;
            }
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    local
}
