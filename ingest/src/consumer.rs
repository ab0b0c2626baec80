//! The loop: one thread polls, validates and buffers; the layer commits when due. Positions
//! come from the layer's store and are set in the rebalance callback, before any fetch; a
//! revoke commits what is buffered first. Every commit is fenced by the layer on the positions
//! this process expects, so a process that missed a rebalance never commits twice.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, TopicPartitionList};
use schemas::config::SchemaRegistryConfig;
use schemas::pg::DeadLetter;
use schemas::{EventSchema, Rejection};

use crate::caught_up::{Reading, cached_high_watermark};
use crate::error::{Disposition, IngestError};
use crate::expected::StartAt;
use crate::layer::{Buffer, Buffered, Committed, Received, Store};
use crate::metrics as m;
use crate::pipeline::Pipeline;
use crate::registry::SchemaLoader;
use crate::validator::{Chunk, Validator};
use crate::wait::sleep_unless_stopped;
use schemas::position::{Offset, Partition, Positions};

/// How long a poll waits for a message when nothing is buffered.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// How long a poll waits when caught up and an early commit waits for the previous write.
const WRITE_POLL: Duration = Duration::from_millis(5);

/// The clock is read every this many buffered messages (reading it costs as much as folding a
/// record), and whenever a poll returns nothing.
const CLOCK_EVERY_RECORDS: u64 = 256;

/// The first wait before a failed commit is retried; it doubles with each failure in a row.
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest wait before a failed commit is retried.
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(10);

/// How long reading a partition's low watermark for a newly assigned partition may take (in
/// the rebalance callback; a failure stops the layer rather than read from anywhere else).
const ASSIGN_WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the loop's other broker requests may take: watermarks at a partition's end, after
/// a fence or for a retention gap, and seeks.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the lag gauge is refreshed.
const LAG_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// How long each of the lag gauge's watermark requests may take (a slow broker then leaves the
/// gauge as it was rather than hold the loop).
const LAG_WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the loop needs besides the layer.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// The source topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Kafka client settings: brokers and pass-through options (see [`crate::kafka`]).
    pub client: ClientConfig,
    /// Commit at least this often.
    pub flush_interval: Duration,
    /// Commit sooner, once this long has passed since the last commit, when everything the
    /// brokers hold has been read and the previous commit's write has ended: fresher at live
    /// rates, and the same large commits under load, when there is always more to read.
    /// `None`: never sooner.
    pub flush_when_caught_up: Option<Duration>,
    /// Commit early at this many buffered messages.
    pub flush_max_records: Option<u64>,
    /// Commit early at this many buffered input bytes.
    pub flush_max_bytes: Option<u64>,
    /// Dead letters keep at most this many payload bytes.
    pub dead_letter_max_payload_bytes: usize,
    /// The event schema: the one validator of both layers.
    pub schema: EventSchema,
    /// Where an Avro topic's writer schemas are fetched (unused for JSON).
    pub schema_registry: SchemaRegistryConfig,
}

/// Totals of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages read.
    pub consumed: u64,
    /// Valid records committed.
    pub committed_records: u64,
    /// Dead letters committed.
    pub dead_letters: u64,
    /// Commits made.
    pub commits: u64,
}

/// The message kept while isolating, in case the store refuses it.
struct Isolated {
    partition: Partition,
    offset: Offset,
    payload: Vec<u8>,
}

/// What the polling thread and the rebalance callback share.
struct Shared<S: Store> {
    pipeline: Pipeline<S>,
    /// After the store refused a commit for its data: the end (next offset) of that commit per
    /// partition. Until every partition has passed its end, each message is committed alone,
    /// so the one the store refuses can be dead-lettered and the others kept.
    isolating: Positions,
    /// While isolating: the one message the buffer holds.
    isolated: Option<Isolated>,
    summary: Summary,
    fatal: Option<S::Error>,
    /// Validation on a second thread (every message but those read while isolating).
    validator: Validator,
    /// Dead letters keep at most this many payload bytes.
    dead_letter_max_payload_bytes: usize,
}

