//! The speed layer against the real broker and database, checked against the independent
//! fold in `oracle`: exactness, SIGKILL, rebalances, cuts, dead letters, lost offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use sqlx::PgPool;

use crate::compare::{assert_rows_equal, speed_rows};
use crate::oracle::{self, RawMessage};
use crate::support::{Pipeline, Running, read_topic, stderr, wait_until};

/// Waits until the speed layer's stored positions reach the topic's last committed records.
async fn wait_caught_up(pool: &PgPool, topic: &str, processes: &mut [&mut Running]) {
    let ends = crate::support::committed_ends(topic);
    wait_until(
        "the speed layer to reach the end of the topic",
        Duration::from_secs(120),
        || {
            for process in processes.iter_mut() {
                process.assert_running("a speed process");
            }
            async {
                let stored = schemas::pg::load_positions(pool, topic).await.unwrap();
                ends.iter()
                    .all(|(p, end)| stored.get(p).is_some_and(|at| at >= end))
            }
        },
    )
    .await;
}

async fn assert_matches_oracle(pool: &PgPool, messages: &[RawMessage]) {
    let expected = oracle::demo_views(messages);
    let actual = speed_rows(pool, i64::MIN, i64::MAX).await;
    assert_rows_equal(&expected, &actual, "all epochs");
}

#[sqlx::test(migrations = false)]
async fn aggregates_equal_an_independent_fold_and_refused_records_are_dead_lettered(pool: PgPool) {
    let pipeline = Pipeline::new("speed-exact", &pool).await;
    pipeline.produce(20_000, 1, 3);
    let mut speed = pipeline.start_speed("a", "a");
    wait_caught_up(&pool, &pipeline.topic, &mut [&mut speed]).await;
    speed.kill();

    let messages = read_topic(&pipeline.topic);
    assert_eq!(messages.len(), 20_000);
    assert_matches_oracle(&pool, &messages).await;

    let mut expected_refusals: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    for m in &messages {
        if let Some(code) = oracle::refusal(&m.payload) {
            expected_refusals.insert((m.partition, m.offset), code);
        }
    }
    assert!(
        expected_refusals.len() > 300,
        "the stream should hold malformed records"
    );
    let letters: Vec<(i32, i64, String, String, i32)> = sqlx::query_as(
        "SELECT partition, \"offset\", reason_code, reason, payload_len FROM braid_internal.dead_letters WHERE layer = 'speed' AND topic = $1",
    )
    .bind(&pipeline.topic)
    .fetch_all(&pool)
    .await
    .unwrap();
    let actual: BTreeMap<(i32, i64), &str> = letters
        .iter()
        .map(|(p, o, code, _, _)| ((*p, *o), code.as_str()))
        .collect();
    assert_eq!(
        actual, expected_refusals,
        "every refused record, with its reason, exactly once"
    );
    assert_eq!(letters.len(), actual.len());
    for (p, o, _, reason, length) in &letters {
        assert!(!reason.is_empty());
        let original = messages
            .iter()
            .find(|m| m.partition == *p && m.offset == *o)
            .unwrap();
        assert_eq!(*length as usize, original.payload.len());
    }
}

#[sqlx::test(migrations = false)]
async fn sigkill_at_random_moments_leaves_the_same_final_answer(pool: PgPool) {
    let pipeline = Pipeline::new("speed-sigkill", &pool).await;
    pipeline.produce(1, 99, 4); // creates the topic with 4 partitions
    let mut producer = pipeline.produce_in_background(100_000, 2, 8_000, 4);
    let mut rng = rand::rng();
    let mut kills = 0;
    while kills < 12 {
        let mut speed = pipeline.start_speed(&format!("kill{kills}"), "only");
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_500))).await;
        speed.kill();
        kills += 1;
    }
    assert!(producer.wait_success());
    let mut speed = pipeline.start_speed("final", "only");
    wait_caught_up(&pool, &pipeline.topic, &mut [&mut speed]).await;
    speed.kill();
    let messages = read_topic(&pipeline.topic);
    assert_eq!(messages.len(), 100_001);
    assert_matches_oracle(&pool, &messages).await;
    let (letters,): (i64,) = sqlx::query_as("SELECT count(*) FROM braid_internal.dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        letters as usize,
        messages
            .iter()
            .filter(|m| oracle::refusal(&m.payload).is_some())
            .count()
    );
}

#[sqlx::test(migrations = false)]
async fn two_processes_with_a_rebalance_in_the_middle_still_match(pool: PgPool) {
    let pipeline = Pipeline::new("speed-rebalance", &pool).await;
    pipeline.produce(1, 98, 4);
    let mut producer = pipeline.produce_in_background(40_000, 3, 10_000, 4);
    let mut first = pipeline.start_speed("first", "first");
    wait_until(
        "the first process to store positions",
        Duration::from_secs(60),
        || async { crate::support::stored_total(&pool, &pipeline.topic).await > 2_000 },
    )
    .await;
    let mut second = pipeline.start_speed("second", "second");
    assert!(producer.wait_success());
    wait_caught_up(&pool, &pipeline.topic, &mut [&mut first, &mut second]).await;
    first.kill();
    second.kill();
    let log = crate::support::log_of(&pipeline, "speed", "first");
    assert!(
        log.contains("partitions revoked"),
        "the second process must have caused a rebalance"
    );
    let messages = read_topic(&pipeline.topic);
    assert_eq!(messages.len(), 40_001);
    assert_matches_oracle(&pool, &messages).await;
}

