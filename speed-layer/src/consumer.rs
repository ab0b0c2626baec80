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
use crate::flush::{FlushOutcome, ViewWriter};
use crate::in_flight::{Flusher, InFlight};
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
    runtime: Handle,
    /// The database, the topic, the rules and the upserts every flush uses.
    flusher: Flusher,
    /// The micro-batch being read.
    batch: MicroBatch,
    /// The flush running in the background, if any.
    in_flight: Option<InFlight>,
    /// A batch whose flush failed and must be written before any later one.
    failed: Option<MicroBatch>,
    /// An emptied batch to read the next one into (keeps its allocations).
    spare: Option<MicroBatch>,
    /// A flush that ended outside `commit` (settled by `reload` or `assign`), reported by the
    /// next `commit`.
    unreported: Option<Committed>,
    /// The stored position of every assigned partition, as of this process's last write.
    expected: Positions,
}

impl SpeedLayer {
    fn new(
        pool: PgPool,
        topic: String,
        rules: ValidationRules,
        views: &[View],
        runtime: Handle,
    ) -> Self {
        Self {
            runtime,
            flusher: Flusher {
                pool,
                topic,
                rules,
                writers: views.iter().map(ViewWriter::new).collect(),
            },
            batch: MicroBatch::new(views),
            in_flight: None,
            failed: None,
            spare: None,
            unreported: None,
            expected: BTreeMap::new(),
        }
    }

