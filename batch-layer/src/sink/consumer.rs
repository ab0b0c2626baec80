//! The Kafka side of the sink: one thread polls, validates and buffers; commits run in the
//! background, one at a time (see [`super::commit`]). Positions come from the Delta log and
//! are set in the rebalance callback.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::pg::DeadLetter;
use schemas::validation_rules::ValidationRules;
use sqlx::PgPool;
use tokio::runtime::Handle;

use super::columns::BatchBuilder;
use super::commit::{Committer, InFlight, Pending, committed_log};
use super::metrics as m;
use super::table::{open_or_create, positions_in_log};
use super::{SinkError, SinkSettings, SinkSummary, writer_properties};

struct State {
    /// The table; `None` while a background commit owns it.
    table: Option<DeltaTable>,
    builder: BatchBuilder,
    next_offsets: BTreeMap<i32, i64>,
    dead_letters: Vec<DeadLetter>,
    buffered_bytes: u64,
    /// The commit running in the background, if any.
    in_flight: Option<InFlight>,
    /// A buffer whose commit failed and must be retried before any later one.
    failed: Option<Pending>,
    /// The Delta log's position of every assigned partition (`None`: never committed).
    expected: BTreeMap<i32, Option<i64>>,
    summary: SinkSummary,
    fatal: Option<SinkError>,
}

impl State {
    /// Takes the buffer as a commit-ready batch, or `None` if nothing was read.
    fn take_buffer(&mut self) -> Result<Option<Pending>, SinkError> {
        if self.next_offsets.is_empty() {
            return Ok(None);
        }
        let pending = Pending {
            batch: self.builder.finish()?,
            next_offsets: std::mem::take(&mut self.next_offsets),
            dead_letters: std::mem::take(&mut self.dead_letters),
            input_bytes: std::mem::take(&mut self.buffered_bytes),
        };
        Ok(Some(pending))
    }

    /// Drops everything read but not committed (after a fence or a revoke).
    fn drop_uncommitted(&mut self) {
        let _ = self.builder.finish();
        self.next_offsets.clear();
        self.dead_letters.clear();
        self.buffered_bytes = 0;
        self.failed = None;
    }

    /// Books a committed buffer: positions move, totals and metrics grow.
    fn record(&mut self, pending: &Pending, took: Duration) {
        let rows = pending.batch.num_rows() as u64;
        for letter in &pending.dead_letters {
            metrics::counter!(m::DEAD_LETTERS_TOTAL, "reason" => letter.rejection.code())
                .increment(1);
        }
        metrics::counter!(m::RECORDS_COMMITTED_TOTAL).increment(rows);
        metrics::counter!(m::INPUT_BYTES_TOTAL).increment(pending.input_bytes);
        metrics::histogram!(m::COMMIT_DURATION_SECONDS).record(took.as_secs_f64());
        self.summary.committed_records += rows;
        self.summary.dead_letters += pending.dead_letters.len() as u64;
        self.summary.commits += 1;
        for (&partition, &offset) in &pending.next_offsets {
            self.expected.insert(partition, Some(offset));
        }
    }
}

struct SinkContext {
    runtime: Handle,
    committer: Committer,
    state: Mutex<State>,
}

impl ClientContext for SinkContext {}

impl SinkContext {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for the background commit, if any, and books or keeps its buffer.
    fn settle(&self, state: &mut State) -> Result<(), SinkError> {
        let Some(in_flight) = state.in_flight.take() else {
            return Ok(());
        };
        let settled = self.runtime.block_on(in_flight.finish());
        state.table = settled.table;
        match (settled.result, settled.pending) {
            (Ok(()), Some(pending)) => state.record(&pending, settled.took),
            (Err(e), pending) => {
                state.failed = pending;
                return Err(e);
            }
            (Ok(()), None) => {}
        }
        Ok(())
    }

    /// Commits a failed buffer again, synchronously.
    fn retry_failed(&self, state: &mut State) -> Result<(), SinkError> {
        let Some(pending) = state.failed.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let expected = state.expected.clone();
        let table = state
            .table
            .as_mut()
            .ok_or_else(|| SinkError::Rebalance("the table is lost".into()))?;
        match self
            .runtime
            .block_on(self.committer.commit(table, &pending, &expected))
        {
            Ok(()) => {
                let took = started.elapsed();
                committed_log(table, &pending, took);
                state.record(&pending, took);
                Ok(())
            }
            Err(e) => {
                state.failed = Some(pending);
                Err(e)
            }
        }
    }

