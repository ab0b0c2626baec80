//! The pipeline against a store in PostgreSQL: positions in `braid_internal.speed_positions`
//! (fenced as the speed layer fences them; a partition with nothing stored starts at the log
//! start, as in the sink), the records it wrote in a table of their own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use schemas::Record;
use schemas::pg::{self, AdvanceError, DeadLetter, PositionMove};
use schemas::position::{Offset, Partition, Positions};
use sqlx::PgPool;
use tokio::runtime::Handle;

use super::Pipeline;
use crate::error::{Disposition, IngestError};
use crate::expected::{Expected, StartAt};
use crate::layer::{Buffer, Buffered, Received, Store, Taken};

const TOPIC: &str = "t";

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error("fenced")]
    Fenced,
    #[error("a transient failure")]
    Transient,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// What the next failing writes do instead of writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Transient,
    Panic,
}

struct TestStore {
    pool: PgPool,
    /// The next this many writes fail.
    failing: Arc<AtomicUsize>,
    failure: Failure,
}

/// The records read: one offset per message.
#[derive(Default)]
struct TestBuffer {
    offsets: Vec<Offset>,
    ends: Positions,
}

struct TestBatch {
    offsets: Vec<Offset>,
    ends: Positions,
}

impl Taken for TestBatch {
    fn ends(&self) -> &Positions {
        &self.ends
    }

    fn records(&self) -> u64 {
        self.offsets.len() as u64
    }

    fn dead_letters(&self) -> &[DeadLetter] {
        &[]
    }
}

impl Buffer for TestBuffer {
    type Taken = TestBatch;
    type Error = TestError;

    fn add_record(&mut self, message: &Received<'_>, _record: &Record) {
        self.offsets.push(message.offset);
        self.ends.insert(message.partition, message.offset + 1);
    }

    fn add_dead_letter(&mut self, letter: DeadLetter) {
        self.ends.insert(letter.partition, letter.offset + 1);
    }

    fn skip_to(&mut self, partition: Partition, position: Offset) {
        self.ends.insert(partition, position);
    }

    fn size(&self) -> Buffered {
        Buffered {
            records: self.offsets.len() as u64,
            bytes: 0,
        }
    }

    fn ends(&self) -> &Positions {
        &self.ends
    }

    fn take(&mut self) -> Result<Option<TestBatch>, TestError> {
        if self.ends.is_empty() {
            return Ok(None);
        }
        Ok(Some(TestBatch {
            offsets: std::mem::take(&mut self.offsets),
            ends: std::mem::take(&mut self.ends),
        }))
    }

    fn clear(&mut self) {
        self.offsets.clear();
        self.ends.clear();
    }
}

impl Store for TestStore {
    type Buffer = TestBuffer;
    type Error = TestError;
    const NAME: &'static str = "test";
    const RETENTION_REMEDY: &'static str = "none";

    fn classify(error: &TestError) -> Disposition {
        match error {
            TestError::Fenced => Disposition::Fenced,
            TestError::Transient => Disposition::Retryable,
            _ => Disposition::Fatal,
        }
    }

    async fn load(
        &mut self,
        partitions: &[Partition],
        _low_watermark: &mut dyn FnMut(Partition) -> Result<Offset, IngestError>,
    ) -> Result<BTreeMap<Partition, Option<Offset>>, TestError> {
        let stored = pg::load_positions(&self.pool, TOPIC).await?;
        Ok(partitions
            .iter()
            .map(|p| (*p, stored.get(p).copied()))
            .collect())
    }

