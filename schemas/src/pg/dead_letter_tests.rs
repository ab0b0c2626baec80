//! The dead-letter counters against an independent `count(*)`, and the prune of old dead
//! letters, on a real PostgreSQL database per test. (The prune of old alert history is tested
//! with its SQL, in `alerts-store`.)

use chrono::{Duration, Utc};
use sqlx::PgPool;

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
