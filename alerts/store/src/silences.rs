//! Silences (`alert_silences`): a silenced rule's transitions are recorded but not sent, and
//! what a receiver missed is queued when the silence ends.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Silences `rule`'s notifications until `until` (transitions are still recorded).
pub async fn silence(pool: &PgPool, rule: &str, until: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO braid_internal.alert_silences (rule, until) VALUES ($1, $2) \
         ON CONFLICT (rule) DO UPDATE SET until = EXCLUDED.until, created_at = now()",
    )
    .bind(rule)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(())
}

/// How a receiver reads a state: `resolved` and `inactive` both end an alert (the body's
/// status is `resolved` for both).
const SEEN_STATE: &str = "CASE WHEN {s} IN ('resolved', 'inactive') THEN 'resolved' ELSE {s} END";

/// After a silence of `rule` ended (it is not silenced at `now`): per instance and receiver
/// whose last transition's delivery was silenced, and whose state differs from the last one
/// delivered (or still pending) to that receiver (none: `resolved`), that transition is queued
/// for delivery, so that a receiver learns the state it missed. Returns how many were queued;
/// a second call queues nothing more.
pub async fn release_silenced(
    pool: &PgPool,
    rule: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let current = SEEN_STATE.replace("{s}", "t.to_state");
    let delivered = SEEN_STATE.replace("{s}", "u.to_state");
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE braid_internal.alert_deliveries d SET status = 'pending', next_attempt_at = now() \
         FROM braid_internal.alert_instances i \
         JOIN braid_internal.alert_transitions t ON t.id = i.last_transition_id \
         WHERE i.rule = $1 AND d.transition_id = i.last_transition_id AND d.status = 'silenced' \
           AND NOT EXISTS (SELECT 1 FROM braid_internal.alert_silences s \
                           WHERE s.rule = $1 AND s.until > $2) \
           AND {current} IS DISTINCT FROM coalesce(( \
             SELECT {delivered} FROM braid_internal.alert_transitions u \
             JOIN braid_internal.alert_deliveries ud ON ud.transition_id = u.id \
             WHERE u.fingerprint = i.fingerprint AND u.id < t.id AND ud.receiver = d.receiver \
               AND ud.status IN ('delivered', 'pending') \
             ORDER BY u.id DESC LIMIT 1), 'resolved')"
    )))
    .bind(rule)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Until when `rule` is silenced, if it is at `now`.
pub async fn silenced_until(
    pool: &PgPool,
    rule: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT until FROM braid_internal.alert_silences WHERE rule = $1 AND until > $2",
    )
    .bind(rule)
    .bind(now)
    .fetch_optional(pool)
    .await
}
