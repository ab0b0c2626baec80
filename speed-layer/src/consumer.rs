//! The Kafka side of the speed layer.
//!
//! Runs on one thread: poll, validate, fold into the micro-batch, flush when due. Positions
//! come from PostgreSQL and are set in the rebalance callback, before any fetch; a revoke
//! flushes what is buffered first. Every flush is fenced on the positions this process
//! expects, so a process that missed a rebalance can never commit twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::{EventSchema, Rejection};
use schemas::pg::{self, DeadLetter};
use schemas::validation_rules::ValidationRules;
use schemas::view::View;
use sqlx::PgPool;
use tokio::runtime::Handle;

use crate::aggregate::MicroBatch;
use crate::error::SpeedError;
use crate::flush::{FlushOutcome, ViewWriter, flush};
use crate::metrics as m;

/// What the speed layer needs to run.
#[derive(Debug, Clone)]
pub struct SpeedSettings {
    /// The source topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Kafka client settings: brokers and pass-through options.
    pub client: ClientConfig,
    /// Flush at least this often.
    pub flush_interval: Duration,
    /// Flush early at this many buffered records.
    pub flush_max_records: u64,
    /// Dead letters keep at most this many payload bytes.
    pub dead_letter_max_payload_bytes: usize,
    /// The event schema.
    pub schema: EventSchema,
    /// The views to maintain.
    pub views: Vec<View>,
}

/// Totals of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpeedSummary {
    /// Messages read.
    pub consumed: u64,
    /// Valid records committed.
    pub flushed_records: u64,
    /// Dead letters committed.
    pub dead_letters: u64,
    /// Flush transactions committed.
    pub flushes: u64,
}

struct State {
    batch: MicroBatch,
    /// The stored position of every assigned partition, as of this process's last write.
    expected: BTreeMap<i32, i64>,
    /// After the database refused a flush for its data: the end (next offset) of that flush
    /// per partition. Until every partition has passed its end, each record is flushed alone,
    /// so that the one the database refuses can be dead-lettered and the rest counted.
    isolating: BTreeMap<i32, i64>,
    /// While isolating: the one message the batch holds, for its dead letter.
    isolated: Option<IsolatedMessage>,
    summary: SpeedSummary,
    fatal: Option<SpeedError>,
}

/// A message kept while isolating, in case the database refuses it.
struct IsolatedMessage {
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
}

impl State {
    /// Forgets an isolation (after a fence or a rebalance: the records are read again).
    fn stop_isolating(&mut self) {
        self.isolating.clear();
        self.isolated = None;
    }
}

struct SpeedContext {
    pool: PgPool,
    runtime: Handle,
    /// The validation rules this process runs; checked against the recorded ones per flush.
    rules: ValidationRules,
    topic: String,
    writers: Vec<ViewWriter>,
    state: Mutex<State>,
}

impl ClientContext for SpeedContext {}

impl SpeedContext {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Flushes the buffered batch. On success the expected positions move forward and the
    /// batch is emptied; on failure the batch is kept (to retry) and the error returned.
    fn flush_state(&self, state: &mut State) -> Result<Option<FlushOutcome>, SpeedError> {
        if state.batch.is_empty() {
            return Ok(None);
        }
        // Stop, rather than flush, once the recorded rules changed (the sink may now accept
        // other records than this process).
        self.runtime.block_on(pg::check_validation_rules(
            &self.pool,
            &self.topic,
            &self.rules,
        ))?;
        let outcome = self.runtime.block_on(flush(
            &self.pool,
            &self.topic,
            &self.writers,
            &state.batch,
            &state.expected,
        ))?;
        state
            .expected
            .extend(state.batch.next_offsets.iter().map(|(&p, &o)| (p, o)));
        let expected = &state.expected;
        state
            .isolating
            .retain(|p, end| expected.get(p).is_some_and(|at| at < end));
        state.isolated = None;
        for letter in &state.batch.dead_letters {
            metrics::counter!(m::DEAD_LETTERS_TOTAL, "reason" => letter.rejection.code())
                .increment(1);
        }
        metrics::counter!(m::EVENTS_FLUSHED_TOTAL).increment(outcome.records);
        metrics::counter!(m::ROWS_UPSERTED_TOTAL).increment(outcome.rows as u64);
        metrics::histogram!(m::FLUSH_DURATION_SECONDS).record(outcome.duration.as_secs_f64());
        state.summary.flushed_records += outcome.records;
        state.summary.dead_letters += outcome.dead_letters as u64;
        state.summary.flushes += 1;
        state.batch.clear();
        tracing::debug!(
            epoch = outcome.epoch,
            rows = outcome.rows,
            records = outcome.records,
            dead_letters = outcome.dead_letters,
            seconds = outcome.duration.as_secs_f64(),
            "flushed"
        );
        Ok(Some(outcome))
    }

