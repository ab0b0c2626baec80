//! The sink as a layer of the ingest loop (`ingest::consumer`): its store is the Delta table,
//! whose log holds the positions (one application transaction per partition); its buffer is
//! an Arrow batch. Commits run in the background, one at a time (`ingest::pipeline`): the next
//! commit first settles the previous one, while the loop's thread fills the next buffer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    /// Messages, and for the flush bound (`sink.flush_max_bytes`) each record's input bytes or
    /// its bytes in the columns, whichever is more: a compact format (Avro) holds more records
    /// per input byte, and the columns are what the buffer keeps in memory.
    buffered: Buffered,
    /// The input bytes alone (logged with each commit).
    input_bytes: u64,
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
        let input = message.payload.len() as u64;
        let in_columns = column_bytes(record, self.topic.len(), message.key);
        self.buffered.records += 1;
        self.buffered.bytes += input.max(in_columns);
        self.input_bytes += input;
        self.next_offsets
            .insert(message.partition, message.offset + 1);
    }

    fn add_dead_letter(&mut self, letter: DeadLetter) {
        self.buffered.records += 1;
        self.buffered.bytes += letter.payload_len.max(0) as u64;
        self.input_bytes += letter.payload_len.max(0) as u64;
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
            input_bytes: {
                self.buffered = Buffered::default();
                std::mem::take(&mut self.input_bytes)
            },
        };
        Ok(Some(pending))
    }

    fn clear(&mut self) {
        let _ = self.builder.finish();
        self.next_offsets.clear();
        self.dead_letters.clear();
        self.buffered = Buffered::default();
        self.input_bytes = 0;
        self.buffer_started_micros = None;
    }
}

/// About the bytes a record adds to the buffer's columns: its values (text by length, numbers
/// and instants 8 bytes, booleans 1) and the derived columns (topic, partition, offset, key,
/// `_ingested_at`), each with Arrow's 4-byte offset for variable-length values.
fn column_bytes(record: &Record, topic_bytes: usize, key: Option<&[u8]>) -> u64 {
    let values: usize = record
        .values
        .iter()
        .flatten()
        .map(|value| match value {
            schemas::Value::String(text) => text.len() + 4,
            schemas::Value::Bool(_) => 1,
            schemas::Value::I64(_) | schemas::Value::F64(_) | schemas::Value::Timestamp(_) => 8,
        })
        .sum();
    let derived = topic_bytes + 4 + 4 + 8 + 8 + key.map_or(0, |key| key.len() + 4) + 4;
    (values + derived) as u64
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
    let Some(table) = open_lake_waiting(&settings.lake, &runtime, &stop)? else {
        return Ok(SinkSummary::default()); // stopped while the store was out
    };
    tracing::info!(table = settings.lake.uri(), "sink starting");
    let buffer = SinkBuffer {
        topic: topic.clone(),
        builder: BatchBuilder::new(&settings.ingest.schema),
        next_offsets: BTreeMap::new(),
        dead_letters: Vec::new(),
        buffered: Buffered::default(),
        input_bytes: 0,
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

/// The first wait after the lake's store failed at start; it doubles up to [`OPEN_WAIT_MAX`].
const OPEN_WAIT_FIRST: Duration = Duration::from_millis(500);
const OPEN_WAIT_MAX: Duration = Duration::from_secs(30);

/// Opens the lake, waiting out a store that is unreachable or failing (full, down, slow) for as
/// long as it lasts, as a running sink waits out a failed commit; an error that waiting cannot
/// mend (the configuration's) is returned. `None`: `stop` was set while waiting.
fn open_lake_waiting(
    lake: &crate::lake::Lake,
    runtime: &Handle,
    stop: &AtomicBool,
) -> Result<Option<DeltaTable>, SinkError> {
    let mut wait = OPEN_WAIT_FIRST;
    loop {
        match runtime.block_on(lake.open()) {
            Ok(table) => return Ok(Some(table)),
            Err(error) if error.is_retryable() => {
                tracing::warn!(
                    table = lake.uri(),
                    %error,
                    retry_in_ms = wait.as_millis() as u64,
                    "cannot open the lake: the sink waits for its store and tries again"
                );
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(50).min(wait));
                }
                wait = (wait * 2).min(OPEN_WAIT_MAX);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(schema: &schemas::EventSchema) -> SinkBuffer {
        SinkBuffer {
            topic: "clicks".into(),
            builder: BatchBuilder::new(schema),
            next_offsets: BTreeMap::new(),
            dead_letters: Vec::new(),
            buffered: Buffered::default(),
            input_bytes: 0,
            buffer_started_micros: None,
        }
    }

    /// The flush bound counts what the buffer holds: a record's input bytes, or its bytes in
    /// the columns when the input is more compact (Avro), so that a compact format does not
    /// fill the buffer with more records than JSON would. The commit still logs the input.
    #[test]
    fn a_compact_payload_counts_its_bytes_in_the_columns() {
        let config = schemas::BraidConfig::load_from(
            Some(("braid.toml", include_str!("../../../braid.toml"))),
            [],
        )
        .unwrap();
        let json = br#"{"event_id":"e-1","ts":"2026-01-01T00:00:00Z","event_type":"page_view","user_id":"u-1","page":"/home/1","country":"NL","device":"mobile","duration_ms":120}"#;
        let record = config.schema.validate(json).unwrap();
        let in_columns = column_bytes(&record, "clicks".len(), Some(b"u-1"));
        assert!(
            in_columns < json.len() as u64,
            "JSON input is larger than its columns, so JSON topics flush as before"
        );
        let mut buffer = buffer(&config.schema);
        let received = |offset, payload: &'static [u8]| Received {
            partition: 0,
            offset,
            key: Some(b"u-1"),
            payload,
        };
        buffer.add_record(&received(0, json), &record);
        assert_eq!(buffer.size().bytes, json.len() as u64);
        // The same record from a 40-byte Avro datum: counted by its columns.
        buffer.add_record(&received(1, &[0u8; 40]), &record);
        assert_eq!(buffer.size().bytes, json.len() as u64 + in_columns);
        assert!(in_columns > 40);
        let pending = buffer.take().unwrap().unwrap();
        assert_eq!(pending.input_bytes, json.len() as u64 + 40);
        assert_eq!(buffer.size(), Buffered::default());
    }
}
