//! A cut can lie where the sink never read a record: a partition that never got one, and a
//! partition whose records all expired before the pipeline started (the speed layer starts
//! it at its low watermark). The batch must not wait for ever on either.

use sqlx::PgPool;

use super::{active_cut, batch_run_within};
use crate::compare::{Source, assert_rows_equal, read_rows};
use crate::oracle::{self, RawMessage};
use crate::support::{Pipeline, high_watermarks, read_topic, speed_caught_up, stderr};

#[sqlx::test(migrations = false)]
async fn a_batch_goes_on_past_partitions_with_no_records_and_with_only_expired_ones(pool: PgPool) {
    let pipeline = Pipeline::new("batch-idle", &pool).await;
    pipeline.produce(3_000, 91, 3);
    let ends = high_watermarks(&pipeline.topic);
    assert!(ends[&1] > 0, "partition 1 got records");
    // Retention deletes all of partition 1; partition 3 is new and never gets a record.
    crate::kafka_admin::delete_records_below(&pipeline.topic, &[(1, ends[&1])].into()).await;
    crate::kafka_admin::grow_partitions(&pipeline.topic, 4).await;

    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    speed.kill();
    let published = batch_run_within(&pipeline, 60);
    assert!(published.status.success(), "{}", stderr(&published));
    sink.kill();

    let (_, cut) = active_cut(&pool).await;
    assert_eq!(
        cut.get(&1),
        Some(&ends[&1]),
        "the cut of partition 1 is its low watermark"
    );
    assert_eq!(cut.get(&3).copied().unwrap_or(0), 0);
    let below: Vec<RawMessage> = read_topic(&pipeline.topic)
        .into_iter()
        .filter(|m| m.offset < cut.get(&m.partition).copied().unwrap_or(0))
        .collect();
    assert!(below.iter().all(|m| m.partition == 0 || m.partition == 2));
    let batch = read_rows(&mut pool.acquire().await.unwrap(), Source::Batch).await;
    assert_rows_equal(&oracle::demo_views(&below), &batch, "batch rows");
}
