//! `braid_internal.view_definitions`, every view definition (name and fingerprint) `braid
//! migrate` has seen: the only module with its SQL. A definition first seen after the pipeline
//! had consumed records lacks that history in its speed rows: it is backfilling until a batch
//! run of that fingerprint is active.

use sqlx::PgPool;

use crate::view::View;

/// Records `views` (idempotent). A definition seen for the first time needs a backfill when
/// the pipeline `has_history` already.
pub async fn record(pool: &PgPool, views: &[View], has_history: bool) -> Result<(), sqlx::Error> {
    for view in views {
        sqlx::query(
            "INSERT INTO braid_internal.view_definitions (view_name, fingerprint, needs_backfill) \
             VALUES ($1, $2, $3) ON CONFLICT (view_name, fingerprint) DO NOTHING",
        )
        .bind(&view.name)
        .bind(&view.fingerprint)
        .bind(has_history)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// The (name, fingerprint) pairs that were first seen after records were consumed.
pub async fn needing_backfill(
    db: impl sqlx::PgExecutor<'_>,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT view_name, fingerprint FROM braid_internal.view_definitions WHERE needs_backfill",
    )
    .fetch_all(db)
    .await
}

/// A sub-select of whether the definition (`name`, `fingerprint`: SQL expressions, placeholders
/// or literals from validated configuration) needs a backfill; no row when it was never seen.
pub fn needs_backfill_select(name: &str, fingerprint: &str) -> String {
    format!(
        "SELECT needs_backfill FROM braid_internal.view_definitions \
         WHERE view_name = {name} AND fingerprint = {fingerprint}"
    )
}
