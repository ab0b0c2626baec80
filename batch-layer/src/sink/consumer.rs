//! The Kafka side of the sink: one thread polls, validates and buffers; commits go through the
//! runtime's handle. Positions come from the Delta log and are set in the rebalance callback.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::config::Compression;
use schemas::pg::{self, DeadLetter, Layer};
use sqlx::PgPool;
use tokio::runtime::Handle;

use super::columns::BatchBuilder;
use super::metrics as m;
use super::table::{app_id, open_or_create, positions_in_log};
use super::{SinkError, SinkSettings, SinkSummary};

struct State {
    table: DeltaTable,
    builder: BatchBuilder,
    /// The finished batch of a commit that failed and will be retried.
    pending: Option<RecordBatch>,
    next_offsets: BTreeMap<i32, i64>,
    dead_letters: Vec<DeadLetter>,
    buffered_bytes: u64,
    /// The Delta log's position of every assigned partition (`None`: never committed).
    expected: BTreeMap<i32, Option<i64>>,
    summary: SinkSummary,
    fatal: Option<SinkError>,
}

impl State {
    fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    fn clear(&mut self) {
        let _ = self.builder.finish();
        self.pending = None;
        self.next_offsets.clear();
        self.dead_letters.clear();
        self.buffered_bytes = 0;
    }
}

struct SinkContext {
    pool: PgPool,
    runtime: Handle,
    topic: String,
    writer_properties: WriterProperties,
    state: Mutex<State>,
}

impl ClientContext for SinkContext {}

impl SinkContext {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes and commits the buffer: dead letters first (idempotent), then one Delta commit
    /// with the Parquet files and one application transaction per partition.
    fn commit(&self, state: &mut State) -> Result<bool, SinkError> {
        if state.is_empty() {
            return Ok(false);
        }
        let started = Instant::now();
        let batch = match state.pending.take() {
            Some(batch) => batch,
            None => state.builder.finish()?,
        };
        let result = self.runtime.block_on(self.write_and_commit(state, &batch));
        if result.is_err() {
            state.pending = Some(batch);
            return result.map(|_| false);
        }
        let rows = batch.num_rows() as u64;
        for letter in &state.dead_letters {
            metrics::counter!(m::DEAD_LETTERS_TOTAL, "reason" => letter.rejection.code())
                .increment(1);
        }
        metrics::counter!(m::RECORDS_COMMITTED_TOTAL).increment(rows);
        metrics::counter!(m::INPUT_BYTES_TOTAL).increment(state.buffered_bytes);
        metrics::histogram!(m::COMMIT_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
        state.summary.committed_records += rows;
        state.summary.dead_letters += state.dead_letters.len() as u64;
        state.summary.commits += 1;
        let committed: Vec<(i32, i64)> = state.next_offsets.iter().map(|(&p, &o)| (p, o)).collect();
        for (partition, offset) in committed {
            state.expected.insert(partition, Some(offset));
        }
        tracing::debug!(rows, version = ?state.table.version(), seconds = started.elapsed().as_secs_f64(), "committed");
        state.clear();
        Ok(true)
    }

    async fn write_and_commit(
        &self,
        state: &mut State,
        batch: &RecordBatch,
    ) -> Result<(), SinkError> {
        if !state.dead_letters.is_empty() {
            let mut tx = self.pool.begin().await?;
            pg::insert_dead_letters(&mut tx, Layer::Sink, &self.topic, &state.dead_letters).await?;
            tx.commit().await?;
        }
        state.table.update_state().await?;
        let partitions: Vec<i32> = state.next_offsets.keys().copied().collect();
        let in_log = positions_in_log(&state.table, &self.topic, &partitions).await?;
        let moved: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| in_log.get(p).copied() != state.expected.get(p).copied().flatten())
            .collect();
        if !moved.is_empty() {
            return Err(SinkError::Fenced { partitions: moved });
        }
        let transactions: Vec<Transaction> = state
            .next_offsets
            .iter()
            .map(|(&partition, &next)| Transaction::new(app_id(&self.topic, partition), next))
            .collect();
        let mut writer = RecordBatchWriter::for_table(&state.table)?
            .with_writer_properties(self.writer_properties.clone())
            .with_commit_properties(
                CommitProperties::default().with_application_transactions(transactions),
            );
        if batch.num_rows() > 0 {
            writer.write(batch.clone()).await?;
        }
        writer.flush_and_commit(&mut state.table).await?;
        Ok(())
    }

    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        state: &mut State,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), SinkError> {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let positions = self.runtime.block_on(async {
            state.table.update_state().await?;
            positions_in_log(&state.table, &self.topic, &partitions).await
        })?;
        state.expected.clear();
        for &partition in &partitions {
            let position = positions.get(&partition).copied();
            state.expected.insert(partition, position);
            let offset = position.map_or(Offset::Beginning, Offset::Offset);
            tpl.set_partition_offset(&self.topic, partition, offset)?;
        }
        tracing::info!(positions = ?state.expected, "partitions assigned; consuming from the Delta log's positions");
        consumer.assign(tpl)?;
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
        if let Err(e) = self.commit(&mut state) {
            tracing::warn!(error = %e, "commit on revoke failed; the next owner re-reads those records");
        }
        state.clear();
        state.expected.clear();
        tracing::info!("partitions revoked");
        if let Err(e) = consumer.unassign() {
            tracing::warn!(error = %e, "unassign failed");
        }
    }
}

fn writer_properties(compression: Compression) -> WriterProperties {
    let codec = match compression {
        Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
        Compression::Snappy => ParquetCompression::SNAPPY,
    };
    WriterProperties::builder().set_compression(codec).build()
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
    let context = SinkContext {
        pool,
        runtime,
        topic: settings.topic.clone(),
        writer_properties: writer_properties(settings.compression),
        state: Mutex::new(State {
            table,
            builder: BatchBuilder::new(&settings.schema),
            pending: None,
            next_offsets: BTreeMap::new(),
            dead_letters: Vec::new(),
            buffered_bytes: 0,
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
            Some(Err(error)) => tracing::warn!(%error, "kafka reported an error; continuing"),
            None => {}
        }
        let due = state.buffered_bytes >= settings.flush_max_bytes
            || last_commit.elapsed() >= settings.flush_interval
            || stopping;
        if !due {
            continue;
        }
        match ctx.commit(&mut state) {
            Ok(_) => {
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
                state.clear();
                let assigned: Vec<i32> = state.expected.keys().copied().collect();
                let positions = ctx.runtime.block_on(async {
                    state.table.update_state().await?;
                    positions_in_log(&state.table, &settings.topic, &assigned).await
                })?;
                for partition in assigned {
                    let position = positions.get(&partition).copied();
                    state.expected.insert(partition, position);
                    consumer.seek(
                        &settings.topic,
                        partition,
                        position.map_or(Offset::Beginning, Offset::Offset),
                        Duration::from_secs(10),
                    )?;
                }
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
