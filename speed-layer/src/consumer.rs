//! The speed layer as a layer of the ingest loop (`ingest::consumer`): its store is
//! PostgreSQL, where positions are stored in the same transaction as the aggregates they
//! cover; its buffer is the micro-batch. A partition without a stored position starts at
//! Kafka's first offset, which is stored first, so every cut offset is a position the layer
//! stood at. The expected positions, the flush in the background and its retry are the
//! ingest pipeline's (`ingest::pipeline`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ingest::{
    Buffer, Buffered, Disposition, Expected, IngestError, IngestSettings, Received, Store,
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

/// The speed layer's store: PostgreSQL, where a micro-batch is flushed in one transaction with
/// the positions it covers (moved into the background task while a flush runs).
pub struct SpeedStore {
    /// The database.
    pub pool: PgPool,
    /// The source topic.
    pub topic: String,
    /// The validation rules this process runs; checked against the recorded ones per flush.
    pub rules: ValidationRules,
    /// One prepared upsert per view, in the batch's view order.
    pub writers: Arc<[ViewWriter]>,
}

impl SpeedStore {
    /// The store of `topic` for `views`, under `rules`.
    pub fn new(pool: PgPool, topic: String, rules: ValidationRules, views: &[View]) -> Self {
        Self {
            pool,
            topic,
            rules,
            writers: views.iter().map(ViewWriter::new).collect(),
        }
    }
}

impl Store for SpeedStore {
    type Buffer = SpeedBuffer;
    type Error = SpeedError;
    const NAME: &'static str = "speed";
    const RETENTION_REMEDY: &'static str = "Move the speed layer past the gap deliberately \
        (braid recover --from-lake) so the next batch run covers it from the lake";
    const FOLLOWS_MOVED_POSITIONS: bool = true;

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

    /// The stored positions of `partitions`; a partition without one starts at the log start,
    /// which is stored first, so every cut offset is a position the layer stood at.
    async fn load(
        &mut self,
        partitions: &[Partition],
        low_watermark: &mut dyn FnMut(Partition) -> Result<Offset, IngestError>,
    ) -> Result<BTreeMap<Partition, Option<Offset>>, SpeedError> {
        let stored = pg::load_positions(&self.pool, &self.topic).await?;
        let mut positions = BTreeMap::new();
        for &partition in partitions {
            let position = match stored.get(&partition) {
                Some(&offset) => offset,
                None => {
                    let low = low_watermark(partition)?;
                    let start =
                        pg::store_start_if_absent(&self.pool, &self.topic, partition, low).await?;
                    tracing::info!(
                        partition,
                        start,
                        "no stored position; starting at the log start"
                    );
                    start
                }
            };
            positions.insert(partition, Some(position));
        }
        Ok(positions)
    }

    /// Flushes `batch` in one transaction fenced on `expected`, which first checks the
    /// recorded validation rules. Stops, rather than flushes, once the recorded rules changed
    /// (the sink may now accept other records than this process).
    async fn write(&mut self, batch: &MicroBatch, expected: &Expected) -> Result<(), SpeedError> {
        let outcome = flush(
            &self.pool,
            &self.topic,
            &self.rules,
            &self.writers,
            batch,
            &expected.stored(),
        )
        .await?;
        metrics::counter!(m::ROWS_UPSERTED_TOTAL).increment(outcome.rows as u64);
        tracing::debug!(
            epoch = outcome.epoch,
            rows = outcome.rows,
            records = outcome.records,
            dead_letters = outcome.dead_letters,
            seconds = outcome.duration.as_secs_f64(),
            "flushed"
        );
        Ok(())
    }
}

/// The speed layer's buffer: the micro-batch being read, and an emptied one to read the next
/// into while a flush writes it (keeps its allocations).
pub struct SpeedBuffer {
    batch: MicroBatch,
    spare: Option<MicroBatch>,
}

impl SpeedBuffer {
    /// An empty micro-batch of `views` over records of `schema`.
    pub fn new(views: &[View], schema: &schemas::EventSchema) -> Self {
        Self {
            batch: MicroBatch::new(views, schema),
            spare: None,
        }
    }
}

impl ingest::Taken for MicroBatch {
    fn ends(&self) -> &Positions {
        &self.next_offsets
    }

    fn records(&self) -> u64 {
        self.valid_records
    }

    fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }
}

impl Buffer for SpeedBuffer {
    type Taken = MicroBatch;
    type Error = SpeedError;

    fn add_record(&mut self, message: &Received<'_>, record: &Record) {
        self.batch
            .add_record(message.partition, message.offset, record);
    }

    fn add_dead_letter(&mut self, letter: DeadLetter) {
        self.batch.add_dead_letter(letter);
    }

    fn skip_to(&mut self, partition: Partition, position: Offset) {
        self.batch.next_offsets.insert(partition, position);
    }

    fn size(&self) -> Buffered {
        Buffered {
            records: self.batch.len(),
            bytes: 0,
        }
    }

    fn ends(&self) -> &Positions {
        &self.batch.next_offsets
    }