    /// Settles the previous commit, then starts committing the current buffer in the background.
    fn start_commit(&self, state: &mut State) -> Result<(), SinkError> {
        self.settle(state)?;
        self.retry_failed(state)?;
        if let Some(pending) = state.take_buffer()? {
            let table = state
                .table
                .take()
                .ok_or_else(|| SinkError::Rebalance("the table is lost".into()))?;
            let _guard = self.runtime.enter();
            state.in_flight = Some(self.committer.spawn(table, pending, state.expected.clone()));
        }
        Ok(())
    }

    /// Commits everything read so far and waits for it (before a revoke or a stop).
    fn commit_all(&self, state: &mut State) -> Result<(), SinkError> {
        self.start_commit(state)?;
        self.settle(state)
    }

    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        state: &mut State,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), SinkError> {
        self.settle(state)?;
        let topic = &self.committer.topic;
        let partitions: Vec<i32> = tpl
            .elements_for_topic(topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let positions = self.log_positions(state, &partitions)?;
        state.expected.clear();
        for &partition in &partitions {
            let position = positions.get(&partition).copied();
            state.expected.insert(partition, position);
            tpl.set_partition_offset(
                topic,
                partition,
                position.map_or(Offset::Beginning, Offset::Offset),
            )?;
        }
        tracing::info!(positions = ?state.expected, "partitions assigned; consuming from the Delta log's positions");
        consumer.assign(tpl)?;
        Ok(())
    }

    /// The Delta log's latest positions of `partitions`.
    fn log_positions(
        &self,
        state: &mut State,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, SinkError> {
        let topic = &self.committer.topic;
        let table = state
            .table
            .as_mut()
            .ok_or_else(|| SinkError::Rebalance("the table is lost".into()))?;
        self.runtime.block_on(async {
            table.update_state().await?;
            positions_in_log(table, topic, partitions).await
        })
    }

    /// At the end of `partition`: if the consumer stands past the last record it read
    /// (transaction markers, aborted records) or never read one because the partition's
    /// records all expired, buffer that position so the next commit records it, possibly in a
    /// commit without rows. A batch whose cut lies there would otherwise wait for ever.
    /// The end-of-partition event comes after every message and marker before it, so the
    /// consumer's position is current; after a seek it is unset until something is read.
    fn note_end_of_partition(
        &self,
        consumer: &BaseConsumer<Self>,
        state: &mut State,
        partition: i32,
    ) -> Result<(), SinkError> {
        let Some(&expected) = state.expected.get(&partition) else {
            return Ok(());
        };
        let topic = &self.committer.topic;
        let position = consumer
            .position()?
            .find_partition(topic, partition)
            .and_then(|element| match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
        let reached = match (position, expected) {
            (Some(offset), _) => offset,
            // Nothing read since the sink started at the log start: every earlier record expired.
            (None, None) => consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?.0,
            (None, Some(_)) => return Ok(()),
        };
        let known = state
            .next_offsets
            .get(&partition)
            .copied()
            .or(expected)
            .unwrap_or(0);
        if reached > known {
            tracing::debug!(partition, reached, known, "position past the last record read; recording it");
            state.next_offsets.insert(partition, reached);
        }
        Ok(())
    }

    /// After a fence: forget everything uncommitted and read again from the Delta log's positions.
    fn reseek(&self, consumer: &BaseConsumer<Self>, state: &mut State) -> Result<(), SinkError> {
        state.drop_uncommitted();
        let topic = &self.committer.topic;
        let assigned: Vec<i32> = state.expected.keys().copied().collect();
        let positions = self.log_positions(state, &assigned)?;
        for partition in assigned {
            let position = positions.get(&partition).copied();
            state.expected.insert(partition, position);
            consumer.seek(
                topic,
                partition,
                position.map_or(Offset::Beginning, Offset::Offset),
                Duration::from_secs(10),
            )?;
        }
        Ok(())
    }
}

impl ConsumerContext for SinkContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut state = self.state();
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            if let Err(e) = self.assign(consumer, &mut state, tpl) {
                state.fatal = Some(SinkError::Rebalance(e.to_string()));
            }
            return;
        }
        // Eager protocol: everything is revoked. Commit what was read while the partitions are
        // still ours; if that fails, drop it: the next owner reads it again from the log's positions.
        if let Err(e) = self.commit_all(&mut state) {
            tracing::warn!(error = %e, "commit on revoke failed; the next owner re-reads those records");
        }
        state.drop_uncommitted();
        state.expected.clear();
        tracing::info!("partitions revoked");
        if let Err(e) = consumer.unassign() {
            tracing::warn!(error = %e, "unassign failed");
        }
    }
}

