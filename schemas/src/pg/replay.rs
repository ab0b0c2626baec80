//! Moving the speed layer's positions for operators: back to the last cut to rebuild the
//! speed rows (`braid replay speed`), or forward to the Delta sink's positions with a cut when
//! Kafka no longer holds what the speed layer needs (`braid recover --from-lake`). Both run in
//! one transaction holding the epoch row exclusively, so no flush or cut interleaves; a
//! running speed process is fenced on its next flush and re-reads from the new positions.

use std::collections::BTreeMap;

use sqlx::PgPool;

use super::cut::Cut;
use super::positions::Moved;
use crate::position::{Partition, Positions};

/// Why a replay was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The asked start lies before the last cut: its records are already in a batch run's
    /// input, and replaying them into the speed rows would count them twice.
    #[error(
        "cannot replay from cut {asked}: the last cut of {topic} is epoch {last}, and records \
         below it belong to the batch layer (a replay from an earlier cut would count them twice); \
         replay from the last cut, or run a batch to recompute history"
    )]
    BeforeLastCut {
        /// The topic.
        topic: String,
        /// The cut asked for.
        asked: i64,
        /// The last cut.
        last: i64,
    },
    /// No cut with this epoch exists.
    #[error("{topic} has no cut {asked} (the last cut is {last:?})")]
    NoSuchCut {
        /// The topic.
        topic: String,
        /// The cut asked for.
        asked: i64,
        /// The last cut, if any.
        last: Option<i64>,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a reset to the last cut did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeedReset {
    /// The cut replayed from; `None` when the topic has no cut (replay from its start).
    pub cut_epoch: Option<i64>,
    /// Per partition: (stored position before, position after).
    pub moved: BTreeMap<Partition, Moved>,
    /// Speed rows deleted over all views.
    pub deleted_rows: u64,
}

impl SpeedReset {
    /// Records the speed layer will read again.
    pub fn records_to_replay(&self) -> i64 {
        self.moved.values().map(|m| m.before - m.after).sum()
    }
}

/// The last cut of `topic`, if any.
pub async fn last_cut(pool: &PgPool, topic: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(epoch) FROM braid_internal.cuts WHERE topic = $1")
        .bind(topic)
        .fetch_one(pool)
        .await
}

/// cut(epoch, p) of every partition of `topic`.
pub async fn cut_offsets(
    db: impl sqlx::PgExecutor<'_>,
    topic: &str,
    epoch: i64,
) -> Result<Positions, sqlx::Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, cut_offset FROM braid_internal.cuts WHERE topic = $1 AND epoch = $2",
    )
    .bind(topic)
    .bind(epoch)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Deletes the speed rows written after the last cut of `topic` (epochs above it) from
/// `speed_tables`, and moves the stored positions back to that cut. Partitions the cut does
/// not know (and every partition when there is no cut) go back to `starts`, the first offset
/// Kafka holds. `asked` must be the last cut if given.
pub async fn reset_speed_to_last_cut(
    pool: &PgPool,
    topic: &str,
    speed_tables: &[String],
    asked: Option<i64>,
    starts: &Positions,
) -> Result<SpeedReset, ReplayError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT current_epoch FROM braid_internal.epoch FOR UPDATE")
        .execute(&mut *tx)
        .await?;
    let last: Option<i64> =
        sqlx::query_scalar("SELECT max(epoch) FROM braid_internal.cuts WHERE topic = $1")
            .bind(topic)
            .fetch_one(&mut *tx)
            .await?;
    match (asked, last) {
        (Some(asked), Some(last)) if asked < last => {
            return Err(ReplayError::BeforeLastCut {
                topic: topic.into(),
                asked,
                last,
            });
        }
        (Some(asked), last) if Some(asked) != last => {
            return Err(ReplayError::NoSuchCut {
                topic: topic.into(),
                asked,
                last,
            });
        }
        _ => {}
    }
    let cut = match last {
        Some(epoch) => cut_offsets(&mut *tx, topic, epoch).await?,
        None => BTreeMap::new(),
    };
    let mut deleted_rows = 0;
    for table in speed_tables {
        // Table names come from validated view definitions (pg_layout).
        deleted_rows += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE epoch > $1"
        )))
        .bind(last.unwrap_or(0))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    let stored = super::load_positions(&mut *tx, topic).await?;
    let mut moved = BTreeMap::new();
    for (&partition, &before) in &stored {
        let after = cut
            .get(&partition)
            .or_else(|| starts.get(&partition))
            .copied()
            .unwrap_or(0);
        sqlx::query(
            "UPDATE braid_internal.speed_positions SET next_offset = $3, updated_at = now() \
             WHERE topic = $1 AND partition = $2",
        )
        .bind(topic)
        .bind(partition)
        .bind(after)
        .execute(&mut *tx)
        .await?;
        moved.insert(partition, Moved { before, after });
    }
    tx.commit().await?;
    Ok(SpeedReset {
        cut_epoch: last,
        moved,
        deleted_rows,
    })
}

/// A cut taken at given positions, and how each partition's stored position moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutAtPositions {
    /// The cut.
    pub cut: Cut,
    /// Per partition: the stored position before and after.
    pub moved: BTreeMap<Partition, Moved>,
}

/// Takes a cut at `targets` (e.g. the Delta sink's positions) and moves the speed layer's
/// stored positions there, in one transaction. A partition already past its target keeps its
/// position (the speed layer never goes back here, so nothing is counted twice).
pub async fn cut_at_positions(
    pool: &PgPool,
    topic: &str,
    targets: &Positions,
) -> Result<CutAtPositions, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (epoch,): (i64,) =
        sqlx::query_as("SELECT current_epoch FROM braid_internal.epoch FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let stored = super::load_positions(&mut *tx, topic).await?;
    let mut moved = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    let partitions: std::collections::BTreeSet<i32> =
        stored.keys().chain(targets.keys()).copied().collect();
    for partition in partitions {
        let before = stored.get(&partition).copied().unwrap_or(0);
        let after = before.max(targets.get(&partition).copied().unwrap_or(0));
        sqlx::query(
            "INSERT INTO braid_internal.speed_positions (topic, partition, next_offset) VALUES ($1, $2, $3) \
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
        )
        .bind(topic)
        .bind(partition)
        .bind(after)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO braid_internal.cuts (epoch, topic, partition, cut_offset) VALUES ($1, $2, $3, $4)",
        )
        .bind(epoch)
        .bind(topic)
        .bind(partition)
        .bind(after)
        .execute(&mut *tx)
        .await?;
        moved.insert(partition, Moved { before, after });
        offsets.insert(partition, after);
    }
    sqlx::query("UPDATE braid_internal.epoch SET current_epoch = $1")
        .bind(epoch + 1)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(CutAtPositions {
        cut: Cut {
            epoch,
            next_epoch: epoch + 1,
            offsets,
        },
        moved,
    })
}