    fn take(&mut self) -> Result<Option<MicroBatch>, SpeedError> {
        if self.batch.is_empty() {
            return Ok(None);
        }
        let next = match self.spare.take() {
            Some(spare) => spare,
            None => MicroBatch::empty_like(&self.batch),
        };
        Ok(Some(std::mem::replace(&mut self.batch, next)))
    }

    fn recycle(&mut self, mut batch: MicroBatch) {
        batch.clear();
        self.spare = Some(batch);
    }

    fn clear(&mut self) {
        self.batch.clear();
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
    let store = SpeedStore::new(pool, topic, rules, &settings.views);
    let buffer = SpeedBuffer::new(&settings.views, &settings.ingest.schema);
    ingest::run(settings.ingest, store, buffer, runtime, stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest::StartAt;
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

    type SpeedPipeline = ingest::Pipeline<SpeedStore>;

    /// A speed layer on topic `t`, the demo views' tables made, partition 0 assigned at 0.
    async fn assigned_layer(pool: &PgPool, config: &schemas::BraidConfig) -> SpeedPipeline {
        schemas::pg::ensure_view_tables(pool, &config.views)
            .await
            .unwrap();
        let rules = pg::agreed_rules(pool, "t", &config.schema).await.unwrap();
        let mut layer = SpeedPipeline::new(
            Handle::current(),
            SpeedStore::new(pool.clone(), "t".into(), rules, &config.views),
            SpeedBuffer::new(&config.views, &config.schema),
        );
        // The layer blocks on the runtime: call it from a blocking thread.
        tokio::task::spawn_blocking(move || {
            layer.assign(&[0], &mut |_| Ok(0)).unwrap();
            layer
        })
        .await
        .unwrap()
    }

    fn add(layer: &mut SpeedPipeline, config: &schemas::BraidConfig, offset: Offset, price: i64) {
        let message = Received {
            partition: 0,
            offset,
            key: None,
            payload: b"",
        };
        layer
            .buffer()
            .add_record(&message, &purchase(config, price));
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
                assert_eq!(SpeedStore::classify(&error), Disposition::Fenced);
                // The failed batch is kept and counts as read but not written.
                assert_eq!(layer.buffered(), Buffered::default());
                assert_eq!(layer.buffered_ends(), BTreeMap::from([(0, 2)]));
                add(&mut layer, &config, 2, 300);
                assert_eq!(layer.buffered_ends(), BTreeMap::from([(0, 3)]));
                layer.drop_uncommitted();
                assert!(layer.buffered_ends().is_empty());
                assert_eq!(
                    layer.reload(&mut |_| Ok(0)).unwrap(),
                    BTreeMap::from([(0, StartAt::Offset(100))])
                );
                assert_eq!(layer.commit().unwrap(), None, "nothing left to write");
                layer
            }
        })
        .await
        .unwrap();
        assert!(
            layer.buffered_ends().is_empty(),
            "the failed batch is not written later"
        );
        assert_eq!(stored_sum_and_position(&pool, &config).await, (0, 100));
    }

    /// An operator's move (`braid replay speed` UPDATEs the stored rows) is followed as stored,
    /// without asking Kafka; a row that vanished (nothing in Braid deletes one: only a manual
    /// DELETE) is started at the log start and stored, as an assignment or a restart does.
    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_reload_follows_a_moved_position_and_starts_a_vanished_one_at_the_log_start(
        pool: PgPool,
    ) {
        let config = config();
        let mut layer = assigned_layer(&pool, &config).await;
        let mut layer = tokio::task::spawn_blocking({
            let config = config.clone();
            move || {
                for offset in 0..3 {
                    add(&mut layer, &config, offset, 100);
                }
                assert_eq!(layer.commit_all().unwrap().unwrap().records, 3);
                layer
            }
        })
        .await
        .unwrap();
        sqlx::query("UPDATE braid_internal.speed_positions SET next_offset = 1 WHERE topic = 't'")
            .execute(&pool)
            .await
            .unwrap();
        let (mut layer, asked) = tokio::task::spawn_blocking(move || {
            let mut asked = 0;
            let starts = layer
                .reload(&mut |_| {
                    asked += 1;
                    Ok(7)
                })
                .unwrap();
            assert_eq!(starts, BTreeMap::from([(0, StartAt::Offset(1))]));
            (layer, asked)
        })
        .await
        .unwrap();
        assert_eq!(asked, 0, "a stored position is followed as it is");
        assert_eq!(pg::load_positions(&pool, "t").await.unwrap()[&0], 1);
        sqlx::query("DELETE FROM braid_internal.speed_positions WHERE topic = 't'")
            .execute(&pool)
            .await
            .unwrap();
        let starts = tokio::task::spawn_blocking(move || layer.reload(&mut |_| Ok(7)).unwrap())
            .await
            .unwrap();
        assert_eq!(starts, BTreeMap::from([(0, StartAt::Offset(7))]));
        assert_eq!(pg::load_positions(&pool, "t").await.unwrap()[&0], 7);
    }
}
