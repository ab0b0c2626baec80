//! The PostgreSQL metadata store: migrations, stored positions, the epoch, cuts and dead
//! letters. Every value is a bound parameter.
//!
//! A feature's own tables are in its crate, with their SQL: the alert tables in
//! `alerts-store`, the job history in `jobs-store`, the dimension tables in
//! `dimensions::store`. Their migrations stay with all the others in `migrations/`.

pub mod batch_runs;
mod cut;
pub mod dead_letters;
pub mod leader;
mod positions;
mod replay;
mod validation_rules;
pub mod view_changes;
pub mod view_definitions;

pub use cut::{Cut, current_epoch_for_share, take_cut};
pub use dead_letters::{DeadLetter, Layer, insert_dead_letters, refused_by_database};
pub use positions::{
    AdvanceError, Fenced, Moved, PositionMove, advance_positions, any_consumed, load_positions,
    speed_state_select, store_positions, store_start_if_absent,
};
pub use replay::{
    CutAtPositions, ReplayError, SpeedReset, cut_at_positions, cut_offsets, last_cut,
    reset_speed_to_last_cut,
};
pub use validation_rules::{
    RulesDiffer, RulesError, agreed_rules, check_validation_rules, record_validation_rules,
};

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// Run on each new connection: values PostgreSQL compresses (sketches and samples over about
/// 2 kB) are compressed with lz4 where the server was built with it and nobody chose a method
/// (the setting is at its default), pglz otherwise. lz4 is several times faster at about the
/// same size; the speed layer rewrites such rows at every flush (docs/benchmarks.md, "Round
/// three"). Readers decompress either transparently. A preference only: see
/// [`prefer_lz4_compression`].
pub const PREFER_LZ4_COMPRESSION: &str = "SELECT pg_catalog.set_config('default_toast_compression', 'lz4', false) \
     FROM pg_catalog.pg_settings WHERE name = 'default_toast_compression' AND source = 'default' \
     AND 'lz4' = ANY(enumvals)";

/// Runs [`PREFER_LZ4_COMPRESSION`] on a new connection, unprepared (poolers without prepared
/// statements accept it). A refusal by the server (a restricted catalog, a proxy) leaves the
/// connection as it was, with a warning: only a broken connection is an error, so a pool never
/// fails to connect over a preference.
pub async fn prefer_lz4_compression(connection: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    match sqlx::raw_sql(PREFER_LZ4_COMPRESSION)
        .execute(connection)
        .await
    {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(refused)) => {
            tracing::warn!(
                error = %refused,
                "PostgreSQL refused to set default_toast_compression to lz4 for this connection; large values are compressed with the server's default"
            );
            Ok(())
        }
        Err(other) => Err(other),
    }
}

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
    /// Views count distinct values and the database cannot provide the `hll` extension.
    #[error(
        "views {views} count distinct values, which needs PostgreSQL's `hll` extension (postgresql-hll): \
         install it on the database server (Debian and Ubuntu: apt-get install postgresql-NN-hll; \
         managed services such as Amazon RDS, Azure Database for PostgreSQL and Google Cloud SQL offer it) \
         and run `braid migrate` as a role allowed to CREATE EXTENSION, or remove the distinct(...) \
         metrics. PostgreSQL said: {reason}"
    )]
    HllUnavailable {
        /// The views with distinct metrics, comma-separated.
        views: String,
        /// PostgreSQL's error.
        reason: String,
    },
}

impl StoreError {
    /// Whether retrying the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Migrate(_) | StoreError::HllUnavailable { .. } => false,
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

/// Whether the database refused a statement because of the values in it: SQLSTATE class 22
/// (data exception: a value out of range, a NUL in text, an overflow), 23 (integrity
/// constraint violation) or 54 (program limit exceeded: an index entry too large). The same
/// values fail the same way again, so such an error is never retried as if transient.
pub fn is_data_error(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| matches!(code.get(..2), Some("22" | "23" | "54")))
}

/// The database's message with its SQLSTATE, for a dead letter or a log line.
pub fn database_message(error: &sqlx::Error) -> String {
    match error.as_database_error() {
        Some(d) => format!(
            "{} (SQLSTATE {})",
            d.message(),
            d.code().as_deref().unwrap_or("?")
        ),
        None => error.to_string(),
    }
}

/// Applies all pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

#[cfg(test)]
mod dead_letter_tests;
#[cfg(test)]
mod leader_tests;
#[cfg(test)]
mod tests;

/// Creates the speed and batch tables of every view (idempotent). Tables are named from the
/// view's fingerprint, so a changed definition gets new tables and never mixes with old rows.
/// A definition first seen after records were consumed is recorded as needing a backfill.
pub async fn ensure_view_tables(
    pool: &PgPool,
    views: &[crate::view::View],
) -> Result<(), StoreError> {
    let counting_distinct: Vec<&str> = views
        .iter()
        .filter(|v| {
            crate::plan::ViewPlan::of(v)
                .metrics
                .iter()
                .any(|m| match m.stored {
                    crate::plan::ColumnType::Sketch(sketch) => sketch.pg_extension() == Some("hll"),
                    _ => false,
                })
        })
        .map(|v| v.name.as_str())
        .collect();
    if !counting_distinct.is_empty() {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS hll")
            .execute(pool)
            .await
            .map_err(|e| StoreError::HllUnavailable {
                views: counting_distinct.join(", "),
                reason: e
                    .as_database_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string()),
            })?;
    }
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
    let has_history = positions::any_consumed(pool).await? || batch_runs::any(pool).await?;
    view_definitions::record(pool, views, has_history).await?;
    Ok(())
}

/// The views whose definition lacks history: first seen after records were consumed, and no
/// batch run of that definition is active yet.
pub async fn backfilling_views(
    pool: &PgPool,
    views: &[crate::view::View],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let needing = view_definitions::needing_backfill(pool).await?;
    let active = batch_runs::active_definitions(pool, views).await?;
    let mut backfilling: Vec<(String, String)> = views
        .iter()
        .map(|v| (v.name.clone(), v.fingerprint.clone()))
        .filter(|definition| needing.contains(definition) && !active.contains(definition))
        .collect();
    backfilling.sort();
    Ok(backfilling)
}
