//! The flush: one transaction that reads the epoch under a shared lock, advances the fenced
//! positions, stores dead letters and upserts every view's deltas under that epoch.

use std::time::{Duration, Instant};

use schemas::pg::{self, AdvanceError, Layer, PositionMove};
use sqlx::PgPool;

use crate::aggregate::MicroBatch;
use crate::error::SpeedError;
use schemas::position::Positions;
use schemas::validation_rules::ValidationRules;

mod writer;
pub use writer::ViewWriter;

#[cfg(test)]
mod premerge_tests;

/// What one flush wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct FlushOutcome {
    /// The epoch the rows were written under.
    pub epoch: i64,
    /// Rows upserted over all views.
    pub rows: usize,
    /// Valid records covered.
    pub records: u64,
    /// Dead letters stored.
    pub dead_letters: usize,
    /// How long the transaction took.
    pub duration: Duration,
}

/// Writes a micro-batch in one transaction. `expected` holds the stored position this
/// process believes each partition has; a partition moved by someone else fences the flush
/// and nothing is written. The transaction first checks `rules` against the recorded ones
/// (holding the recorded row `FOR SHARE` until it commits, so `braid migrate` cannot record
/// other rules while a flush under these is open).
pub async fn flush(
    pool: &PgPool,
    topic: &str,
    rules: &ValidationRules,
    writers: &[ViewWriter],
    batch: &MicroBatch,
    expected: &Positions,
) -> Result<FlushOutcome, SpeedError> {
    let started = Instant::now();
    let moves: Vec<PositionMove> = batch
        .next_offsets
        .iter()
        .map(|(&partition, &next)| {
            expected
                .get(&partition)
                .map(|&from| PositionMove {
                    partition,
                    expected: from,
                    next,
                })
                .ok_or(SpeedError::UnassignedPartition { partition })
        })
        .collect::<Result<_, _>>()?;
    let mut tx = pool.begin().await?;
    pg::check_validation_rules(&mut tx, topic, rules).await?;
    let epoch = pg::current_epoch_for_share(&mut tx).await?;
    pg::advance_positions(&mut tx, topic, &moves, batch.newest_event_micros)
        .await
        .map_err(|e| match e {
            AdvanceError::Fenced(fenced) => SpeedError::Fenced(fenced),
            AdvanceError::Database(db) => SpeedError::Database(db),
        })?;
    pg::insert_dead_letters(&mut tx, Layer::Speed, topic, &batch.dead_letters).await?;
    let mut touched = Vec::new();
    for (writer, deltas) in writers.iter().zip(&batch.views) {
        if !deltas.groups.is_empty() {
            let writing = std::time::Instant::now();
            writer.write(&mut tx, epoch, deltas).await?;
            tracing::debug!(
                view = writer.view.as_str(),
                rows = deltas.groups.len(),
                seconds = writing.elapsed().as_secs_f64(),
                "wrote the view's rows"
            );
            touched.push(pg::view_changes::ViewChange {
                view: writer.view.clone(),
                buckets: deltas.groups.bucket_range(),
            });
        }
    }
    pg::view_changes::notify(&mut tx, &touched).await?;
    tx.commit().await?;
    Ok(FlushOutcome {
        epoch,
        rows: batch.row_count(),
        records: batch.valid_records,
        dead_letters: batch.dead_letters.len(),
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::pg_layout::ViewLayout;
    use std::collections::BTreeMap;

    use crate::aggregate::MicroBatch;
    use schemas::position::Offset;

    fn config() -> schemas::BraidConfig {
        schemas::BraidConfig::load_from(Some(("braid.toml", include_str!("../../braid.toml"))), [])
            .unwrap()
    }

    fn rules(config: &schemas::BraidConfig) -> ValidationRules {
        ValidationRules::of(&config.schema)
    }

    fn batch(config: &schemas::BraidConfig) -> MicroBatch {
        let mut batch = MicroBatch::new(&config.views, &config.schema);
        let event = br#"{"event_id":"a","ts":"2026-01-01T00:00:05Z","event_type":"purchase","user_id":"u","page":"/p","country":"US","device":"mobile","price_cents":500}"#;
        batch.add_record(0, 7, &config.schema.validate(event).unwrap());
        let rejection = config.schema.validate(b"nope").unwrap_err();
        batch.add_dead_letter(schemas::pg::DeadLetter::new(0, 8, rejection, b"nope", 16));
        batch
    }

    /// The demo views' tables, partition 0 of topic `t` stored at `start`, and their writers.
    async fn set_up(pool: &PgPool, start: i64) -> (schemas::BraidConfig, Vec<ViewWriter>) {
        let config = config();
        schemas::pg::ensure_view_tables(pool, &config.views)
            .await
            .unwrap();
        schemas::pg::store_start_if_absent(pool, "t", 0, start)
            .await
            .unwrap();
        let writers = config.views.iter().map(ViewWriter::new).collect();
        (config, writers)
    }

    async fn count(pool: &PgPool, sql: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(pool)
            .await
            .unwrap();
        n
    }

    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_flush_writes_rows_positions_and_dead_letters_together(pool: PgPool) {
        let (config, writers) = set_up(&pool, 7).await;
        let batch = batch(&config);
        let outcome = flush(
            &pool,
            "t",
            &rules(&config),
            &writers,
            &batch,
            &BTreeMap::from([(0, 7)]),
        )
        .await
        .unwrap();
        assert_eq!(
            (outcome.epoch, outcome.records, outcome.dead_letters),
            (1, 1, 1)
        );
        // The same deltas again, from the new position, add up in the same rows.
        let mut again = batch.clone();
        again.next_offsets.insert(0, 12);
        again.dead_letters.clear();
        flush(
            &pool,
            "t",
            &rules(&config),
            &writers,
            &again,
            &BTreeMap::from([(0, 9)]),
        )
        .await
        .unwrap();
        let table = ViewLayout::of(&config.views[1]).speed_table;
        let (n, sum, min): (i64, String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count, sum_price_cents::text, min_price_cents FROM {table}"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            (n, sum.as_str(), min),
            (2, "1000", 500),
            "one row, upserted twice"
        );
        assert_eq!(
            schemas::pg::load_positions(&pool, "t").await.unwrap()[&0],
            12
        );
        assert_eq!(
            count(&pool, "SELECT count(*) FROM braid_internal.dead_letters").await,
            1
        );
    }

    fn purchase(config: &schemas::BraidConfig, offset: Offset, price: i64) -> MicroBatch {
        let mut batch = MicroBatch::new(&config.views, &config.schema);
        let event = format!(
            r#"{{"event_id":"a","ts":"2026-01-01T00:00:05Z","event_type":"purchase","user_id":"u","page":"/p","country":"US","device":"mobile","price_cents":{price}}}"#
        );
        batch.add_record(
            0,
            offset,
            &config.schema.validate(event.as_bytes()).unwrap(),
        );
        batch
    }

    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn sums_past_i64_are_stored_exactly_across_flushes(pool: PgPool) {
        let (config, writers) = set_up(&pool, 0).await;
        for offset in 0..3 {
            flush(
                &pool,
                "t",
                &rules(&config),
                &writers,
                &purchase(&config, offset, i64::MAX),
                &BTreeMap::from([(0, offset)]),
            )
            .await
            .unwrap();
        }
        let table = ViewLayout::of(&config.views[1]).speed_table;
        let (sum,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT sum_price_cents::text FROM {table}"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(sum, (i128::from(i64::MAX) * 3).to_string());
    }

    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_data_error_is_classified_and_never_retried(pool: PgPool) {
        let (config, writers) = set_up(&pool, 0).await;
        let table = ViewLayout::of(&config.views[1]).speed_table;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} ADD CHECK (min_price_cents > 0)"
        )))
        .execute(&pool)
        .await
        .unwrap();
        let refused = flush(
            &pool,
            "t",
            &rules(&config),
            &writers,
            &purchase(&config, 0, -1),
            &BTreeMap::from([(0, 0)]),
        )
        .await
        .unwrap_err();
        match &refused {
            SpeedError::Database(e) => assert!(schemas::pg::is_data_error(e), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!refused.is_retryable(), "a data error is not transient");
        assert_eq!(
            schemas::pg::load_positions(&pool, "t").await.unwrap()[&0],
            0,
            "nothing was committed"
        );
    }

    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_fenced_flush_writes_nothing(pool: PgPool) {
        let (config, writers) = set_up(&pool, 7).await;
        // This process believes partition 0 is at 3, but the stored position is 7.
        let result = flush(
            &pool,
            "t",
            &rules(&config),
            &writers,
            &batch(&config),
            &BTreeMap::from([(0, 3)]),
        )
        .await;
        assert!(matches!(result, Err(SpeedError::Fenced(_))), "{result:?}");
        let table = ViewLayout::of(&config.views[1]).speed_table;
        assert_eq!(
            count(&pool, &format!("SELECT count(*) FROM {table}")).await,
            0
        );
        assert_eq!(
            count(&pool, "SELECT count(*) FROM braid_internal.dead_letters").await,
            0
        );
        assert_eq!(
            schemas::pg::load_positions(&pool, "t").await.unwrap()[&0],
            7
        );
    }

    /// Backends of this test's database waiting on a lock.
    async fn waiting_on_locks(pool: &PgPool) -> i64 {
        count(
            pool,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await
    }

    /// Polls `condition` every 10 ms until it holds; panics after 30 s naming `what`.
    async fn wait_for<F, Fut>(what: &str, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !condition().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn braid_migrate_cannot_record_other_rules_while_a_flush_under_the_old_ones_is_open(
        pool: PgPool,
    ) {
        let (config, writers) = set_up(&pool, 7).await;
        schemas::pg::agreed_rules(&pool, "t", &config.schema)
            .await
            .unwrap();
        // A cut holds the epoch row: a flush that has begun waits inside its transaction.
        let mut cut = pool.begin().await.unwrap();
        sqlx::query("SELECT current_epoch FROM braid_internal.epoch FOR UPDATE")
            .execute(&mut *cut)
            .await
            .unwrap();
        let flushing = tokio::spawn({
            let (pool, config, writers) = (pool.clone(), config.clone(), writers.clone());
            async move {
                let batch = batch(&config);
                flush(
                    &pool,
                    "t",
                    &rules(&config),
                    &writers,
                    &batch,
                    &BTreeMap::from([(0, 7)]),
                )
                .await
            }
        });
        wait_for("the flush to wait for the cut", || async {
            waiting_on_locks(&pool).await == 1
        })
        .await;
        // `braid migrate` records a changed schema meanwhile.
        let mut changed = config.schema.clone();
        changed.max_record_bytes += 1;
        let migrate = tokio::spawn({
            let pool = pool.clone();
            async move {
                schemas::pg::record_validation_rules(&pool, "t", &ValidationRules::of(&changed))
                    .await
            }
        });
        wait_for("braid migrate to end or wait", || async {
            migrate.is_finished() || waiting_on_locks(&pool).await == 2
        })
        .await;
        assert!(
            !migrate.is_finished(),
            "other rules were recorded while a flush under the old ones was open"
        );
        cut.rollback().await.unwrap();
        flushing
            .await
            .unwrap()
            .expect("the open flush commits under the rules it checked");
        let differences = migrate.await.unwrap().unwrap();
        assert_eq!(differences.len(), 1, "{differences:?}");
        // The next flush sees the new rules and stops.
        let refused = flush(
            &pool,
            "t",
            &rules(&config),
            &writers,
            &purchase(&config, 8, 1),
            &BTreeMap::from([(0, 8)]),
        )
        .await;
        assert!(
            matches!(
                refused,
                Err(SpeedError::Rules(schemas::pg::RulesError::Differ(_)))
            ),
            "{refused:?}"
        );
    }
}
