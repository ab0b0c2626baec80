//! "A view's merged answer may have changed": a PostgreSQL notification on one channel, sent
//! inside the transaction that changed the rows (a speed flush, a batch publish), so that it
//! is delivered only if the change committed. The alert evaluator listens.

use sqlx::{Postgres, Transaction};

/// The channel; the payload is the view's name.
pub const CHANNEL: &str = "braid_view_changed";

/// Notifies that `views` changed, when `tx` commits (PostgreSQL folds repeats in one
/// transaction into one notification).
pub async fn notify(
    tx: &mut Transaction<'_, Postgres>,
    views: &[String],
) -> Result<(), sqlx::Error> {
    if views.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, v) FROM unnest($2::text[]) AS v")
        .bind(CHANNEL)
        .bind(views)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