/// Runs the sink until `stop` is set or an unrecoverable error occurs. Blocking: call it from
/// a plain thread; `runtime` runs the Delta and database calls.
pub fn run(
    settings: SinkSettings,
    pool: PgPool,
    runtime: Handle,
    stop: Arc<AtomicBool>,
) -> Result<SinkSummary, SinkError> {
    let table = runtime.block_on(open_or_create(
        &settings.table_uri,
        &settings.storage_options,
        &settings.schema,
    ))?;
    let rules = ValidationRules::of(&settings.schema);
    runtime.block_on(schemas::pg::check_validation_rules(&pool, &settings.topic, &rules))?;
    tracing::info!(fingerprint = rules.fingerprint(), "validation rules agree with the recorded ones");
    let context = SinkContext {
        runtime,
        committer: Committer {
            pool,
            topic: settings.topic.clone(),
            writer_properties: writer_properties(settings.compression),
            rules,
        },
        state: Mutex::new(State {
            table: Some(table),
            builder: BatchBuilder::new(&settings.schema),
            next_offsets: BTreeMap::new(),
            dead_letters: Vec::new(),
            buffered_bytes: 0,
            in_flight: None,
            failed: None,
            expected: BTreeMap::new(),
            summary: SinkSummary::default(),
            fatal: None,
        }),
    };
    let consumer: BaseConsumer<SinkContext> = settings
        .client
        .clone()
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "true")
        .set("partition.assignment.strategy", "range")
        .create_with_context(context)?;
    consumer.subscribe(&[&settings.topic])?;
    tracing::info!(
        topic = settings.topic,
        group = settings.group,
        table = settings.table_uri,
        "sink consuming"
    );

    let mut last_commit = Instant::now();
    let mut backoff = Duration::from_millis(200);
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
        match polled {
            Some(Ok(message)) => {
                let partition = message.partition();
                if !state.expected.contains_key(&partition) {
                    continue;
                }
                state.summary.consumed += 1;
                metrics::counter!(m::RECORDS_CONSUMED_TOTAL).increment(1);
                let payload = message.payload().unwrap_or_default();
                state.buffered_bytes += payload.len() as u64;
                match settings.schema.validate(payload) {
                    Ok(record) => {
                        let now = chrono::Utc::now().timestamp_micros();
                        state.builder.append(
                            &record,
                            &settings.topic,
                            partition,
                            message.offset(),
                            now,
                            message.key(),
                        );
                    }
                    Err(rejection) => {
                        let letter = DeadLetter::new(
                            partition,
                            message.offset(),
                            rejection,
                            payload,
                            settings.dead_letter_max_payload_bytes,
                        );
                        state.dead_letters.push(letter);
                    }
                }
                state.next_offsets.insert(partition, message.offset() + 1);
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                return Err(SinkError::Rebalance(format!(
                    "a position of {} is out of range: Kafka has deleted records the sink has not written (retention); \
                     nothing was skipped; the master dataset would have a gap",
                    settings.topic
                )));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if let Err(error) = ctx.note_end_of_partition(&consumer, &mut state, partition) {
                    tracing::warn!(%error, partition, "could not read the position at the end of a partition; trying again at its next end");
                }
            }
            Some(Err(error)) => tracing::warn!(%error, "kafka reported an error; continuing"),
            None => {}
        }
        let due = state.buffered_bytes >= settings.flush_max_bytes
            || last_commit.elapsed() >= settings.flush_interval
            || stopping;
        if !due {
            continue;
        }
        let result = if stopping {
            ctx.commit_all(&mut state)
        } else {
            ctx.start_commit(&mut state)
        };
        match result {
            Ok(()) => {
                last_commit = Instant::now();
                backoff = Duration::from_millis(200);
                if stopping {
                    tracing::info!(summary = ?state.summary, "sink stopped cleanly");
                    return Ok(state.summary.clone());
                }
            }
            Err(SinkError::Fenced { partitions }) => {
                tracing::warn!(
                    ?partitions,
                    "commit fenced; re-reading from the Delta log's positions"
                );
                ctx.reseek(&consumer, &mut state)?;
            }
            Err(error) if error.is_retryable() => {
                metrics::counter!(m::COMMIT_RETRIES_TOTAL).increment(1);
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "commit failed; nothing was committed; retrying");
                drop(state);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
}