    /// The stored positions of `partitions`; a partition without one starts at the log start,
    /// which is stored first.
    fn positions_for(
        &self,
        partitions: &[Partition],
        low_watermark: &mut dyn FnMut(i32) -> Result<i64, IngestError>,
    ) -> Result<Positions, SpeedError> {
        let stored = self
            .runtime
            .block_on(pg::load_positions(&self.flusher.pool, &self.flusher.topic))?;
        let mut positions = BTreeMap::new();
        for &partition in partitions {
            let position = match stored.get(&partition) {
                Some(&offset) => offset,
                None => {
                    let low = low_watermark(partition)?;
                    let start = self.runtime.block_on(pg::store_start_if_absent(
                        &self.flusher.pool,
                        &self.flusher.topic,
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

    /// Books a written batch: the expected positions move forward; returns what it wrote and
    /// keeps the emptied batch for reuse.
    fn written(&mut self, mut batch: MicroBatch, outcome: FlushOutcome) -> Committed {
        self.expected
            .extend(batch.next_offsets.iter().map(|(&p, &o)| (p, o)));
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
            dead_letters: batch
                .dead_letters
                .iter()
                .map(|l| l.rejection.code())
                .collect(),
            took: outcome.duration,
        };
        batch.clear();
        self.spare = Some(batch);
        committed
    }

    /// Books a flush's outcome: a written batch moves the positions; a failed one is kept and
    /// written again before any later one.
    fn book(
        &mut self,
        batch: MicroBatch,
        result: Result<FlushOutcome, SpeedError>,
    ) -> Result<Option<Committed>, SpeedError> {
        match result {
            Ok(outcome) => Ok(Some(self.written(batch, outcome))),
            Err(error) => {
                self.failed = Some(batch);
                Err(error)
            }
        }
    }

    /// Waits for the background flush, if any, and books it.
    fn settle(&mut self) -> Result<Option<Committed>, SpeedError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(None);
        };
        let (batch, result) = in_flight.finish(&self.runtime)?;
        self.book(batch, result)
    }

    /// Settles the background flush outside `commit`; the next `commit` reports it.
    fn settle_unreported(&mut self) -> Result<(), SpeedError> {
        let settled = self.settle()?;
        self.unreported = Committed::combine(self.unreported.take(), settled);
        Ok(())
    }

    /// Writes a batch whose flush failed again, synchronously.
    fn retry_failed(&mut self) -> Result<Option<Committed>, SpeedError> {
        let Some(batch) = self.failed.take() else {
            return Ok(None);
        };
        let result = self
            .runtime
            .block_on(self.flusher.flush(&batch, &self.expected));
        self.book(batch, result)
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
        // A flush still running would move stored positions after they were read here.
        self.settle_unreported()?;
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

    /// The ends of everything read and not written: a failed batch's and the current one's.
    fn buffered_ends(&self) -> Positions {
        let mut ends = self
            .failed
            .as_ref()
            .map(|failed| failed.next_offsets.clone())
            .unwrap_or_default();
        ends.extend(self.batch.next_offsets.iter().map(|(&p, &o)| (p, o)));
        ends
    }

    /// Settles the previous flush, writes a failed one again, then starts flushing the
    /// micro-batch in the background (one transaction with its positions and dead letters).
    /// Returns what the flushes that ended during the call wrote. On failure the batches are
    /// kept and the error returned.
    fn commit(&mut self) -> Result<Option<Committed>, SpeedError> {
        let settled = self.settle()?;
        let retried = self.retry_failed()?;
        if !self.batch.is_empty() {
            let next = match self.spare.take() {
                Some(spare) => spare,
                None => MicroBatch::empty_like(&self.batch),
            };
            let batch = std::mem::replace(&mut self.batch, next);
            self.in_flight = Some(
                self.flusher
                    .spawn(&self.runtime, batch, self.expected.clone()),
            );
        }
        Ok(Committed::combine(
            self.unreported.take(),
            Committed::combine(settled, retried),
        ))
    }

    fn writing(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|in_flight| !in_flight.is_finished())
    }

    fn commit_all(&mut self) -> Result<Option<Committed>, SpeedError> {
        let started = self.commit()?;
        Ok(Committed::combine(started, self.settle()?))
    }

    fn drop_uncommitted(&mut self) {
        self.batch.clear();
        self.failed = None;
    }

    fn reload(&mut self) -> Result<BTreeMap<Partition, StartAt>, SpeedError> {
        // Whatever a flush still running did not write is read again from the stored
        // positions, so a failed batch is not written later.
        if let Err(error) = self.settle_unreported() {
            tracing::warn!(%error, "a flush in flight failed; its records are read again from the stored positions");
        }
        self.failed = None;
        let stored = self
            .runtime
            .block_on(pg::load_positions(&self.flusher.pool, &self.flusher.topic))?;
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
    let layer = SpeedLayer::new(pool, topic, rules, &settings.views, runtime);
    ingest::run(settings.ingest, layer, stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::pg_layout::ViewLayout;

    fn config() -> schemas::BraidConfig {
        schemas::BraidConfig::load_from(Some(("braid.toml", include_str!("../../braid.toml"))), [])
            .unwrap()
    }

    fn purchase(config: &schemas::BraidConfig, price: i64) -> Record {
        let event = format!(
            r#"{{"event_id":"e{price}","ts":"2026-01-01T00:00:05Z","event_type":"purchase","user_id":"u","page":"/p","country":"US","device":"mobile","price_cents":{price}}}"#
        );
        config.schema.validate(event.as_bytes()).unwrap()
    }

    /// A speed layer on topic `t`, the demo views' tables made, partition 0 assigned at 0.
    async fn assigned_layer(pool: &PgPool, config: &schemas::BraidConfig) -> SpeedLayer {
        schemas::pg::ensure_view_tables(pool, &config.views)
            .await
            .unwrap();
        let rules = pg::agreed_rules(pool, "t", &config.schema).await.unwrap();
        let mut layer = SpeedLayer::new(
            pool.clone(),
            "t".into(),
            rules,
            &config.views,
            Handle::current(),
        );
        // The layer blocks on the runtime: call it from a blocking thread.
        tokio::task::spawn_blocking(move || {
            layer.assign(&[0], &mut |_| Ok(0)).unwrap();
            layer
        })
        .await
        .unwrap()
    }

    fn add(layer: &mut SpeedLayer, config: &schemas::BraidConfig, offset: Offset, price: i64) {
        let message = Received {
            partition: 0,
            offset,
            key: None,
            payload: b"",
        };
        layer.add_record(&message, &purchase(config, price));
    }

    async fn stored_sum_and_position(pool: &PgPool, config: &schemas::BraidConfig) -> (i64, i64) {
        let table = ViewLayout::of(&config.views[1]).speed_table;
        let (sum,): (Option<i64>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT sum(sum_price_cents)::bigint FROM {table}"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        let position = pg::load_positions(pool, "t").await.unwrap()[&0];
        (sum.unwrap_or(0), position)
    }

    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn background_flushes_land_in_order_and_each_is_reported_once(pool: PgPool) {
        let config = config();
        let mut layer = assigned_layer(&pool, &config).await;
        let prices = [100, 200, 300, 400, 500];
        let (layer, reports) = tokio::task::spawn_blocking({
            let config = config.clone();
            move || {
                let mut reports = Vec::new();
                for (offset, price) in prices[..3].iter().enumerate() {
                    add(&mut layer, &config, offset as Offset, *price);
                }
                reports.push(layer.commit().unwrap()); // starts the first flush
                for (offset, price) in prices[3..].iter().enumerate() {
                    add(&mut layer, &config, offset as Offset + 3, *price);
                }
                reports.push(layer.commit().unwrap()); // settles the first, starts the second
                reports.push(layer.commit_all().unwrap()); // settles the second
                (layer, reports)
            }
        })
        .await
        .unwrap();
        let records: Vec<Option<u64>> = reports
            .iter()
            .map(|r| r.as_ref().map(|c| c.records))
            .collect();
        assert_eq!(records, [None, Some(3), Some(2)]);
        assert_eq!(layer.positions()[&0], StartAt::Offset(5));
        // The fold over the five purchases, and the position after the last.
        assert_eq!(
            stored_sum_and_position(&pool, &config).await,
            (prices.iter().sum::<i64>(), 5)
        );
    }

    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_fenced_background_flush_keeps_its_batch_until_dropped_and_writes_nothing(
        pool: PgPool,
    ) {
        let config = config();
        let mut layer = assigned_layer(&pool, &config).await;
        // Another process moves partition 0 after this one read its position.
        let mut tx = pool.begin().await.unwrap();
        pg::store_positions(&mut tx, "t", &BTreeMap::from([(0, 100)]))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let layer = tokio::task::spawn_blocking({
            let config = config.clone();
            move || {
                add(&mut layer, &config, 0, 100);
                add(&mut layer, &config, 1, 200);
                assert_eq!(layer.commit().unwrap(), None); // starts a flush that is fenced
                let error = layer.commit().unwrap_err();
                assert_eq!(SpeedLayer::classify(&error), Disposition::Fenced);
                // The failed batch is kept and counts as read but not written.
                assert_eq!(layer.buffered(), Buffered::default());
                assert_eq!(layer.buffered_ends(), BTreeMap::from([(0, 2)]));
                add(&mut layer, &config, 2, 300);
                assert_eq!(layer.buffered_ends(), BTreeMap::from([(0, 3)]));
                layer.drop_uncommitted();
                assert!(layer.buffered_ends().is_empty());
                assert_eq!(
                    layer.reload().unwrap(),
                    BTreeMap::from([(0, StartAt::Offset(100))])
                );
                assert_eq!(layer.commit().unwrap(), None, "nothing left to write");
                layer
            }
        })
        .await
        .unwrap();
        assert!(layer.failed.is_none());
        assert_eq!(stored_sum_and_position(&pool, &config).await, (0, 100));
    }
}
