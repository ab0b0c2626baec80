//! Deleting old alert history in bounded chunks (the `prune` job, `alerting.retention_hours`):
//! resolved and inactive instances last written before the cut-off, and transitions before it
//! whose deliveries are done (none `pending`) and that are no stored instance's last
//! transition. A transition's deliveries go with it (`ON DELETE CASCADE`). Live instances,
//! pending deliveries and the transition a stored instance points at are never deleted.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Deletes up to `chunk` resolved or inactive instances last written before `before`; returns
/// how many. An instance deleted and seen again later starts from inactive.
pub async fn prune_instances(
    db: impl PgExecutor<'_>,
    before: DateTime<Utc>,
    chunk: i64,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "DELETE FROM braid_internal.alert_instances WHERE fingerprint IN ( \
           SELECT fingerprint FROM braid_internal.alert_instances \
           WHERE state IN ('resolved', 'inactive') AND evaluated_at < $1 \
           ORDER BY evaluated_at LIMIT $2) \
         AND state IN ('resolved', 'inactive')",
    )
    .bind(before)
    .bind(chunk)
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}

/// Deletes up to `chunk` transitions recorded before `before` with no pending delivery and no
/// stored instance pointing at them (their deliveries with them); returns how many.
pub async fn prune_transitions(
    db: impl PgExecutor<'_>,
    before: DateTime<Utc>,
    chunk: i64,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "DELETE FROM braid_internal.alert_transitions WHERE id IN ( \
           SELECT t.id FROM braid_internal.alert_transitions t \
           WHERE t.at < $1 \
             AND NOT EXISTS (SELECT 1 FROM braid_internal.alert_deliveries d \
                             WHERE d.transition_id = t.id AND d.status = 'pending') \
             AND NOT EXISTS (SELECT 1 FROM braid_internal.alert_instances i \
                             WHERE i.last_transition_id = t.id) \
           ORDER BY t.at LIMIT $2)",
    )
    .bind(before)
    .bind(chunk)
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}
