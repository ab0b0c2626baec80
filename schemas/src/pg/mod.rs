//! The PostgreSQL metadata store: migrations, stored positions, the epoch, cuts and dead
//! letters. Every value is a bound parameter.

mod cut;
mod dead_letters;
mod positions;
mod replay;

pub use cut::{Cut, current_epoch_for_share, take_cut};
pub use replay::{ReplayError, SpeedReset, cut_at_positions, last_cut, reset_speed_to_last_cut};
pub use dead_letters::{DeadLetter, Layer, insert_dead_letters};
pub use positions::{
    AdvanceError, Fenced, advance_positions, load_positions, store_positions, store_start_if_absent,
};

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The static migrations in `migrations/` at the repository root.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Why a metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Applying migrations failed.
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed. Usually transient (connection loss) and worth retrying.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether retrying the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Migrate(_) => false,
            StoreError::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|code| code == "40001" || code == "40P01")
            }
        }
    }
}

/// Applies all pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests;

/// Creates the speed and batch tables of every view (idempotent). Tables are named from the
/// view's fingerprint, so a changed definition gets new tables and never mixes with old rows.
pub async fn ensure_view_tables(
    pool: &PgPool,
    views: &[crate::view::View],
) -> Result<(), StoreError> {
    for view in views {
        let layout = crate::pg_layout::ViewLayout::of(view);
        // Identifiers come only from validated configuration (schemas::event_schema::is_identifier).
        sqlx::raw_sql(sqlx::AssertSqlSafe(layout.create_speed_table_sql()))
            .execute(pool)
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(layout.create_batch_table_sql()))
            .execute(pool)
            .await?;
    }
    Ok(())
}
