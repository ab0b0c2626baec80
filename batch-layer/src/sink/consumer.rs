//! The sink as a layer of the ingest loop (`ingest::consumer`): its positions live in the Delta
//! log (one application transaction per partition); its buffer is an Arrow batch. Commits run
//! in the background, one at a time (see [`super::commit`]): the next commit first settles the
//! previous one, while the loop's thread fills the next buffer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use ingest::{Buffered, Committed, Disposition, IngestError, Layer, Received, StartAt};
use schemas::Record;
use schemas::pg::DeadLetter;
use sqlx::PgPool;
use tokio::runtime::Handle;

use super::columns::BatchBuilder;
use super::commit::{Committer, InFlight, Pending, committed_log};
use super::{SinkError, SinkSettings, SinkSummary, writer_properties};
use crate::lake::positions_in_log;
use schemas::position::{Offset, Partition, Positions};

/// The sink's store and buffer.
struct SinkLayer {
    runtime: Handle,
    committer: Committer,
    /// The table; `None` while a background commit owns it.
    table: Option<DeltaTable>,
    builder: BatchBuilder,
    next_offsets: Positions,
    dead_letters: Vec<DeadLetter>,
    buffered: Buffered,
    /// When the buffer took its first record: every record of a buffer is stamped
    /// `_ingested_at` with it, so the clock is read once per buffer, not per record.
    buffer_started_micros: Option<i64>,
    /// The commit running in the background, if any.
    in_flight: Option<InFlight>,
    /// A buffer whose commit failed and must be retried before any later one.
    failed: Option<Pending>,
    /// The Delta log's position of every assigned partition (`None`: never committed).
    expected: BTreeMap<Partition, Option<Offset>>,
}

/// What a committed buffer wrote, for the loop.
fn committed_of(pending: &Pending, took: Duration) -> Committed {
    Committed {
        records: pending.batch.num_rows() as u64,
        dead_letters: pending
            .dead_letters
            .iter()
            .map(|l| l.rejection.code())
            .collect(),
        took,
    }
}

impl SinkLayer {
    fn table(&mut self) -> Result<&mut DeltaTable, SinkError> {
        self.table.as_mut().ok_or(SinkError::TableLost)
    }

    /// Takes the buffer as a commit-ready batch, or `None` if nothing was read.
    fn take_buffer(&mut self) -> Result<Option<Pending>, SinkError> {
        if self.next_offsets.is_empty() {
            return Ok(None);
        }
        self.buffer_started_micros = None;
        let pending = Pending {
            batch: self.builder.finish()?,
            next_offsets: std::mem::take(&mut self.next_offsets),
            dead_letters: std::mem::take(&mut self.dead_letters),
            input_bytes: std::mem::take(&mut self.buffered).bytes,
        };
        Ok(Some(pending))
    }

    /// Books a committed buffer: the expected positions move.
    fn record(&mut self, pending: &Pending) {
        for (&partition, &offset) in &pending.next_offsets {
            self.expected.insert(partition, Some(offset));
        }
    }

    /// Waits for the background commit, if any, and books or keeps its buffer.
    fn settle(&mut self) -> Result<Option<Committed>, SinkError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(None);
        };
        let settled = self.runtime.block_on(in_flight.finish());
        self.table = settled.table;
        match (settled.result, settled.pending) {
            (Ok(()), Some(pending)) => {
                self.record(&pending);
                Ok(Some(committed_of(&pending, settled.took)))
            }
            (Err(e), pending) => {
                self.failed = pending;
                Err(e)
            }
            (Ok(()), None) => Ok(None),
        }
    }

    /// Commits a failed buffer again, synchronously.
    fn retry_failed(&mut self) -> Result<Option<Committed>, SinkError> {
        let Some(pending) = self.failed.take() else {
            return Ok(None);
        };
        let started = Instant::now();
        let expected = self.expected.clone();
        let committer = self.committer.clone();
        let runtime = self.runtime.clone();
        let table = self.table()?;
        match runtime.block_on(committer.commit(table, &pending, &expected)) {
            Ok(()) => {
                let took = started.elapsed();
                committed_log(table, &pending, took);
                self.record(&pending);
                Ok(Some(committed_of(&pending, took)))
            }
            Err(e) => {
                self.failed = Some(pending);
                Err(e)
            }
        }
    }

    /// The Delta log's latest positions of `partitions`.
    fn log_positions(&mut self, partitions: &[Partition]) -> Result<Positions, SinkError> {
        let topic = self.committer.topic.clone();
        let runtime = self.runtime.clone();
        let table = self.table()?;
        runtime.block_on(async {
            table.update_state().await?;
            Ok(positions_in_log(table, &topic, partitions).await?)
        })
    }

    fn starts(&self) -> BTreeMap<Partition, StartAt> {
        self.expected
            .iter()
            .map(|(&p, &o)| (p, o.map_or(StartAt::Beginning, StartAt::Offset)))
            .collect()
    }
}

impl Layer for SinkLayer {
    type Error = SinkError;
    const NAME: &'static str = "sink";
    const RETENTION_REMEDY: &'static str = "The master dataset would have a gap there: produce \
        those records again, or accept the gap deliberately by moving the sink's consumer past it";

