//! Epochs and cuts: the exact boundary between batch and speed.
//!
//! A flush reads the epoch with [`current_epoch_for_share`] inside its transaction; a cut
//! ([`take_cut`]) takes the same row FOR UPDATE, so every flush commits wholly before or
//! wholly after a cut.

use crate::position::Positions;
use sqlx::{PgPool, Postgres, Transaction};

/// A closed epoch and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The epoch that was closed: all its speed rows hold records below `offsets`.
    pub epoch: i64,
    /// The new current epoch (`epoch + 1`).
    pub next_epoch: i64,
    /// cut(epoch, p): the stored next offset of each partition when the cut was taken.
    pub offsets: Positions,
}

/// Reads the current epoch under a shared lock, inside a flush transaction.
pub async fn current_epoch_for_share(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<i64, sqlx::Error> {
    let (epoch,): (i64,) =
        sqlx::query_as("SELECT current_epoch FROM braid_internal.epoch FOR SHARE")
            .fetch_one(&mut **tx)
            .await?;
    Ok(epoch)
}

/// Takes a cut of `topic`: records every partition's stored next offset as cut(e, p) and
/// moves the epoch to e + 1, in one transaction holding the epoch row exclusively.
pub async fn take_cut(pool: &PgPool, topic: &str) -> Result<Cut, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (epoch,): (i64,) =
        sqlx::query_as("SELECT current_epoch FROM braid_internal.epoch FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "INSERT INTO braid_internal.cuts (epoch, topic, partition, cut_offset)
         SELECT $1, topic, partition, next_offset FROM braid_internal.speed_positions WHERE topic = $2
         RETURNING partition, cut_offset",
    )
    .bind(epoch)
    .bind(topic)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("UPDATE braid_internal.epoch SET current_epoch = $1")
        .bind(epoch + 1)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Cut {
        epoch,
        next_epoch: epoch + 1,
        offsets: rows.into_iter().collect(),
    })
}
