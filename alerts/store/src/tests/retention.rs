//! The prune of old alert history on a real PostgreSQL database.

use chrono::{Duration, Utc};
use sqlx::PgPool;

use crate::retention;

/// Stores an instance of rule `r` in `state`, last written `days` ago, pointing at its last
/// transition (recorded then, with one delivery in `delivery`); returns the transition's id.
async fn instance(pool: &PgPool, name: &str, state: &str, days: i64, delivery: &str) -> i64 {
    let at = Utc::now() - Duration::days(days);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO braid_internal.alert_transitions (fingerprint, rule, labels, from_state, to_state, \
           value, metric, op, threshold, window_start, window_end, speed, at) \
         VALUES ($1, 'r', '{}', 'inactive', $2, 1, 'count', 'gt', 0, $3, $3, '{}', $3) RETURNING id",
    )
    .bind(name)
    .bind(state)
    .bind(at)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO braid_internal.alert_deliveries (transition_id, receiver, status) VALUES ($1, 'webhook:x', $2)",
    )
    .bind(id)
    .bind(delivery)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO braid_internal.alert_instances (fingerprint, rule, labels, state, last_transition_id, evaluated_at) \
         VALUES ($1, 'r', '{}', $2, $3, $4)",
    )
    .bind(name)
    .bind(state)
    .bind(id)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    id
}

/// An earlier transition of an instance (not its last), `days` ago.
async fn earlier_transition(pool: &PgPool, name: &str, days: i64, delivery: &str) {
    let at = Utc::now() - Duration::days(days);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO braid_internal.alert_transitions (fingerprint, rule, labels, from_state, to_state, \
           value, metric, op, threshold, window_start, window_end, speed, at) \
         VALUES ($1, 'r', '{}', 'inactive', 'pending', 1, 'count', 'gt', 0, $2, $2, '{}', $2) RETURNING id",
    )
    .bind(name)
    .bind(at)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO braid_internal.alert_deliveries (transition_id, receiver, status) VALUES ($1, 'webhook:x', $2)",
    )
    .bind(id)
    .bind(delivery)
    .execute(pool)
    .await
    .unwrap();
}

async fn names(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn the_prune_deletes_old_finished_alert_history_and_keeps_what_is_live_or_owed(pool: PgPool) {
    instance(&pool, "old_resolved", "resolved", 40, "delivered").await;
    instance(&pool, "old_inactive", "inactive", 40, "silenced").await;
    instance(&pool, "old_firing", "firing", 40, "delivered").await;
    instance(&pool, "new_resolved", "resolved", 1, "delivered").await;
    earlier_transition(&pool, "old_firing", 50, "delivered").await;
    earlier_transition(&pool, "new_resolved", 45, "pending").await;
    earlier_transition(&pool, "new_resolved", 44, "delivered").await;
    let before = Utc::now() - Duration::days(30);
    let mut instances = 0;
    while let n @ 1.. = retention::prune_instances(&pool, before, 1).await.unwrap() {
        instances += n;
    }
    let mut transitions = 0;
    while let n @ 1.. = retention::prune_transitions(&pool, before, 1)
        .await
        .unwrap()
    {
        transitions += n;
    }
    assert_eq!(
        names(
            &pool,
            "SELECT fingerprint FROM braid_internal.alert_instances ORDER BY 1"
        )
        .await,
        ["new_resolved", "old_firing"],
        "old resolved and inactive instances go; live and recent ones stay"
    );
    assert_eq!(instances, 2);
    // Left: the last transitions of the two instances kept, and the old one still owed to a
    // receiver. Gone: the pruned instances' transitions, and the delivered earlier ones.
    assert_eq!(
        names(
            &pool,
            "SELECT fingerprint || ' ' || to_state FROM braid_internal.alert_transitions ORDER BY at"
        )
        .await,
        ["new_resolved pending", "old_firing firing", "new_resolved resolved"]
    );
    assert_eq!(transitions, 4);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM braid_internal.alert_deliveries d WHERE NOT EXISTS \
         (SELECT 1 FROM braid_internal.alert_transitions t WHERE t.id = d.transition_id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "deliveries go with their transitions");
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM braid_internal.alert_deliveries WHERE status = 'pending'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 1, "a pending delivery is never pruned");
}