    async fn write(&mut self, batch: &TestBatch, expected: &Expected) -> Result<(), TestError> {
        if self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            match self.failure {
                Failure::Transient => return Err(TestError::Transient),
                Failure::Panic => panic!("a bug in the write"),
            }
        }
        let mut tx = self.pool.begin().await?;
        for (&partition, &next) in &batch.ends {
            match expected.get(partition) {
                Some(from) => {
                    let moves = [PositionMove {
                        partition,
                        expected: from,
                        next,
                    }];
                    pg::advance_positions(&mut tx, TOPIC, &moves, None)
                        .await
                        .map_err(|e| match e {
                            AdvanceError::Fenced(_) => TestError::Fenced,
                            AdvanceError::Database(db) => TestError::Database(db),
                        })?;
                }
                None => {
                    // Nothing stored: the fence is that nothing is stored still.
                    let inserted = sqlx::query(
                        "INSERT INTO braid_internal.speed_positions (topic, partition, next_offset) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(TOPIC)
                    .bind(partition)
                    .bind(next)
                    .execute(&mut *tx)
                    .await?;
                    if inserted.rows_affected() == 0 {
                        return Err(TestError::Fenced);
                    }
                }
            }
        }
        sqlx::query("INSERT INTO written (o) SELECT * FROM UNNEST($1::bigint[])")
            .bind(&batch.offsets)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

type TestPipeline = Pipeline<TestStore>;

fn record() -> Record {
    let config = schemas::BraidConfig::load_from(
        Some(("braid.toml", include_str!("../../../braid.toml"))),
        [],
    )
    .unwrap();
    let event = br#"{"event_id":"e","ts":"2026-01-01T00:00:05Z","event_type":"view","user_id":"u","page":"/p","country":"US","device":"mobile"}"#;
    config.schema.validate(event).unwrap()
}

/// A pipeline with partition 0 assigned (at `stored`, if given), and how many of its next
/// writes fail with `failure`.
async fn assigned(
    pool: &PgPool,
    stored: Option<Offset>,
    failure: Failure,
) -> (TestPipeline, Arc<AtomicUsize>) {
    sqlx::query("CREATE TABLE written (n bigserial PRIMARY KEY, o bigint NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
    if let Some(stored) = stored {
        pg::store_start_if_absent(pool, TOPIC, 0, stored)
            .await
            .unwrap();
    }
    let failing = Arc::new(AtomicUsize::new(0));
    let store = TestStore {
        pool: pool.clone(),
        failing: Arc::clone(&failing),
        failure,
    };
    let mut pipeline = Pipeline::new(Handle::current(), store, TestBuffer::default());
    // The pipeline blocks on the runtime: call it from a blocking thread.
    let pipeline = tokio::task::spawn_blocking(move || {
        pipeline.assign(&[0], &mut |_| Ok(0)).unwrap();
        pipeline
    })
    .await
    .unwrap();
    (pipeline, failing)
}

fn add(pipeline: &mut TestPipeline, record: &Record, offsets: std::ops::Range<Offset>) {
    for offset in offsets {
        let message = Received {
            partition: 0,
            offset,
            key: None,
            payload: b"",
        };
        pipeline.buffer().add_record(&message, record);
    }
}

/// What the store holds: the offsets written, in the order they were written, and partition
/// 0's stored position.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    written: Vec<Offset>,
    position: Option<Offset>,
}

async fn stored(pool: &PgPool) -> Stored {
    let offsets: Vec<(i64,)> = sqlx::query_as("SELECT o FROM written ORDER BY n")
        .fetch_all(pool)
        .await
        .unwrap();
    Stored {
        written: offsets.into_iter().map(|(o,)| o).collect(),
        position: pg::load_positions(pool, TOPIC)
            .await
            .unwrap()
            .get(&0)
            .copied(),
    }
}

/// Asserts that the store holds `written`, in that order, and partition 0 at `position`.
async fn assert_stored(pool: &PgPool, written: Vec<Offset>, position: Option<Offset>) {
    assert_eq!(stored(pool).await, Stored { written, position });
}

fn records(report: &Result<Option<crate::Committed>, TestError>) -> Option<u64> {
    report.as_ref().unwrap().as_ref().map(|c| c.records)
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn background_writes_land_in_order_and_each_is_reported_once(pool: PgPool) {
    let (mut pipeline, _) = assigned(&pool, None, Failure::Transient).await;
    assert_eq!(pipeline.positions()[&0], StartAt::Beginning);
    let (pipeline, reports) = tokio::task::spawn_blocking(move || {
        let record = record();
        let mut reports = Vec::new();
        add(&mut pipeline, &record, 0..3);
        reports.push(records(&pipeline.commit())); // starts the first write
        add(&mut pipeline, &record, 3..5);
        reports.push(records(&pipeline.commit())); // settles the first, starts the second
        reports.push(records(&pipeline.commit_all())); // settles the second
        reports.push(records(&pipeline.commit_all())); // nothing left
        (pipeline, reports)
    })
    .await
    .unwrap();
    assert_eq!(reports, [None, Some(3), Some(2), None]);
    assert_eq!(pipeline.positions()[&0], StartAt::Offset(5));
    assert_stored(&pool, (0..5).collect(), Some(5)).await;
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_fenced_background_write_keeps_its_buffer_until_dropped_and_writes_nothing(pool: PgPool) {
    let (mut pipeline, _) = assigned(&pool, Some(0), Failure::Transient).await;
    // Another process moves partition 0 after this one read its position.
    let mut tx = pool.begin().await.unwrap();
    pg::store_positions(&mut tx, TOPIC, &BTreeMap::from([(0, 100)]))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    tokio::task::spawn_blocking(move || {
        let record = record();
        add(&mut pipeline, &record, 0..2);
        assert_eq!(pipeline.commit().unwrap(), None); // starts a write that is fenced
        let error = pipeline.commit().unwrap_err();
        assert_eq!(TestStore::classify(&error), Disposition::Fenced);
        // The failed buffer is kept and counts as read but not written.
        assert_eq!(pipeline.buffered(), Buffered::default());
        assert_eq!(pipeline.buffered_ends(), BTreeMap::from([(0, 2)]));
        add(&mut pipeline, &record, 2..3);
        assert_eq!(pipeline.buffered_ends(), BTreeMap::from([(0, 3)]));
        pipeline.drop_uncommitted();
        assert!(pipeline.buffered_ends().is_empty());
        assert_eq!(
            pipeline.reload(&mut |_| Ok(0)).unwrap(),
            BTreeMap::from([(0, StartAt::Offset(100))])
        );
        assert_eq!(
            pipeline.commit_all().unwrap(),
            None,
            "nothing left to write"
        );
    })
    .await
    .unwrap();
    assert_stored(&pool, vec![], Some(100)).await;
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_failed_write_is_written_again_before_any_later_one(pool: PgPool) {
    let (mut pipeline, failing) = assigned(&pool, Some(0), Failure::Transient).await;
    failing.store(1, Ordering::SeqCst);
    let reports = tokio::task::spawn_blocking(move || {
        let record = record();
        add(&mut pipeline, &record, 0..2);
        assert_eq!(pipeline.commit().unwrap(), None); // a write that fails
        let error = pipeline.commit().unwrap_err();
        assert_eq!(TestStore::classify(&error), Disposition::Retryable);
        add(&mut pipeline, &record, 2..5);
        assert_eq!(pipeline.buffered_ends(), BTreeMap::from([(0, 5)]));
        // Writes the failed buffer, then starts the next, fenced on what the first stored.
        vec![records(&pipeline.commit()), records(&pipeline.commit_all())]
    })
    .await
    .unwrap();
    assert_eq!(reports, [Some(2), Some(3)]);
    assert_stored(&pool, (0..5).collect(), Some(5)).await;
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_write_settled_by_an_assignment_is_reported_by_the_next_commit(pool: PgPool) {
    let (mut pipeline, _) = assigned(&pool, Some(0), Failure::Transient).await;
    let report = tokio::task::spawn_blocking(move || {
        add(&mut pipeline, &record(), 0..2);
        assert_eq!(pipeline.commit().unwrap(), None);
        // The assignment settles the write before it reads the stored positions.
        assert_eq!(
            pipeline.assign(&[0, 1], &mut |_| Ok(0)).unwrap(),
            BTreeMap::from([(0, StartAt::Offset(2)), (1, StartAt::Beginning)])
        );
        records(&pipeline.commit())
    })
    .await
    .unwrap();
    assert_eq!(report, Some(2));
    assert_stored(&pool, vec![0, 1], Some(2)).await;
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_skip_is_recorded_only_past_the_buffer_and_the_stored_position(pool: PgPool) {
    let (mut pipeline, _) = assigned(&pool, Some(5), Failure::Transient).await;
    let pipeline = tokio::task::spawn_blocking(move || {
        pipeline.skip_to(0, 5);
        assert!(pipeline.buffered_ends().is_empty(), "already stored");
        pipeline.skip_to(0, 7);
        assert_eq!(pipeline.buffered_ends(), BTreeMap::from([(0, 7)]));
        pipeline.skip_to(0, 6);
        assert_eq!(pipeline.buffered_ends(), BTreeMap::from([(0, 7)]));
        let committed = pipeline.commit_all().unwrap().unwrap();
        assert_eq!(committed.records, 0, "a position with no rows");
        pipeline
    })
    .await
    .unwrap();
    assert_eq!(pipeline.positions()[&0], StartAt::Offset(7));
    assert_stored(&pool, vec![], Some(7)).await;
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_write_task_that_panics_stops_the_layer_and_writes_nothing(pool: PgPool) {
    let (mut pipeline, failing) = assigned(&pool, Some(0), Failure::Panic).await;
    failing.store(1, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || {
        add(&mut pipeline, &record(), 0..2);
        assert_eq!(pipeline.commit().unwrap(), None);
        let error = pipeline.commit().unwrap_err();
        assert!(
            matches!(error, TestError::Ingest(IngestError::WriteTask { .. })),
            "{error:?}"
        );
        assert_eq!(TestStore::classify(&error), Disposition::Fatal);
        let error = pipeline.reload(&mut |_| Ok(0)).unwrap_err();
        assert!(
            matches!(error, TestError::Ingest(IngestError::StoreLost { .. })),
            "{error:?}"
        );
    })
    .await
    .unwrap();
    assert_stored(&pool, vec![], Some(0)).await;
}