/// Buffers one validated message: a record, or a dead letter with its reason.
fn buffer_validated<S: Store>(
    pipeline: &mut Pipeline<S>,
    received: &Received<'_>,
    outcome: Result<&schemas::Record, &Rejection>,
    max_payload_bytes: usize,
) {
    match outcome {
        Ok(record) => pipeline.buffer().add_record(received, record),
        Err(rejection) => pipeline.buffer().add_dead_letter(DeadLetter::new(
            received.partition,
            received.offset,
            rejection.clone(),
            received.payload,
            // A record refused for its schema id alone may be valid once the id is registered:
            // kept whole (at most schema.max_record_bytes), so it can be replayed; unless the
            // operator keeps no payloads (0), or the id is past any registry's (i32).
            match rejection {
                Rejection::UnknownSchemaId { schema_id }
                    if max_payload_bytes > 0 && i32::try_from(*schema_id).is_ok() =>
                {
                    usize::MAX
                }
                _ => max_payload_bytes,
            },
        )),
    }
}

/// Buffers a chunk the validating thread gave back.
fn buffer_chunk<S: Store>(pipeline: &mut Pipeline<S>, chunk: &Chunk, max_payload_bytes: usize) {
    for (received, outcome) in chunk.validated() {
        // Read before a revoke that the loop settled first: never, but a record of a partition
        // no longer ours must not be buffered.
        if pipeline.is_assigned(received.partition) {
            buffer_validated(pipeline, &received, outcome, max_payload_bytes);
        }
    }
}

impl<S: Store> Shared<S> {
    /// Waits for every message read to be validated and buffers it.
    fn settle_validation(&mut self) {
        let Shared {
            pipeline,
            validator,
            dead_letter_max_payload_bytes,
            ..
        } = self;
        validator.settle(|chunk| buffer_chunk(pipeline, chunk, *dead_letter_max_payload_bytes));
    }

    /// Buffers the chunks already validated, without waiting.
    fn buffer_validated_chunks(&mut self) {
        let Shared {
            pipeline,
            validator,
            dead_letter_max_payload_bytes,
            ..
        } = self;
        validator.ready(|chunk| buffer_chunk(pipeline, chunk, *dead_letter_max_payload_bytes));
    }

    /// What is buffered and what is read but still being validated.
    fn buffered(&self) -> Buffered {
        let (buffered, pending) = (self.pipeline.buffered(), self.validator.pending());
        Buffered {
            records: buffered.records + pending.records,
            bytes: buffered.bytes + pending.bytes,
        }
    }

    /// Forgets everything read and not committed: the buffer and the messages being validated.
    fn drop_uncommitted(&mut self) {
        self.validator.discard();
        self.pipeline.drop_uncommitted();
    }

    fn stop_isolating(&mut self) {
        self.isolating.clear();
        self.isolated = None;
    }

    /// Books a commit: totals and metrics; an isolation ends once every partition passed its end.
    fn book(&mut self, committed: &Committed) {
        let layer = S::NAME;
        metrics::counter!(m::RECORDS_COMMITTED_TOTAL, "layer" => layer)
            .increment(committed.records);
        for reason in &committed.dead_letters {
            metrics::counter!(m::DEAD_LETTERS_TOTAL, "layer" => layer, "reason" => *reason)
                .increment(1);
        }
        metrics::histogram!(m::COMMIT_DURATION_SECONDS, "layer" => layer)
            .record(committed.took.as_secs_f64());
        self.summary.committed_records += committed.records;
        self.summary.dead_letters += committed.dead_letters.len() as u64;
        self.summary.commits += 1;
        let positions = self.pipeline.positions();
        self.isolating.retain(|p, end| {
            positions
                .get(p)
                .is_some_and(|at| !matches!(at, StartAt::Offset(o) if o >= end))
        });
        self.isolated = None;
    }
}

struct Context<S: Store> {
    topic: String,
    /// Shared with the next client when a fatal error makes this one unusable.
    shared: Arc<Mutex<Shared<S>>>,
}

impl<S: Store> ClientContext for Context<S> {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::report_client_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::report_client_error(&error, reason);
    }
}

impl<S: Store> Context<S> {
    fn shared(&self) -> MutexGuard<'_, Shared<S>> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        shared: &mut Shared<S>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), S::Error> {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let mut low_watermark = |partition: Partition| -> Result<i64, IngestError> {
            Ok(consumer
                .fetch_watermarks(&self.topic, partition, ASSIGN_WATERMARK_TIMEOUT)?
                .0)
        };
        shared.validator.discard();
        let starts = shared.pipeline.assign(&partitions, &mut low_watermark)?;
        for (&partition, start) in &starts {
            tpl.set_partition_offset(&self.topic, partition, start.kafka_offset())
                .map_err(IngestError::from)?;
        }
        tracing::info!(layer = S::NAME, positions = ?starts, "partitions assigned; consuming from the stored positions");
        shared.stop_isolating();
        consumer.assign(tpl).map_err(IngestError::from)?;
        Ok(())
    }
}

