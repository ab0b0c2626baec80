//! Alert delivery, silences and the leader fence on a real PostgreSQL database.

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::PgPool;

use super::alerts::{due_deliveries, mark_delivered, mark_failed, next_due};
use super::leader;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 4, 0, 0).unwrap()
}

/// Records a transition of `fingerprint` (rule `r`) to `to`, with a delivery of `status` to
/// each of `receivers`, and makes it the instance's last; returns its id.
async fn transition(
    pool: &PgPool,
    fingerprint: &str,
    to: &str,
    receivers: &[&str],
    status: &str,
) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO braid_internal.alert_transitions (fingerprint, rule, labels, from_state, \
           to_state, value, metric, op, threshold, window_start, window_end, batch, speed, at) \
         VALUES ($1, 'r', '{}', 'inactive', $2, 1, 'count', 'gt', 0, $3, $3, NULL, '{}', $3) \
         RETURNING id",
    )
    .bind(fingerprint)
    .bind(to)
    .bind(t0())
    .fetch_one(pool)
    .await
    .unwrap();
    for receiver in receivers {
        sqlx::query(
            "INSERT INTO braid_internal.alert_deliveries (transition_id, receiver, status, next_attempt_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(receiver)
        .bind(status)
        .bind(t0())
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO braid_internal.alert_instances (fingerprint, rule, labels, state, \
           last_transition_id, evaluated_at) VALUES ($1, 'r', '{}', $2, $3, $4) \
         ON CONFLICT (fingerprint) DO UPDATE SET state = EXCLUDED.state, \
           last_transition_id = EXCLUDED.last_transition_id",
    )
    .bind(fingerprint)
    .bind(to)
    .bind(id)
    .bind(t0())
    .execute(pool)
    .await
    .unwrap();
    id
}

async fn due_ids(pool: &PgPool, receiver: &str, now: DateTime<Utc>) -> Vec<i64> {
    due_deliveries(pool, receiver, now, 100)
        .await
        .unwrap()
        .iter()
        .map(|d| d.transition.id)
        .collect()
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn a_transition_waits_for_its_instance_s_earlier_one_to_the_same_receiver(pool: PgPool) {
    let both = ["webhook:w", "kafka:k"];
    let a_firing = transition(&pool, "a", "firing", &both, "pending").await;
    let a_resolved = transition(&pool, "a", "resolved", &both, "pending").await;
    let b_firing = transition(&pool, "b", "firing", &both, "pending").await;
    let now = t0() + Duration::seconds(1);
    // a's firing fails on the webhook and waits an hour; it goes out to Kafka.
    let retry_at = t0() + Duration::hours(1);
    mark_failed(&pool, a_firing, "webhook:w", "HTTP 503", retry_at)
        .await
        .unwrap();
    mark_delivered(&pool, a_firing, "kafka:k").await.unwrap();
    assert_eq!(
        due_ids(&pool, "webhook:w", now).await,
        [b_firing],
        "a's resolved waits for a's firing on the webhook; b does not"
    );
    assert_eq!(
        due_ids(&pool, "kafka:k", now).await,
        [a_resolved, b_firing],
        "each receiver waits only for its own deliveries"
    );
    mark_delivered(&pool, b_firing, "webhook:w").await.unwrap();
    assert_eq!(
        next_due(&pool, "webhook:w").await.unwrap(),
        Some(retry_at),
        "the next look is when a's firing is retried, not when its waiting resolved was due"
    );
    let due = due_deliveries(&pool, "webhook:w", retry_at, 100)
        .await
        .unwrap();
    assert_eq!(
        due.iter()
            .map(|d| (
                d.transition.id,
                d.transition.fingerprint.as_str(),
                d.attempts
            ))
            .collect::<Vec<_>>(),
        [(a_firing, "a", 1)],
        "with the attempts so far"
    );
    mark_delivered(&pool, a_firing, "webhook:w").await.unwrap();
    assert_eq!(
        due_ids(&pool, "webhook:w", now).await,
        [a_resolved],
        "delivered, a's firing no longer holds back its resolved"
    );
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn held_by_counts_only_the_named_leader_lock(pool: PgPool) {
    // A server process holding some unrelated advisory locks (one bigint key, two int keys).
    let mut other = pool.acquire().await.unwrap();
    let other_pid: i32 =
        sqlx::query_scalar("SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock(42), pg_advisory_lock(7, 9)) AS taken")
            .fetch_one(&mut *other)
            .await
            .unwrap();
    let mut lock = leader::LeaderLock::try_take(&pool, "braid.test-leader")
        .await
        .unwrap()
        .expect("the lock is free");
    let leader_pid = lock.backend_pid();
    assert!(lock.still_held().await);
    assert!(
        !leader::held_by(&pool, other_pid, "braid.test-leader")
            .await
            .unwrap(),
        "another advisory lock is not the leader's"
    );
    assert!(
        leader::held_by(&pool, leader_pid, "braid.test-leader")
            .await
            .unwrap()
    );
    assert!(
        !leader::held_by(&pool, leader_pid, "braid.another-leader")
            .await
            .unwrap(),
        "the leader of one role does not hold another's"
    );
    assert_eq!(
        leader::holder(&pool, "braid.test-leader").await.unwrap(),
        Some(leader_pid)
    );
    lock.release().await;
    assert!(
        !leader::held_by(&pool, leader_pid, "braid.test-leader")
            .await
            .unwrap()
    );
}
