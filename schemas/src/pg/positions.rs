//! The speed layer's stored positions: the next offset to consume, per partition.

use std::collections::BTreeMap;

use sqlx::{PgExecutor, Postgres, Transaction};

/// The stored next offset of every partition of `topic` that has one.
pub async fn load_positions(db: impl PgExecutor<'_>, topic: &str) -> Result<BTreeMap<i32, i64>, sqlx::Error> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM braid_internal.speed_positions WHERE topic = $1 ORDER BY partition")
            .bind(topic)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Stores `offset` as the start of a partition that has no stored position yet, and returns
/// the position that is stored afterwards (the existing one if there was one).
pub async fn store_start_if_absent(db: impl PgExecutor<'_>, topic: &str, partition: i32, offset: i64) -> Result<i64, sqlx::Error> {
    let (stored,): (i64,) = sqlx::query_as(
        "WITH inserted AS (
             INSERT INTO braid_internal.speed_positions (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO NOTHING RETURNING next_offset)
         SELECT next_offset FROM inserted
         UNION ALL
         SELECT next_offset FROM braid_internal.speed_positions WHERE topic = $1 AND partition = $2
         LIMIT 1",
    )
    .bind(topic)
    .bind(partition)
    .bind(offset)
    .fetch_one(db)
    .await?;
    Ok(stored)
}

/// Stores the next offsets of a flush, inside the flush's transaction.
pub async fn store_positions(tx: &mut Transaction<'_, Postgres>, topic: &str, next_offsets: &BTreeMap<i32, i64>) -> Result<(), sqlx::Error> {
    if next_offsets.is_empty() {
        return Ok(());
    }
    let partitions: Vec<i32> = next_offsets.keys().copied().collect();
    let offsets: Vec<i64> = next_offsets.values().copied().collect();
    sqlx::query(
        "INSERT INTO braid_internal.speed_positions (topic, partition, next_offset)
         SELECT $1, p, o FROM UNNEST($2::int[], $3::bigint[]) AS t(p, o)
         ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
    )
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
