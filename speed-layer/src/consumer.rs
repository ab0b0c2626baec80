//! The speed layer as a layer of the ingest loop (`ingest::consumer`): its positions live in
//! PostgreSQL, stored in the same transaction as the aggregates they cover; its buffer is the
//! micro-batch. A partition without a stored position starts at Kafka's first offset, which is
//! stored first, so every cut offset is a position the layer stood at.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ingest::{
    Buffered, Committed, Disposition, IngestError, IngestSettings, Layer, Received, StartAt,
};
use schemas::Record;
use schemas::pg::{self, DeadLetter};
use schemas::validation_rules::ValidationRules;
use schemas::view::View;
use sqlx::PgPool;
use tokio::runtime::Handle;

use crate::aggregate::MicroBatch;
use crate::error::SpeedError;
use crate::flush::{ViewWriter, flush};
use crate::metrics as m;
use schemas::position::{Offset, Partition, Positions};

/// What the speed layer needs to run.
#[derive(Debug, Clone)]
pub struct SpeedSettings {
    /// The ingest loop's settings (topic, group, flush interval and size, schema).
    pub ingest: IngestSettings,
    /// The views to maintain.
    pub views: Vec<View>,
}

/// Totals of one run.
pub type SpeedSummary = ingest::consumer::Summary;

/// The speed layer's store and buffer.
struct SpeedLayer {
    pool: PgPool,
    runtime: Handle,
    /// The validation rules this process runs; checked against the recorded ones per flush.
    rules: ValidationRules,
    topic: String,
    writers: Vec<ViewWriter>,
    batch: MicroBatch,
    /// The stored position of every assigned partition, as of this process's last write.
    expected: Positions,
}

impl SpeedLayer {
    /// The stored positions of `partitions`; a partition without one starts at the log start,
    /// which is stored first.
    fn positions_for(
        &self,
        partitions: &[Partition],
        low_watermark: &mut dyn FnMut(i32) -> Result<i64, IngestError>,
    ) -> Result<Positions, SpeedError> {
        let stored = self
            .runtime
            .block_on(pg::load_positions(&self.pool, &self.topic))?;
        let mut positions = BTreeMap::new();
        for &partition in partitions {
            let position = match stored.get(&partition) {
                Some(&offset) => offset,
                None => {
                    let low = low_watermark(partition)?;
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

    fn starts(&self) -> BTreeMap<Partition, StartAt> {
        self.expected
            .iter()
            .map(|(&p, &o)| (p, StartAt::Offset(o)))
            .collect()
    }
}

impl Layer for SpeedLayer {
    type Error = SpeedError;
    const NAME: &'static str = "speed";
    const RETENTION_REMEDY: &'static str = "Move the speed layer past the gap deliberately \
        (braid recover --from-lake) so the next batch run covers it from the lake";

    fn classify(error: &SpeedError) -> Disposition {
        match error {
            SpeedError::Fenced(_) => Disposition::Fenced,
            SpeedError::Database(db) if pg::is_data_error(db) => Disposition::DataRefused,
            other if other.is_retryable() => Disposition::Retryable,
            _ => Disposition::Fatal,
        }
    }

    fn refusal_detail(error: &SpeedError) -> String {
        match error {
            SpeedError::Database(db) => pg::database_message(db),
            other => other.to_string(),
        }
    }

    fn assign(
        &mut self,
        partitions: &[Partition],
        low_watermark: &mut dyn FnMut(i32) -> Result<i64, IngestError>,
    ) -> Result<BTreeMap<Partition, StartAt>, SpeedError> {
        self.expected = self.positions_for(partitions, low_watermark)?;
        Ok(self.starts())
    }

    fn is_assigned(&self, partition: Partition) -> bool {
        self.expected.contains_key(&partition)
    }

    fn has_position(&self, partition: Partition) -> bool {
        self.expected.contains_key(&partition)
    }

    fn add_record(&mut self, message: &Received<'_>, record: &Record) {
        self.batch
            .add_record(message.partition, message.offset, record);
    }

    fn add_dead_letter(&mut self, letter: DeadLetter) {
        self.batch.add_dead_letter(letter);
    }

    fn skip_to(&mut self, partition: Partition, position: Offset) {
        let known = self
            .batch
            .next_offsets
            .get(&partition)
            .or(self.expected.get(&partition))
            .copied()
            .unwrap_or(0);
        if position > known {
            self.batch.next_offsets.insert(partition, position);
        }
    }

    fn buffered(&self) -> Buffered {
        Buffered {
            records: self.batch.len(),
            bytes: 0,
        }
    }

    fn buffered_ends(&self) -> Positions {
        self.batch.next_offsets.clone()
    }

    /// Writes the micro-batch in one transaction with its positions and dead letters. On
    /// success the expected positions move forward and the batch is emptied; on failure the
    /// batch is kept and the error returned.
    fn commit(&mut self) -> Result<Option<Committed>, SpeedError> {
        if self.batch.is_empty() {
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
            &self.batch,
            &self.expected,
        ))?;
        self.expected
            .extend(self.batch.next_offsets.iter().map(|(&p, &o)| (p, o)));
        metrics::counter!(m::ROWS_UPSERTED_TOTAL).increment(outcome.rows as u64);
        tracing::debug!(
            epoch = outcome.epoch,
            rows = outcome.rows,
            records = outcome.records,
            dead_letters = outcome.dead_letters,
            seconds = outcome.duration.as_secs_f64(),
            "flushed"
        );
        let committed = Committed {
            records: outcome.records,
            dead_letters: self
                .batch
                .dead_letters
                .iter()
                .map(|l| l.rejection.code())
                .collect(),
            took: outcome.duration,
        };
        self.batch.clear();
        Ok(Some(committed))
    }

    fn commit_all(&mut self) -> Result<Option<Committed>, SpeedError> {
        self.commit()
    }

    fn drop_uncommitted(&mut self) {
        self.batch.clear();
    }

    fn reload(&mut self) -> Result<BTreeMap<Partition, StartAt>, SpeedError> {
        let stored = self
            .runtime
            .block_on(pg::load_positions(&self.pool, &self.topic))?;
        for (partition, expected) in self.expected.iter_mut() {
            if let Some(&position) = stored.get(partition) {
                *expected = position;
            }
        }
        Ok(self.starts())
    }

    fn revoked(&mut self) {
        self.expected.clear();
    }

    fn positions(&self) -> BTreeMap<Partition, StartAt> {
        self.starts()
    }

    fn follows_moved_positions(&self) -> bool {
        true
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
    let topic = settings.ingest.topic.clone();
    let rules = runtime.block_on(pg::agreed_rules(&pool, &topic, &settings.ingest.schema))?;
    tracing::info!(views = settings.views.len(), "speed layer starting");
    let layer = SpeedLayer {
        pool,
        runtime,
        rules,
        topic,
        writers: settings.views.iter().map(ViewWriter::new).collect(),
        batch: MicroBatch::new(&settings.views),
        expected: BTreeMap::new(),
    };
    ingest::run(settings.ingest, layer, stop)
}
