//! A producer using Kafka transactions, aborting some: every partition holds control markers and
//! aborted records, and ends with an aborted transaction. Speed, sink and batch count only the
//! committed records, and no wait hangs on the offsets the markers occupy.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sqlx::PgPool;

use crate::compare::{Source, assert_rows_equal, read_rows};
use crate::oracle::{self, RawMessage};
use crate::support::{
    Pipeline, high_watermarks, kafka_brokers, read_topic, run, sink_caught_up, speed_caught_up,
    stderr,
};

const PARTITIONS: i32 = 3;
const ROUNDS: usize = 12;
const PER_PARTITION: usize = 20;

fn aborted(round: usize) -> bool {
    round % 3 == 2
}

fn page_view(id: &str, minute: usize) -> String {
    serde_json::json!({
        "event_id": id, "ts": format!("2026-02-01T10:{:02}:00Z", minute % 60),
        "event_type": "page_view", "user_id": "u1", "page": format!("/p{}", minute % 7),
        "country": "US", "device": "mobile", "duration_ms": minute as i64,
    })
    .to_string()
}

/// Sends `ROUNDS` transactions over every partition, aborting every third one (the last one too).
fn produce_transactions(topic: &str) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("transactional.id", format!("{topic}.txn"))
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    for round in 0..ROUNDS {
        producer.begin_transaction().unwrap();
        for partition in 0..PARTITIONS {
            for i in 0..PER_PARTITION {
                let id = format!("r{round}-p{partition}-{i}");
                let payload = page_view(&id, round * PER_PARTITION + i);
                producer
                    .send(
                        BaseRecord::to(topic)
                            .partition(partition)
                            .key("u1")
                            .payload(&payload),
                    )
                    .unwrap();
                producer.poll(Duration::ZERO);
            }
        }
        if aborted(round) {
            // librdkafka aborts only what it has sent: flush first, so the aborted records are
            // in the log for the consumers to skip.
            producer.flush(timeout).unwrap();
            producer.abort_transaction(timeout).unwrap();
        } else {
            producer.commit_transaction(timeout).unwrap();
        }
    }
}

#[sqlx::test(migrations = false)]
async fn only_committed_records_count_and_no_wait_hangs_on_transaction_markers(pool: PgPool) {
    let pipeline = Pipeline::new("transactional", &pool).await;
    crate::kafka_admin::create_topic_with(&pipeline.topic, PARTITIONS, &[]).await;
    let topic = pipeline.topic.clone();
    tokio::task::spawn_blocking(move || produce_transactions(&topic))
        .await
        .unwrap();

    let committed_rounds = (0..ROUNDS).filter(|&r| !aborted(r)).count();
    let messages: Vec<RawMessage> = read_topic(&pipeline.topic);
    assert_eq!(
        messages.len(),
        committed_rounds * PER_PARTITION * PARTITIONS as usize,
        "a read_committed reader sees the committed records only"
    );
    let ends = high_watermarks(&pipeline.topic);
    for partition in 0..PARTITIONS {
        let last = messages
            .iter()
            .filter(|m| m.partition == partition)
            .map(|m| m.offset)
            .max();
        assert!(
            last.is_some_and(|l| l + 1 < ends[&partition]),
            "partition {partition} ends with markers and aborted records"
        );
    }

    let mut speed = pipeline.start_speed("a", "a");
    let mut sink = pipeline.start_sink("a", "a");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    sink_caught_up(&pipeline, &mut sink).await;
    let speed_rows = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(&oracle::demo_views(&messages), &speed_rows, "speed layer");

    // The cut is where the speed layer stands, before the trailing markers: the sink has
    // recorded positions past them, so the batch does not wait.
    let published = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "60"]));
    assert!(published.status.success(), "{}", stderr(&published));
    let batch = read_rows(&mut pool.acquire().await.unwrap(), Source::Batch).await;
    assert_rows_equal(&oracle::demo_views(&messages), &batch, "batch rows");
    let merged = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(
        &oracle::demo_views(&messages),
        &merged,
        "merged after the batch",
    );
    let (dead,): (i64,) = sqlx::query_as("SELECT count(*) FROM braid_internal.dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(dead, 0, "aborted records are not dead letters either");
}

/// `replay publish` reads its target back to resume without duplicates. A target topic holding
/// transaction markers and aborted records must not make it wait for offsets that never arrive.
#[sqlx::test(migrations = false)]
async fn replay_publish_resumes_into_a_topic_with_transaction_markers(pool: PgPool) {
    let pipeline = Pipeline::new("transactional-publish", &pool).await;
    pipeline.produce(500, 97, PARTITIONS);
    let mut sink = pipeline.start_sink("a", "a");
    sink_caught_up(&pipeline, &mut sink).await;
    sink.kill();
    let target = format!("{}.replayed", pipeline.topic);
    crate::kafka_admin::create_topic_with(&target, PARTITIONS, &[]).await;
    let transactional = target.clone();
    tokio::task::spawn_blocking(move || produce_transactions(&transactional))
        .await
        .unwrap();

    let publish = || {
        run(pipeline.braid().args([
            "replay",
            "publish",
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
            "--topic",
            &target,
        ]))
    };
    for attempt in ["first", "again"] {
        let published = publish();
        assert!(
            published.status.success(),
            "{attempt}: {}",
            stderr(&published)
        );
    }
    let valid = read_topic(&pipeline.topic)
        .into_iter()
        .filter(|m| oracle::refusal(&m.payload).is_none())
        .count();
    let replayed: Vec<RawMessage> = read_topic(&target)
        .into_iter()
        .filter(|m| m.headers.iter().any(|(k, _)| k == "braid-replay-id"))
        .collect();
    assert_eq!(
        replayed.len(),
        valid,
        "each valid record published once, the second run added none"
    );
}