impl<S: Store> ConsumerContext for Context<S> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut shared = self.shared();
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            if let Err(error) = self.assign(consumer, &mut shared, tpl) {
                shared.fatal = Some(error);
            }
            return;
        }
        // Eager protocol: everything is revoked. Commit what was read while the partitions are
        // still ours; if that fails, drop it: the positions were not stored either, so the next
        // owner reads those records again.
        shared.settle_validation();
        match shared.pipeline.commit_all() {
            Ok(Some(committed)) => shared.book(&committed),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(layer = S::NAME, %error, "commit on revoke failed; the next owner re-reads those records")
            }
        }
        shared.drop_uncommitted();
        shared.pipeline.revoked();
        shared.stop_isolating();
        tracing::info!(layer = S::NAME, "partitions revoked");
        if let Err(error) = consumer.unassign() {
            tracing::warn!(%error, "unassigning the revoked partitions failed; continuing: the group's next assignment replaces them");
        }
    }
}

/// A consumer of `settings.topic` in `settings.group` whose context shares `state`.
fn subscribed<S: Store>(
    settings: &IngestSettings,
    state: Arc<Mutex<Shared<S>>>,
) -> Result<BaseConsumer<Context<S>>, S::Error> {
    let context = Context {
        topic: settings.topic.clone(),
        shared: state,
    };
    let consumer: BaseConsumer<Context<S>> = settings
        .client
        .clone()
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Never reset silently: an out-of-range position is an error the operator must see.
        .set("auto.offset.reset", "error")
        // Reaching the end of a partition is an event: the position may lie past the last record.
        .set("enable.partition.eof", "true")
        .set("partition.assignment.strategy", "range")
        .create_with_context(context)
        .map_err(IngestError::from)?;
    consumer
        .subscribe(&[&settings.topic])
        .map_err(IngestError::from)?;
    tracing::info!(
        layer = S::NAME,
        topic = settings.topic,
        group = settings.group,
        "consuming"
    );
    Ok(consumer)
}

/// The fatal errors that made the loop replace its Kafka client recently.
#[derive(Debug, Default)]
struct Replacements {
    recent: std::collections::VecDeque<Instant>,
}

impl Replacements {
    /// Fatal errors within this window count together.
    const WINDOW: Duration = Duration::from_secs(300);
    /// More than this many within the window stop the layer.
    const MAX: usize = 5;
    /// The wait before the first new client; it doubles with each recent fatal error.
    const FIRST_WAIT: Duration = Duration::from_millis(200);
    /// The longest wait before a new client.
    const MAX_WAIT: Duration = Duration::from_secs(10);

    /// Books a fatal error: the backoff before the next client ([`Self::FIRST_WAIT`] doubling
    /// per recent error, at most [`Self::MAX_WAIT`]), or the error that stops the layer.
    fn record(
        &mut self,
        layer: &'static str,
        code: RDKafkaErrorCode,
    ) -> Result<Duration, IngestError> {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > Self::WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let count = self.recent.len();
        if count > Self::MAX {
            return Err(IngestError::ClientKeepsFailing {
                layer,
                count,
                window_s: Self::WINDOW.as_secs(),
                last: code,
            });
        }
        Ok((Self::FIRST_WAIT * (1 << (count - 1))).min(Self::MAX_WAIT))
    }
}