    /// Loads stored positions for newly assigned partitions; a partition without one starts
    /// at the log start, which is stored first.
    fn positions_for(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, SpeedError> {
        let stored = self
            .runtime
            .block_on(pg::load_positions(&self.pool, &self.topic))?;
        let mut positions = BTreeMap::new();
        for &partition in partitions {
            let position = match stored.get(&partition) {
                Some(&offset) => offset,
                None => {
                    let (low, _) = consumer.fetch_watermarks(
                        &self.topic,
                        partition,
                        Duration::from_secs(30),
                    )?;
                    let start = self.runtime.block_on(pg::store_start_if_absent(
                        &self.pool,
                        &self.topic,
                        partition,
                        low,
                    ))?;
                    tracing::info!(
                        partition,
                        start,
                        "no stored position; starting at the log start"
                    );
                    start
                }
            };
            positions.insert(partition, position);
        }
        Ok(positions)
    }
}

impl ConsumerContext for SpeedContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut state = self.state();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                match self.positions_for(consumer, &partitions) {
                    Ok(positions) => {
                        for (&partition, &offset) in &positions {
                            if let Err(e) = tpl.set_partition_offset(
                                &self.topic,
                                partition,
                                Offset::Offset(offset),
                            ) {
                                state.fatal = Some(e.into());
                            }
                        }
                        tracing::info!(
                            ?positions,
                            "partitions assigned; consuming from the stored positions"
                        );
                        state.expected = positions;
                        state.stop_isolating();
                        if let Err(e) = consumer.assign(tpl) {
                            state.fatal = Some(e.into());
                        }
                    }
                    Err(e) => {
                        state.fatal = Some(SpeedError::Rebalance(format!("loading positions: {e}")))
                    }
                }
            }
            _ => {
                // Eager protocol: everything is revoked. Commit what is buffered while the
                // partitions are still ours; if that fails, drop it: the positions were not
                // stored either, so the next owner reads those records again.
                let revoked: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                if let Err(e) = self.flush_state(&mut state) {
                    tracing::warn!(error = %e, "flush on revoke failed; the next owner re-reads those records");
                }
                state.batch.clear();
                state.stop_isolating();
                state.expected.clear();
                tracing::info!(?revoked, "partitions revoked");
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
        }
    }
}

