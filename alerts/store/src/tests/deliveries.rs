//! Alert delivery order and silences on a real PostgreSQL database.

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::PgPool;

use crate::{due_deliveries, mark_delivered, mark_failed, next_due, release_silenced, silence};

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

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
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

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn when_a_silence_ends_each_state_not_yet_delivered_is_queued(pool: PgPool) {
    let r = ["webhook:w"];
    // x fired and was delivered; during the silence it resolved and fired again: the receiver
    // already believes it fires.
    transition(&pool, "x", "firing", &r, "delivered").await;
    transition(&pool, "x", "resolved", &r, "silenced").await;
    let x_again = transition(&pool, "x", "firing", &r, "silenced").await;
    // y fired during the silence: never sent.
    let y_firing = transition(&pool, "y", "firing", &r, "silenced").await;
    // z fired and was delivered, and resolved during the silence.
    transition(&pool, "z", "firing", &r, "delivered").await;
    let z_resolved = transition(&pool, "z", "resolved", &r, "silenced").await;
    // w went pending and back to inactive during the silence: the receiver saw nothing of it
    // and believes it is not firing.
    transition(&pool, "w", "pending", &r, "silenced").await;
    let w_inactive = transition(&pool, "w", "inactive", &r, "silenced").await;
    let ends = t0() + Duration::minutes(10);
    silence(&pool, "r", ends).await.unwrap();
    assert_eq!(
        release_silenced(&pool, "r", ends - Duration::seconds(1))
            .await
            .unwrap(),
        0,
        "nothing while the silence lasts"
    );
    assert_eq!(release_silenced(&pool, "r", ends).await.unwrap(), 2);
    let status = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT status FROM braid_internal.alert_deliveries WHERE transition_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(status(y_firing).await, "pending", "y's firing is sent");
    assert_eq!(status(z_resolved).await, "pending", "z's resolved is sent");
    assert_eq!(
        status(x_again).await,
        "silenced",
        "x fires, as last delivered"
    );
    assert_eq!(
        status(w_inactive).await,
        "silenced",
        "w is not active, as last delivered"
    );
    assert_eq!(
        due_ids(&pool, "webhook:w", Utc::now() + Duration::days(1)).await,
        [y_firing, z_resolved]
    );
    assert_eq!(
        release_silenced(&pool, "r", ends).await.unwrap(),
        0,
        "queued once"
    );
}