/// Runs the layer of `store` and `buffer` (empty) until `stop` is set or an unrecoverable
/// error occurs. Blocking: call it from a plain thread; `runtime` runs the store's calls.
pub fn run<S: Store>(
    settings: IngestSettings,
    store: S,
    buffer: S::Buffer,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> Result<Summary, S::Error> {
    let name = S::NAME;
    // Writer schemas are fetched on this thread, before the first message naming one is
    // validated; the runtime runs the requests.
    let loader =
        SchemaLoader::new(&settings.schema, &settings.schema_registry, name).map_err(|source| {
            IngestError::Registry {
                layer: name,
                source,
            }
        })?;
    let registry_runtime = runtime.clone();
    let state = Arc::new(Mutex::new(Shared {
        pipeline: Pipeline::new(runtime, store, buffer),
        isolating: BTreeMap::new(),
        isolated: None,
        summary: Summary::default(),
        fatal: None,
        validator: Validator::start(settings.schema.clone()).map_err(|source| {
            IngestError::ValidatorThread {
                layer: name,
                source,
            }
        })?,
        dead_letter_max_payload_bytes: settings.dead_letter_max_payload_bytes,
    }));
    let mut consumer = subscribed(&settings, Arc::clone(&state))?;

    // Looked up once: a lookup by name and labels per message cost ~4 % of the speed layer's
    // CPU (flame graph in docs/benchmarks.md).
    let consumed_total = metrics::counter!(m::RECORDS_CONSUMED_TOTAL, "layer" => name);
    let input_bytes_total = metrics::counter!(m::INPUT_BYTES_TOTAL, "layer" => name);
    let mut last_commit = Instant::now();
    let mut last_lag = Instant::now();
    let mut backoff = COMMIT_RETRY_FIRST;
    let mut replacements = Replacements::default();
    // How long the next poll may wait for a message: 50 ms when nothing is buffered; no wait
    // while records are buffered and an early commit is possible (an empty poll then says the
    // layer has caught up); the time left until the early commit when caught up before it.
    let mut poll_wait = IDLE_POLL;
    let mut reading = Reading::default();
    // Validated topic names hold no NUL; without one, only librdkafka's end events count.
    let topic_name = CString::new(settings.topic.as_str()).ok();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let polled = if stopping {
            None
        } else {
            consumer.poll(poll_wait)
        };
        poll_wait = IDLE_POLL;
        if let (Some(loader), Some(Ok(message))) = (&loader, &polled)
            && message.payload_len() <= settings.schema.max_record_bytes
            && !loader.ensure(
                message.payload().unwrap_or_default(),
                &registry_runtime,
                &stop,
            )
        {
            // Stopped while the registry was down: nothing of the message was buffered, so
            // the next run reads it again.
            continue;
        }
        let ctx = consumer.context();
        let mut shared = ctx.shared();
        if let Some(fatal) = shared.fatal.take() {
            return Err(fatal);
        }
        let polled_nothing = polled.is_none();
        match polled {
            Some(Ok(message)) => {
                let partition = message.partition();
                if !shared.pipeline.is_assigned(partition) {
                    continue; // fetched before a revoke: no longer ours
                }
                reading.message_from(partition, message.offset());
                let payload = message.payload().unwrap_or_default();
                shared.summary.consumed += 1;
                consumed_total.increment(1);
                input_bytes_total.increment(payload.len() as u64);
                let received = Received {
                    partition,
                    offset: message.offset(),
                    key: message.key(),
                    payload,
                };
                if shared.isolating.is_empty() && payload.len() <= settings.schema.max_record_bytes
                {
                    let Shared {
                        pipeline,
                        validator,
                        dead_letter_max_payload_bytes,
                        ..
                    } = &mut *shared;
                    validator.push(&received, |chunk| {
                        buffer_chunk(pipeline, chunk, *dead_letter_max_payload_bytes)
                    });
                } else {
                    // While isolating, each message is committed alone; a message over
                    // schema.max_record_bytes is refused without being copied. Validated here,
                    // after everything read before it.
                    shared.settle_validation();
                    let outcome = settings.schema.validate(payload);
                    buffer_validated(
                        &mut shared.pipeline,
                        &received,
                        outcome.as_ref(),
                        settings.dead_letter_max_payload_bytes,
                    );
                }
                if !shared.isolating.is_empty() {
                    shared.isolated = Some(Isolated {
                        partition,
                        offset: message.offset(),
                        payload: payload.to_vec(),
                    });
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                reading.end_of(partition);
                shared.settle_validation();
                end_of_partition(&consumer, &mut shared, &settings.topic, partition);
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                return Err(out_of_range(&consumer, &shared.pipeline, &settings.topic).into());
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                // The client is unusable (e.g. its static membership was fenced while the broker
                // restarted). Nothing is lost: a new client resumes from the stored positions,
                // after a backoff; fatal errors again and again stop the layer.
                let wait = replacements.record(name, code)?;
                tracing::warn!(layer = name, error = %code, wait_ms = wait.as_millis() as u64, "the Kafka client hit a fatal error; replacing it with a new client that resumes from the stored positions");
                shared.drop_uncommitted();
                shared.stop_isolating();
                drop(shared);
                drop(consumer);
                sleep_unless_stopped(wait, &stop);
                consumer = subscribed(&settings, Arc::clone(&state))?;
                continue;
            }
            // Reported once by the client's error callback, with what to do about it.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ))) => {}
            Some(Err(error)) => {
                tracing::warn!(layer = name, %error, "Kafka reported an error; continuing (librdkafka retries on its own): check kafka.brokers if this repeats")
            }
            None => shared.validator.hand_over(),
        }
        shared.buffer_validated_chunks();
        // Reading the clock costs as much as folding a record: look at it every
        // CLOCK_EVERY_RECORDS messages, or when caught up.
        let buffered = shared.buffered();
        let mut caught_up_due = false;
        if let Some(soonest) = settings
            .flush_when_caught_up
            .filter(|_| buffered.records > 0)
        {
            // Caught up: nothing in librdkafka's queue, and every partition that sent a
            // message is at its end (an empty queue alone may only mean that the next fetch is
            // on its way, under load; see `caught_up`). An early commit also waits for the
            // previous write to end: at most one write is busy, and a commit holds what
            // arrived while the one before it wrote, so commits grow with the load.
            if polled_nothing
                && reading.at_every_end(
                    |p| shared.pipeline.is_assigned(p),
                    |p| {
                        let topic = topic_name.as_ref()?;
                        cached_high_watermark(consumer.client(), topic, p)
                    },
                )
            {
                let since = last_commit.elapsed();
                if since < soonest {
                    poll_wait = soonest - since;
                } else if shared.pipeline.writing() {
                    poll_wait = WRITE_POLL;
                } else {
                    caught_up_due = true;
                }
            } else {
                poll_wait = Duration::ZERO;
            }
        }
        let due = settings
            .flush_max_records
            .is_some_and(|max| buffered.records >= max)
            || settings
                .flush_max_bytes
                .is_some_and(|max| buffered.bytes >= max)
            || stopping
            || shared.isolated.is_some()
            || caught_up_due
            || ((buffered.records % CLOCK_EVERY_RECORDS == 0 || polled_nothing)
                && last_commit.elapsed() >= settings.flush_interval);
        if !due {
            continue;
        }
        shared.settle_validation();
        let buffered = shared.pipeline.buffered();
        // Nothing read since the last commit: a commit that then wrote nothing means the layer
        // is idle (a layer that flushes in the background may return before its write ends).
        let idle = buffered.records == 0 && shared.pipeline.buffered_ends().is_empty();
        // While isolating, each commit must end before the next message is read: a refusal
        // then names the one message the commit held.
        let result = if stopping || shared.isolated.is_some() {
            shared.pipeline.commit_all()
        } else {
            shared.pipeline.commit()
        };
        match result {
            Ok(committed) => {
                last_commit = Instant::now();
                backoff = COMMIT_RETRY_FIRST;
                let committed_any = committed.is_some();
                if let Some(committed) = committed {
                    shared.book(&committed);
                    commit_for_monitoring(
                        &consumer,
                        &settings.topic,
                        &shared.pipeline.stored_positions(),
                    );
                }
                if idle && !committed_any && !stopping && S::FOLLOWS_MOVED_POSITIONS {
                    follow_moved_positions(&consumer, &mut shared, &settings.topic)?;
                }
                if last_lag.elapsed() >= LAG_REPORT_INTERVAL {
                    last_lag = Instant::now();
                    report_lag(
                        &consumer,
                        name,
                        &settings.topic,
                        &shared.pipeline.stored_positions(),
                    );
                }
                if stopping {
                    tracing::info!(layer = name, summary = ?shared.summary, "stopped cleanly");
                    return Ok(shared.summary.clone());
                }
            }
            Err(error) => match S::classify(&error) {
                Disposition::Fenced => {
                    // Another process owns these partitions now, or an operator moved them. Drop
                    // the buffer and re-read from the stored positions.
                    tracing::warn!(layer = name, %error, "commit fenced; re-reading from the stored positions");
                    shared.drop_uncommitted();
                    shared.stop_isolating();
                    let positions = shared
                        .pipeline
                        .reload(&mut low_watermark(&consumer, &settings.topic))?;
                    seek(&consumer, &settings.topic, &positions)?;
                }
                Disposition::DataRefused => {
                    isolate(&consumer, &mut shared, &settings, &error)?;
                }
                Disposition::Retryable => {
                    metrics::counter!(m::COMMIT_RETRIES_TOTAL, "layer" => name).increment(1);
                    tracing::warn!(layer = name, %error, retry_in_ms = backoff.as_millis() as u64, "commit failed; nothing was committed; retrying");
                    drop(shared);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(COMMIT_RETRY_MAX);
                }
                Disposition::Fatal => return Err(error),
            },
        }
    }
}

/// The store refused a commit for the values of some record that passed validation. With one
/// message buffered, that message is the one: dead-letter it as `refused_by_database` and go
/// on. Otherwise read the buffer again, one message per commit, to find it.
fn isolate<S: Store>(
    consumer: &BaseConsumer<Context<S>>,
    shared: &mut Shared<S>,
    settings: &IngestSettings,
    error: &S::Error,
) -> Result<(), S::Error> {
    let name = S::NAME;
    let detail = S::refusal_detail(error);
    match shared.isolated.take() {
        Some(message) => {
            tracing::warn!(
                layer = name,
                partition = message.partition,
                offset = message.offset,
                error = detail,
                "the store refused a record that passed validation; dead-lettered as refused_by_database"
            );
            metrics::counter!(m::REFUSED_BY_STORE_TOTAL, "layer" => name).increment(1);
            shared.drop_uncommitted();
            shared.pipeline.buffer().add_dead_letter(DeadLetter::new(
                message.partition,
                message.offset,
                Rejection::RefusedByDatabase { detail },
                &message.payload,
                settings.dead_letter_max_payload_bytes,
            ));
            if let Some(committed) = shared.pipeline.commit_all()? {
                shared.book(&committed);
            }
        }
        None => {
            tracing::warn!(
                layer = name,
                error = detail,
                ends = ?shared.pipeline.buffered_ends(),
                "the store refused a commit for its data; re-reading it one record at a time to isolate the record"
            );
            metrics::counter!(m::ISOLATIONS_TOTAL, "layer" => name).increment(1);
            shared.isolating = shared.pipeline.buffered_ends();
            shared.drop_uncommitted();
            let positions = shared.pipeline.positions();
            seek(consumer, &settings.topic, &positions)?;
        }
    }
    Ok(())
}

/// At the end of `partition`: tell the layer where the consumer stands when that lies past the
/// last record it read (transaction markers, aborted records), or, when it has read nothing
/// since starting at the log start, the partition's low watermark (every earlier record
/// expired). The end-of-partition event comes after every message and marker before it, so the
/// consumer's position is current; a seek unsets it until something is read.
fn end_of_partition<S: Store>(
    consumer: &BaseConsumer<Context<S>>,
    shared: &mut Shared<S>,
    topic: &str,
    partition: Partition,
) {
    if !shared.pipeline.is_assigned(partition) {
        return;
    }
    let position = consumer.position().ok().and_then(|tpl| {
        tpl.find_partition(topic, partition)
            .and_then(|element| match element.offset() {
                rdkafka::Offset::Offset(offset) => Some(offset),
                _ => None,
            })
    });
    let reached = match position {
        Some(offset) => offset,
        None if !shared.pipeline.has_position(partition) => {
            match consumer.fetch_watermarks(topic, partition, BROKER_TIMEOUT) {
                Ok((low, _)) => low,
                Err(error) => {
                    tracing::warn!(%error, partition, "could not read the low watermark at the end of a partition; trying again at its next end");
                    return;
                }
            }
        }
        None => return,
    };
    shared.pipeline.skip_to(partition, reached);
}

/// When idle: an operator may have moved the stored positions (a replay); follow them.
fn follow_moved_positions<S: Store>(
    consumer: &BaseConsumer<Context<S>>,
    shared: &mut Shared<S>,
    topic: &str,
) -> Result<(), S::Error> {
    let before = shared.pipeline.positions();
    if before.is_empty() {
        return Ok(());
    }
    let stored = shared
        .pipeline
        .reload(&mut low_watermark(consumer, topic))?;
    if stored != before {
        tracing::warn!(
            layer = S::NAME,
            "stored positions were moved by another process; re-reading from them"
        );
        seek(consumer, topic, &stored)?;
    }
    Ok(())
}

/// Reads Kafka's first offset of a partition of `topic`, for a store that stores it as a start.
fn low_watermark<'a, C: ConsumerContext>(
    consumer: &'a BaseConsumer<C>,
    topic: &'a str,
) -> impl FnMut(Partition) -> Result<Offset, IngestError> + 'a {
    move |partition| {
        Ok(consumer
            .fetch_watermarks(topic, partition, BROKER_TIMEOUT)?
            .0)
    }
}