/// Runs the speed layer until `stop` is set or an unrecoverable error occurs. Blocking: call
/// it from a plain thread; `runtime` runs the database calls.
pub fn run(
    settings: SpeedSettings,
    pool: PgPool,
    runtime: Handle,
    stop: Arc<AtomicBool>,
) -> Result<SpeedSummary, SpeedError> {
    let rules = ValidationRules::of(&settings.schema);
    runtime.block_on(pg::check_validation_rules(&pool, &settings.topic, &rules))?;
    tracing::info!(fingerprint = rules.fingerprint(), "validation rules agree with the recorded ones");
    let context = SpeedContext {
        pool,
        runtime,
        rules,
        topic: settings.topic.clone(),
        writers: settings.views.iter().map(ViewWriter::new).collect(),
        state: Mutex::new(State {
            batch: MicroBatch::new(&settings.views),
            expected: BTreeMap::new(),
            isolating: BTreeMap::new(),
            isolated: None,
            summary: SpeedSummary::default(),
            fatal: None,
        }),
    };
    let consumer: BaseConsumer<SpeedContext> = settings
        .client
        .clone()
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Never reset silently: an out-of-range position is an error the operator must see.
        .set("auto.offset.reset", "error")
        .set("partition.assignment.strategy", "range")
        .create_with_context(context)?;
    consumer.subscribe(&[&settings.topic])?;
    tracing::info!(
        topic = settings.topic,
        group = settings.group,
        views = settings.views.len(),
        "speed layer consuming"
    );

    let mut last_flush = Instant::now();
    let mut last_lag = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let polled = if stopping {
            None
        } else {
            consumer.poll(Duration::from_millis(50))
        };
        let ctx = consumer.context();
        let mut state = ctx.state();
        if let Some(fatal) = state.fatal.take() {
            return Err(fatal);
        }
        let polled_nothing = polled.is_none();
        match polled {
            Some(Ok(message)) => {
                let partition = message.partition();
                if !state.expected.contains_key(&partition) {
                    continue; // fetched before a revoke: no longer ours
                }
                state.summary.consumed += 1;
                metrics::counter!(m::EVENTS_CONSUMED_TOTAL).increment(1);
                let payload = message.payload().unwrap_or_default();
                match settings.schema.validate(payload) {
                    Ok(record) => state.batch.add_record(partition, message.offset(), &record),
                    Err(rejection) => state.batch.add_dead_letter(DeadLetter::new(
                        partition,
                        message.offset(),
                        rejection,
                        payload,
                        settings.dead_letter_max_payload_bytes,
                    )),
                }
                if !state.isolating.is_empty() {
                    state.isolated = Some(IsolatedMessage {
                        partition,
                        offset: message.offset(),
                        payload: payload.to_vec(),
                    });
                }
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                return Err(out_of_range(&consumer, &settings.topic, &state.expected));
            }
            Some(Err(error)) => tracing::warn!(%error, "kafka reported an error; continuing"),
            None => {}
        }
        // Reading the clock costs as much as folding a record: look at it every 256 records.
        let records = state.batch.len();
        let due = records >= settings.flush_max_records
            || stopping
            || state.isolated.is_some()
            || ((records % 256 == 0 || polled_nothing)
                && last_flush.elapsed() >= settings.flush_interval);
        if !due {
            continue;
        }
        match ctx.flush_state(&mut state) {
            Ok(outcome) => {
                last_flush = Instant::now();
                backoff = Duration::from_millis(100);
                if outcome.is_some() {
                    commit_for_monitoring(&consumer, &settings.topic, &state.expected);
                } else if !stopping && !state.expected.is_empty() {
                    // Idle: no flush will be fenced, so look whether an operator moved the
                    // stored positions (a replay) and follow them.
                    let positions = ctx
                        .runtime
                        .block_on(pg::load_positions(&ctx.pool, &settings.topic))?;
                    let moved = state
                        .expected
                        .iter()
                        .any(|(p, e)| positions.get(p).is_some_and(|s| s != e));
                    if moved {
                        tracing::warn!(
                            "stored positions were moved by another process; re-reading from them"
                        );
                        seek_to_stored(
                            &consumer,
                            &settings.topic,
                            &mut state.expected,
                            &positions,
                        )?;
                    }
                }
                if last_lag.elapsed() >= Duration::from_secs(5) {
                    last_lag = Instant::now();
                    report_lag(&consumer, &settings.topic, &state.expected);
                }
                if stopping {
                    tracing::info!(summary = ?state.summary, "speed layer stopped cleanly");
                    return Ok(state.summary.clone());
                }
            }
            Err(SpeedError::Fenced(fenced)) => {
                // Another process owns these partitions now, or an operator moved them
                // (`braid replay speed`, `braid recover`). Drop the batch and re-read from the
                // stored positions of the partitions still assigned here.
                tracing::warn!(%fenced, "flush fenced; re-reading from the stored positions");
                state.batch.clear();
                state.stop_isolating();
                let positions = ctx
                    .runtime
                    .block_on(pg::load_positions(&ctx.pool, &settings.topic))?;
                seek_to_stored(&consumer, &settings.topic, &mut state.expected, &positions)?;
            }
            Err(SpeedError::Database(error)) if pg::is_data_error(&error) => {
                let detail = pg::database_message(&error);
                match state.isolated.take() {
                    Some(message) => {
                        // The batch holds this one message: it is what the database refuses.
                        tracing::warn!(
                            partition = message.partition,
                            offset = message.offset,
                            error = detail,
                            "the database refused a record that passed validation; dead-lettered as refused_by_database"
                        );
                        metrics::counter!(m::REFUSED_BY_DATABASE_TOTAL).increment(1);
                        state.batch.clear();
                        state.batch.add_dead_letter(DeadLetter::new(
                            message.partition,
                            message.offset,
                            Rejection::RefusedByDatabase { detail },
                            &message.payload,
                            settings.dead_letter_max_payload_bytes,
                        ));
                        ctx.flush_state(&mut state)?;
                    }
                    None => {
                        // Some record of this batch is refused for its data: read the batch
                        // again, one record per flush, to find it. Nothing was committed.
                        tracing::warn!(
                            error = detail,
                            ends = ?state.batch.next_offsets,
                            "the database refused a flush for its data; re-reading it one record at a time to isolate the record"
                        );
                        metrics::counter!(m::ISOLATIONS_TOTAL).increment(1);
                        state.isolating = std::mem::take(&mut state.batch.next_offsets);
                        state.batch.clear();
                        let stored = state.expected.clone();
                        seek_to_stored(&consumer, &settings.topic, &mut state.expected, &stored)?;
                    }
                }
            }
            Err(error) if error.is_retryable() => {
                metrics::counter!(m::FLUSH_RETRIES_TOTAL).increment(1);
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "flush failed; nothing was committed; retrying");
                drop(state);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Names the partitions whose stored position Kafka no longer has.
fn out_of_range(
    consumer: &BaseConsumer<SpeedContext>,
    topic: &str,
    expected: &BTreeMap<i32, i64>,
) -> SpeedError {
    for (&partition, &offset) in expected {
        if let Ok((low, high)) =
            consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))
            && (offset < low || offset > high)
        {
            return SpeedError::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset,
            };
        }
    }
    SpeedError::OffsetOutOfRange {
        topic: topic.to_string(),
        partition: -1,
        offset: -1,
    }
}

