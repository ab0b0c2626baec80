//! Recorded transitions with their deliveries (`alert_transitions`, `alert_deliveries`): the
//! history, and the outbox the notifiers work through, each receiver in its instances' order.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::evaluations::EvaluationRecord;
use crate::state::{AlertState, decode_state};

/// A recorded transition with its deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Its id (increasing).
    pub id: i64,
    /// The instance.
    pub fingerprint: String,
    /// The labels, JSON.
    pub labels: String,
    /// The state before.
    pub from: AlertState,
    /// The state after.
    pub to: AlertState,
    /// The value evaluated.
    pub value: Option<f64>,
    /// The evaluation it came from: rule, comparison, window, provenance and time.
    pub evaluation: EvaluationRecord,
    /// Per receiver: status, attempts, last error, JSON array.
    pub deliveries: String,
}

const TRANSITION_SELECT: &str = "SELECT t.id, t.fingerprint, t.rule, t.labels::text, t.from_state, \
       t.to_state, t.value, t.metric, t.op, t.threshold, t.window_start, t.window_end, \
       t.batch::text, t.speed::text, t.at, \
       coalesce((SELECT json_agg(json_build_object('receiver', d.receiver, 'status', d.status, \
           'attempts', d.attempts, 'last_error', d.last_error) ORDER BY d.receiver) \
         FROM braid_internal.alert_deliveries d WHERE d.transition_id = t.id), '[]'::json)::text \
     FROM braid_internal.alert_transitions t";

type TransitionRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<f64>,
    String,
    String,
    f64,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
    String,
    DateTime<Utc>,
    String,
);

fn transition(r: TransitionRow) -> Result<Transition, sqlx::Error> {
    Ok(Transition {
        id: r.0,
        fingerprint: r.1,
        labels: r.3,
        from: decode_state(r.4)?,
        to: decode_state(r.5)?,
        value: r.6,
        evaluation: EvaluationRecord {
            rule: r.2,
            metric: r.7,
            op: r.8,
            threshold: r.9,
            window_start: r.10,
            window_end: r.11,
            batch: r.12,
            speed: r.13,
            at: r.14,
        },
        deliveries: r.15,
    })
}

/// The latest `limit` transitions of `rule` (or of every rule), newest first.
pub async fn history(
    pool: &PgPool,
    rule: Option<&str>,
    limit: i64,
) -> Result<Vec<Transition>, sqlx::Error> {
    let rows: Vec<TransitionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{TRANSITION_SELECT} WHERE $1::text IS NULL OR t.rule = $1 ORDER BY t.id DESC LIMIT $2"
    )))
    .bind(rule)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(transition).collect()
}

/// A delivery that is due: the transition and how many attempts it had.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    /// The transition.
    pub transition: Transition,
    /// Attempts so far.
    pub attempts: i32,
}

/// A pending delivery that may go out: none of the same instance's earlier transitions is
/// still pending for the same receiver (a later transition waits for an earlier one that is
/// retrying, so that each receiver gets an instance's transitions in order).
const HEAD_OF_INSTANCE: &str = "d.receiver = $1 AND d.status = 'pending' \
     AND NOT EXISTS (SELECT 1 FROM braid_internal.alert_transitions e \
       JOIN braid_internal.alert_deliveries ed ON ed.transition_id = e.id \
       WHERE e.fingerprint = t.fingerprint AND e.id < t.id \
         AND ed.receiver = d.receiver AND ed.status = 'pending')";

/// Up to `limit` pending deliveries to `receiver` due at `now`, oldest transition first, each
/// the oldest pending one of its instance (see [`HEAD_OF_INSTANCE`]). Two statements, whatever
/// the count.
pub async fn due_deliveries(
    pool: &PgPool,
    receiver: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueDelivery>, sqlx::Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT d.attempts, d.transition_id FROM braid_internal.alert_deliveries d \
         JOIN braid_internal.alert_transitions t ON t.id = d.transition_id \
         WHERE {HEAD_OF_INSTANCE} AND d.next_attempt_at <= $2 \
         ORDER BY d.transition_id LIMIT $3"
    )))
    .bind(receiver)
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|&(_, id)| id).collect();
    let transitions: Vec<TransitionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{TRANSITION_SELECT} WHERE t.id = ANY($1) ORDER BY t.id"
    )))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut attempts: std::collections::HashMap<i64, i32> =
        rows.into_iter().map(|(a, id)| (id, a)).collect();
    transitions
        .into_iter()
        .map(|row| {
            let transition = transition(row)?;
            let attempts = attempts.remove(&transition.id).unwrap_or(0);
            Ok(DueDelivery {
                transition,
                attempts,
            })
        })
        .collect()
}

/// When the next pending delivery to `receiver` that may go out is due (one waiting for an
/// earlier transition of its instance is not), if any is pending.
pub async fn next_due(pool: &PgPool, receiver: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT min(d.next_attempt_at) FROM braid_internal.alert_deliveries d \
         JOIN braid_internal.alert_transitions t ON t.id = d.transition_id \
         WHERE {HEAD_OF_INSTANCE}"
    )))
    .bind(receiver)
    .fetch_one(pool)
    .await
}

/// Records a successful delivery (one more attempt).
pub async fn mark_delivered(
    pool: &PgPool,
    transition_id: i64,
    receiver: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE braid_internal.alert_deliveries SET status = 'delivered', attempts = attempts + 1, \
           delivered_at = now(), last_error = NULL WHERE transition_id = $1 AND receiver = $2",
    )
    .bind(transition_id)
    .bind(receiver)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub async fn mark_failed(
    pool: &PgPool,
    transition_id: i64,
    receiver: &str,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE braid_internal.alert_deliveries SET attempts = attempts + 1, last_error = $3, \
           next_attempt_at = $4 WHERE transition_id = $1 AND receiver = $2",
    )
    .bind(transition_id)
    .bind(receiver)
    .bind(error)
    .bind(next_attempt_at)
    .execute(pool)
    .await?;
    Ok(())
}