/// Names the partition whose position Kafka no longer has.
fn out_of_range<S: Store>(
    consumer: &BaseConsumer<Context<S>>,
    pipeline: &Pipeline<S>,
    topic: &str,
) -> IngestError {
    let positions = pipeline.stored_positions();
    let gone = positions.iter().find(|(partition, offset)| {
        consumer
            .fetch_watermarks(topic, **partition, BROKER_TIMEOUT)
            .is_ok_and(|(low, high)| **offset < low || **offset > high)
    });
    let (partition, offset) = gone.map_or((-1, -1), |(&p, &o)| (p, o));
    IngestError::OffsetOutOfRange {
        layer: S::NAME,
        topic: topic.to_string(),
        partition,
        offset,
        remedy: S::RETENTION_REMEDY,
    }
}

/// Moves each partition of `positions` that the client holds to its position.
///
/// Only the partitions the client holds now are moved: a client that replaced a fenced one
/// may not have been assigned its partitions yet, and librdkafka refuses to seek those
/// ("Unknown partition"), which stopped the layer. Such a partition starts from the stored
/// positions anyway when it is assigned (`Pipeline::assign`).
fn seek<S: Store>(
    consumer: &BaseConsumer<Context<S>>,
    topic: &str,
    positions: &BTreeMap<Partition, StartAt>,
) -> Result<(), IngestError> {
    let assigned = consumer.assignment()?;
    for (&partition, start) in positions {
        if assigned.find_partition(topic, partition).is_none() {
            tracing::debug!(
                topic,
                partition,
                "not assigned to this client (yet): it starts from the stored position when it is"
            );
            continue;
        }
        consumer.seek(topic, partition, start.kafka_offset(), BROKER_TIMEOUT)?;
    }
    Ok(())
}