#[sqlx::test(migrations = false)]
async fn a_cut_taken_while_flushes_run_splits_records_at_the_recorded_offsets(pool: PgPool) {
    let pipeline = Pipeline::new("speed-cut", &pool).await;
    pipeline.produce(1, 97, 3);
    let mut producer = pipeline.produce_in_background(30_000, 4, 10_000, 3);
    let mut speed = pipeline.start_speed("a", "a");
    let mut cuts = Vec::new();
    for threshold in [3_000, 12_000, 22_000] {
        wait_until("positions to advance", Duration::from_secs(60), || async {
            crate::support::stored_total(&pool, &pipeline.topic).await > threshold
        })
        .await;
        cuts.push(schemas::pg::take_cut(&pool, &pipeline.topic).await.unwrap());
    }
    assert!(producer.wait_success());
    wait_caught_up(&pool, &pipeline.topic, &mut [&mut speed]).await;
    speed.kill();
    let messages = read_topic(&pipeline.topic);

    let mut lower: BTreeMap<i32, i64> = BTreeMap::new();
    for cut in &cuts {
        let segment: Vec<RawMessage> = messages
            .iter()
            .filter(|m| {
                m.offset >= lower.get(&m.partition).copied().unwrap_or(0)
                    && m.offset < cut.offsets.get(&m.partition).copied().unwrap_or(0)
            })
            .cloned()
            .collect();
        assert!(!segment.is_empty());
        let actual = speed_rows(&pool, cut.epoch, cut.epoch).await;
        assert_rows_equal(
            &oracle::demo_views(&segment),
            &actual,
            &format!("epoch {}", cut.epoch),
        );
        lower = cut.offsets.clone();
    }
    let last = cuts.last().unwrap();
    let rest: Vec<RawMessage> = messages
        .iter()
        .filter(|m| m.offset >= last.offsets.get(&m.partition).copied().unwrap_or(0))
        .cloned()
        .collect();
    assert_rows_equal(
        &oracle::demo_views(&rest),
        &speed_rows(&pool, last.next_epoch, i64::MAX).await,
        "after the last cut",
    );
}

#[sqlx::test(migrations = false)]
async fn a_position_kafka_no_longer_holds_stops_with_a_clear_error(pool: PgPool) {
    let pipeline = Pipeline::new("speed-retention", &pool).await;
    pipeline.produce(200, 5, 1);
    crate::kafka_admin::delete_records_below(&pipeline.topic, &[(0, 100)].into()).await;

    sqlx::query("INSERT INTO braid_internal.speed_positions (topic, partition, next_offset) VALUES ($1, 0, 10)")
        .bind(&pipeline.topic)
        .execute(&pool)
        .await
        .unwrap();
    let output = tokio::task::spawn_blocking({
        let pipeline = pipeline.clone();
        move || pipeline.braid().arg("speed").output().unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("partition 0 of") && text.contains("offset 10 is out of range"),
        "{text}"
    );
    assert_eq!(
        schemas::pg::load_positions(&pool, &pipeline.topic)
            .await
            .unwrap()[&0],
        10,
        "nothing skipped"
    );
}

#[sqlx::test(migrations = false)]
async fn a_compacted_source_topic_is_refused_by_both_layers(pool: PgPool) {
    let pipeline = Pipeline::new("speed-compacted", &pool).await;
    crate::kafka_admin::create_topic_with(&pipeline.topic, 1, &[("cleanup.policy", "compact")])
        .await;
    for layer in ["speed", "sink"] {
        let output = tokio::task::spawn_blocking({
            let pipeline = pipeline.clone();
            move || pipeline.braid().arg(layer).output().unwrap()
        })
        .await
        .unwrap();
        assert!(!output.status.success(), "{layer} ran on a compacted topic");
        let text = stderr(&output);
        assert!(
            text.contains("kafka.topic") && text.contains("cleanup.policy=compact"),
            "{layer}: {text}"
        );
    }
}

/// Two processes configured with the same static membership id fence each other: each fatal
/// error replaces the client, which fences the other one. They must not ping-pong for ever: a
/// process whose new clients keep failing stops with an error naming `group.instance.id`.
#[sqlx::test(migrations = false)]
async fn two_processes_with_one_group_instance_id_stop_with_a_clear_error(pool: PgPool) {
    let pipeline = Pipeline::new("speed-same-member", &pool).await;
    pipeline.produce(200, 21, 2);
    let mut first = pipeline.start_speed("first", "same");
    let mut second = pipeline.start_speed("second", "same");
    wait_until(
        "one of the two processes to stop",
        Duration::from_secs(240),
        || {
            let ended =
                first.0.try_wait().unwrap().is_some() || second.0.try_wait().unwrap().is_some();
            async move { ended }
        },
    )
    .await;
    let logs = crate::support::log_of(&pipeline, "speed", "first")
        + &crate::support::log_of(&pipeline, "speed", "second");
    assert!(
        logs.contains("group.instance.id") && logs.contains("fatal errors"),
        "the stopped process says why"
    );
}
