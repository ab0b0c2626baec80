//! The dead-letter counters against an independent `count(*)`, and the prune of old alert
//! history and dead letters, on a real PostgreSQL database per test.

use chrono::{Duration, Utc};
use sqlx::PgPool;

use super::alert_retention;
use super::dead_letters::{self, DeadLetter, Layer, insert_dead_letters};
use crate::record::Rejection;

fn letter(partition: i32, offset: i64) -> DeadLetter {
    let rejection = match offset % 3 {
        0 => Rejection::NotJson {
            detail: "eof".into(),
        },
        1 => Rejection::MissingField { field: "ts".into() },
        _ => Rejection::RefusedByDatabase {
            detail: "22P05".into(),
        },
    };
    DeadLetter::new(partition, offset, rejection, b"{}", 16)
}

/// (layer, reason, count) from the counters, and from the table itself.
async fn both_counts(pool: &PgPool) -> (Vec<(String, String, i64)>, Vec<(String, String, i64)>) {
    let mut counted: Vec<(String, String, i64)> = dead_letters::counts(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.layer, c.reason_code, c.count))
        .collect();
    counted.sort();
    let independent: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT layer, reason_code, count(*) FROM braid_internal.dead_letters \
         GROUP BY layer, reason_code ORDER BY layer, reason_code",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (counted, independent)
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn dead_letter_counts_equal_a_count_of_the_table_through_inserts_repeats_and_prunes(
    pool: PgPool,
) {
    // Overlapping batches from three layers: repeated positions are not stored twice, and
    // must not be counted twice either.
    for (layer, range) in [
        (Layer::Speed, 0..40),
        (Layer::Speed, 20..70),
        (Layer::Sink, 0..25),
        (Layer::Dimension, 5..9),
        (Layer::Sink, 10..30),
    ] {
        let letters: Vec<DeadLetter> = range.map(|o| letter((o % 2) as i32, o)).collect();
        let mut tx = pool.begin().await.unwrap();
        insert_dead_letters(&mut tx, layer, "t", &letters)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let (counted, independent) = both_counts(&pool).await;
    assert_eq!(counted, independent);
    assert!(!counted.is_empty());

    // Half of them old: the prune deletes the old ones but the speed layer's
    // refused_by_database (the batch layer reads them), in chunks smaller than the total.
    sqlx::query(
        "UPDATE braid_internal.dead_letters SET received_at = now() - interval '40 days' \
         WHERE \"offset\" % 2 = 0",
    )
    .execute(&pool)
    .await
    .unwrap();
    let old_prunable: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM braid_internal.dead_letters WHERE \"offset\" % 2 = 0 \
         AND NOT (layer = 'speed' AND reason_code = 'refused_by_database')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let refused_before = super::refused_by_database(&pool, "t").await.unwrap();
    let mut pruned = 0;
    loop {
        let n = dead_letters::prune_chunk(&pool, Utc::now() - Duration::days(30), 7)
            .await
            .unwrap();
        pruned += n;
        if n < 7 {
            break;
        }
    }
    assert_eq!(pruned as i64, old_prunable);
    let left_old: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM braid_internal.dead_letters WHERE received_at < now() - interval '30 days' \
         AND NOT (layer = 'speed' AND reason_code = 'refused_by_database')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left_old, 0);
    assert_eq!(
        super::refused_by_database(&pool, "t").await.unwrap(),
        refused_before,
        "the batch layer's list of refused records is kept whole"
    );
    let (counted, independent) = both_counts(&pool).await;
    assert_eq!(counted, independent);
}

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

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
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
    while let n @ 1.. = alert_retention::prune_instances(&pool, before, 1)
        .await
        .unwrap()
    {
        instances += n;
    }
    let mut transitions = 0;
    while let n @ 1.. = alert_retention::prune_transitions(&pool, before, 1)
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