/// Commits the layer's positions to Kafka too, so standard tools can show the group's lag,
/// with the commit's time as the offsets' metadata. Never used to resume.
fn commit_for_monitoring<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    positions: &Positions,
) {
    let mut tpl = TopicPartitionList::new();
    let committed_at = schemas::position::MONITORING_METADATA_PREFIX.to_string()
        + &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string();
    for (&partition, &offset) in positions {
        let mut element = tpl.add_partition(topic, partition);
        let _ = element.set_offset(rdkafka::Offset::Offset(offset));
        element.set_metadata(&committed_at);
    }
    if tpl.count() > 0
        && let Err(error) = consumer.commit(&tpl, CommitMode::Async)
    {
        tracing::debug!(%error, "monitoring commit failed");
    }
}

fn report_lag<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    layer: &'static str,
    topic: &str,
    positions: &Positions,
) {
    for (&partition, &offset) in positions {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, LAG_WATERMARK_TIMEOUT) {
            metrics::gauge!(m::PARTITION_LAG_RECORDS, "layer" => layer, "partition" => partition.to_string())
                .set((high - offset).max(0) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_errors_back_off_and_again_and_again_stop_the_layer() {
        let mut replacements = Replacements::default();
        let code = RDKafkaErrorCode::FencedInstanceId;
        let waits: Vec<Duration> = (0..Replacements::MAX)
            .map(|_| replacements.record("speed layer", code).unwrap())
            .collect();
        assert_eq!(waits[0], Replacements::FIRST_WAIT);
        assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
        let stopped = replacements.record("speed layer", code).unwrap_err();
        assert!(
            matches!(stopped, IngestError::ClientKeepsFailing { count, .. } if count == Replacements::MAX + 1),
            "{stopped:?}"
        );
        assert!(
            stopped.to_string().contains("group.instance.id"),
            "{stopped}"
        );
        assert!(
            !stopped.to_string().contains("  "),
            "the message reads as one sentence: {stopped}"
        );
    }

    #[test]
    fn a_stop_ends_the_backoff() {
        let stop = AtomicBool::new(true);
        let started = Instant::now();
        sleep_unless_stopped(Duration::from_secs(60), &stop);
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