/// Commits the stored positions to Kafka too, so standard tools can show the group's lag.
/// Never used to resume.
fn commit_for_monitoring(
    consumer: &BaseConsumer<SpeedContext>,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
) {
    let mut tpl = TopicPartitionList::new();
    for (&partition, &offset) in positions {
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
    }
    if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(%error, "monitoring commit failed");
    }
}

fn report_lag(consumer: &BaseConsumer<SpeedContext>, topic: &str, positions: &BTreeMap<i32, i64>) {
    for (&partition, &offset) in positions {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(1)) {
            metrics::gauge!(m::PARTITION_LAG_RECORDS, "partition" => partition.to_string())
                .set((high - offset).max(0) as f64);
        }
    }
}

/// Moves every assigned partition to its stored position.
fn seek_to_stored(
    consumer: &BaseConsumer<SpeedContext>,
    topic: &str,
    expected: &mut BTreeMap<i32, i64>,
    stored: &BTreeMap<i32, i64>,
) -> Result<(), SpeedError> {
    for (partition, expected) in expected.iter_mut() {
        if let Some(&position) = stored.get(partition) {
            *expected = position;
            consumer.seek(
                topic,
                *partition,
                Offset::Offset(position),
                Duration::from_secs(10),
            )?;
        }
    }
    Ok(())
}