    fn classify(error: &SinkError) -> Disposition {
        match error {
            SinkError::Fenced { .. } => Disposition::Fenced,
            other if other.is_retryable() => Disposition::Retryable,
            _ => Disposition::Fatal,
        }
    }

    fn assign(
        &mut self,
        partitions: &[Partition],
        _low_watermark: &mut dyn FnMut(i32) -> Result<i64, IngestError>,
    ) -> Result<BTreeMap<Partition, StartAt>, SinkError> {
        self.settle()?;
        let positions = self.log_positions(partitions)?;
        self.expected = partitions
            .iter()
            .map(|p| (*p, positions.get(p).copied()))
            .collect();
        Ok(self.starts())
    }

    fn is_assigned(&self, partition: Partition) -> bool {
        self.expected.contains_key(&partition)
    }

    fn has_position(&self, partition: Partition) -> bool {
        self.expected.get(&partition).is_some_and(Option::is_some)
    }

    fn add_record(&mut self, message: &Received<'_>, record: &Record) {
        let ingested_at = *self
            .buffer_started_micros
            .get_or_insert_with(|| chrono::Utc::now().timestamp_micros());
        self.builder.append(
            record,
            &self.committer.topic,
            message.partition,
            message.offset,
            ingested_at,
            message.key,
        );
        self.buffered.records += 1;
        self.buffered.bytes += message.payload.len() as u64;
        self.next_offsets
            .insert(message.partition, message.offset + 1);
    }

    fn add_dead_letter(&mut self, letter: DeadLetter) {
        self.buffered.records += 1;
        self.buffered.bytes += letter.payload_len.max(0) as u64;
        self.next_offsets
            .insert(letter.partition, letter.offset + 1);
        self.dead_letters.push(letter);
    }

    fn skip_to(&mut self, partition: Partition, position: Offset) {
        let known = self
            .next_offsets
            .get(&partition)
            .copied()
            .or(self.expected.get(&partition).copied().flatten())
            .unwrap_or(0);
        if position > known {
            tracing::debug!(
                partition,
                position,
                known,
                "position past the last record read; recording it"
            );
            self.next_offsets.insert(partition, position);
        }
    }

    fn buffered(&self) -> Buffered {
        self.buffered
    }

    fn buffered_ends(&self) -> Positions {
        self.next_offsets.clone()
    }

    /// Settles the previous commit, retries a failed one, then starts committing the current
    /// buffer in the background.
    fn commit(&mut self) -> Result<Option<Committed>, SinkError> {
        let settled = self.settle()?;
        let retried = self.retry_failed()?;
        if let Some(pending) = self.take_buffer()? {
            let table = self.table.take().ok_or(SinkError::TableLost)?;
            let _guard = self.runtime.enter();
            self.in_flight = Some(self.committer.spawn(table, pending, self.expected.clone()));
        }
        Ok(Committed::combine(settled, retried))
    }

    fn commit_all(&mut self) -> Result<Option<Committed>, SinkError> {
        let started = self.commit()?;
        Ok(Committed::combine(started, self.settle()?))
    }

    fn drop_uncommitted(&mut self) {
        let _ = self.builder.finish();
        self.next_offsets.clear();
        self.dead_letters.clear();
        self.buffered = Buffered::default();
        self.buffer_started_micros = None;
        self.failed = None;
    }

    fn reload(&mut self) -> Result<BTreeMap<Partition, StartAt>, SinkError> {
        // Take the table back from a commit still in flight. Whatever it did not commit is
        // read again from the log's positions, so a failed buffer must not be retried later.
        if let Err(error) = self.settle() {
            tracing::warn!(%error, "a commit in flight failed; its records are read again from the log's positions");
        }
        self.failed = None;
        let assigned: Vec<i32> = self.expected.keys().copied().collect();
        let positions = self.log_positions(&assigned)?;
        for partition in assigned {
            self.expected
                .insert(partition, positions.get(&partition).copied());
        }
        Ok(self.starts())
    }

    fn revoked(&mut self) {
        self.expected.clear();
    }

    fn positions(&self) -> BTreeMap<Partition, StartAt> {
        self.starts()
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
    let topic = settings.ingest.topic.clone();
    let rules = runtime.block_on(schemas::pg::agreed_rules(
        &pool,
        &topic,
        &settings.ingest.schema,
    ))?;
    let table = runtime.block_on(settings.lake.open())?;
    tracing::info!(table = settings.lake.uri(), "sink starting");
    let layer = SinkLayer {
        runtime,
        committer: Committer {
            pool,
            topic,
            writer_properties: writer_properties(settings.compression),
            rules,
        },
        table: Some(table),
        builder: BatchBuilder::new(&settings.ingest.schema),
        next_offsets: BTreeMap::new(),
        dead_letters: Vec::new(),
        buffered: Buffered::default(),
        buffer_started_micros: None,
        in_flight: None,
        failed: None,
        expected: BTreeMap::new(),
    };
    ingest::run(settings.ingest, layer, stop)
}
