//! The speed layer's stored positions: the next offset to consume, per partition.

use crate::position::{Offset, Partition, Positions};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

/// The stored next offset of every partition of `topic` that has one.
pub async fn load_positions(
    db: impl PgExecutor<'_>,
    topic: &str,
) -> Result<Positions, sqlx::Error> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM braid_internal.speed_positions WHERE topic = $1 ORDER BY partition")
            .bind(topic)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Stores `offset` as the start of a partition that has no stored position yet, and returns
/// the position that is stored afterwards (the existing one if there was one).
pub async fn store_start_if_absent(
    db: impl PgExecutor<'_>,
    topic: &str,
    partition: Partition,
    offset: Offset,
) -> Result<i64, sqlx::Error> {
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
pub async fn store_positions(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    next_offsets: &Positions,
) -> Result<(), sqlx::Error> {
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

/// Partitions whose stored position was not the one a flush expected: another process
/// consumed them since (a rebalance this process missed). The flush must not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partitions {partitions:?} of {topic} were advanced by another process")]
pub struct Fenced {
    /// The topic.
    pub topic: String,
    /// The partitions whose stored position differed from the expected one.
    pub partitions: Vec<i32>,
}

/// Why advancing positions failed.
#[derive(Debug, thiserror::Error)]
pub enum AdvanceError {
    /// Another process moved a position: roll back.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One partition's stored position moving forward in a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionMove {
    /// The partition.
    pub partition: Partition,
    /// The position this process expects to be stored (the fence).
    pub expected: i64,
    /// The position after the flush.
    pub next: i64,
}

/// A partition's stored position before and after an operator moved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Before.
    pub before: i64,
    /// After.
    pub after: i64,
}

/// Moves each partition from its expected stored position to the next, inside the flush's
/// transaction, only if the stored position is still the expected one. `newest_event_micros`,
/// the newest event time the flush covers, raises the partitions' `newest_event_time` (the
/// API's freshness).
pub async fn advance_positions(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    moves: &[PositionMove],
    newest_event_micros: Option<i64>,
) -> Result<(), AdvanceError> {
    if moves.is_empty() {
        return Ok(());
    }
    let partitions: Vec<i32> = moves.iter().map(|m| m.partition).collect();
    let expected: Vec<i64> = moves.iter().map(|m| m.expected).collect();
    let next: Vec<i64> = moves.iter().map(|m| m.next).collect();
    let moved: Vec<(i32,)> = sqlx::query_as(
        "UPDATE braid_internal.speed_positions s SET next_offset = m.next, updated_at = now(),
           newest_event_time = greatest(s.newest_event_time, timestamptz 'epoch' + $5::bigint * interval '1 microsecond')
         FROM UNNEST($2::int[], $3::bigint[], $4::bigint[]) AS m(p, expected, next)
         WHERE s.topic = $1 AND s.partition = m.p AND s.next_offset = m.expected
         RETURNING s.partition",
    )
    .bind(topic)
    .bind(&partitions)
    .bind(&expected)
    .bind(&next)
    .bind(newest_event_micros)
    .fetch_all(&mut **tx)
    .await?;
    if moved.len() == moves.len() {
        return Ok(());
    }
    let moved: Vec<i32> = moved.into_iter().map(|(p,)| p).collect();
    Err(Fenced {
        topic: topic.to_string(),
        partitions: partitions
            .into_iter()
            .filter(|p| !moved.contains(p))
            .collect(),
    }
    .into())
}

/// Whether the speed layer has consumed any record of any topic.
pub async fn any_consumed(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let (any,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM braid_internal.speed_positions WHERE next_offset > 0)",
    )
    .fetch_one(pool)
    .await?;
    Ok(any)
}

/// A sub-select rendering the speed layer's state for the topic `topic` (an SQL expression): its
/// stored positions, the newest event time they cover and the last flush, the times rendered by
/// the given expressions over `max(newest_event_time)` and `max(updated_at)`.
pub fn speed_state_select(topic: &str, newest: &str, flushed: &str) -> String {
    format!(
        "SELECT json_build_object( \
           'positions', coalesce(json_agg(json_build_object('partition', partition, 'next_offset', next_offset) \
              ORDER BY partition), '[]'::json), \
           'newest_event_time', {newest}, \
           'last_flush_at', {flushed}) \
         FROM braid_internal.speed_positions WHERE topic = {topic}"
    )
}
