//! The sink as a layer of the ingest loop (`ingest::consumer`): its store is the Delta table,
//! whose log holds the positions (one application transaction per partition); its buffer is
//! an Arrow batch. Commits run in the background, one at a time (`ingest::pipeline`): the next
//! commit first settles the previous one, while the loop's thread fills the next buffer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use deltalake::DeltaTable;
use ingest::{Buffer, Buffered, Disposition, Expected, IngestError, Received, Store};
use schemas::Record;
use schemas::pg::DeadLetter;
use sqlx::PgPool;
use tokio::runtime::Handle;

use super::columns::BatchBuilder;
use super::commit::{Committer, Pending, committed_log};
use super::{SinkError, SinkSettings, SinkSummary, writer_properties};
use crate::lake::positions_in_log;
use schemas::position::{Offset, Partition, Positions};

/// The sink's store: the Delta table, whose log holds the positions (moved into the background
/// task while a commit runs).
struct SinkStore {
    committer: Committer,
    table: DeltaTable,
}

impl Store for SinkStore {
    type Buffer = SinkBuffer;
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

    /// The Delta log's latest positions of `partitions` (`None`: never committed; read from
    /// the log start).
    async fn load(
        &mut self,
        partitions: &[Partition],
        _low_watermark: &mut dyn FnMut(Partition) -> Result<Offset, IngestError>,
    ) -> Result<BTreeMap<Partition, Option<Offset>>, SinkError> {
        self.table.update_state().await?;
        let positions = positions_in_log(&self.table, &self.committer.topic, partitions).await?;
        Ok(partitions
            .iter()
            .map(|p| (*p, positions.get(p).copied()))
            .collect())
    }

    async fn write(&mut self, pending: &Pending, expected: &Expected) -> Result<(), SinkError> {
        let started = Instant::now();
        self.committer
            .commit(&mut self.table, pending, expected)
            .await?;
        committed_log(&self.table, pending, started.elapsed());
        Ok(())
    }
}

/// The sink's buffer: an Arrow batch, its positions and dead letters.
struct SinkBuffer {
    topic: String,
    builder: BatchBuilder,
    next_offsets: Positions,
    dead_letters: Vec<DeadLetter>,
    buffered: Buffered,
    /// When the buffer took its first record: every record of a buffer is stamped
    /// `_ingested_at` with it, so the clock is read once per buffer, not per record.
    buffer_started_micros: Option<i64>,
}

impl ingest::Taken for Pending {
    fn ends(&self) -> &Positions {
        &self.next_offsets
    }

    fn records(&self) -> u64 {
        self.batch.num_rows() as u64
    }

    fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }
}

impl Buffer for SinkBuffer {
    type Taken = Pending;
    type Error = SinkError;

    fn add_record(&mut self, message: &Received<'_>, record: &Record) {
        let ingested_at = *self
            .buffer_started_micros
            .get_or_insert_with(|| chrono::Utc::now().timestamp_micros());
        self.builder.append(
            record,
            &self.topic,
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
        self.next_offsets.insert(partition, position);
    }

    fn size(&self) -> Buffered {
        self.buffered
    }

    fn ends(&self) -> &Positions {
        &self.next_offsets
    }

    /// The buffer as a commit-ready batch, or `None` if nothing was read.
    fn take(&mut self) -> Result<Option<Pending>, SinkError> {
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

    fn clear(&mut self) {
        let _ = self.builder.finish();
        self.next_offsets.clear();
        self.dead_letters.clear();
        self.buffered = Buffered::default();
        self.buffer_started_micros = None;
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
    let buffer = SinkBuffer {
        topic: topic.clone(),
        builder: BatchBuilder::new(&settings.ingest.schema),
        next_offsets: BTreeMap::new(),
        dead_letters: Vec::new(),
        buffered: Buffered::default(),
        buffer_started_micros: None,
    };
    let store = SinkStore {
        committer: Committer {
            pool,
            topic,
            writer_properties: writer_properties(settings.compression),
            rules,
        },
        table,
    };
    ingest::run(settings.ingest, store, buffer, runtime, stop)
}
