//! Recording one evaluation of a rule: its instances' new states, their transitions with one
//! delivery per receiver, and the evaluation itself (`alert_evaluations`), fenced by an
//! optimistic check in the same transaction.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::instances::Instance;
use crate::state::AlertState;

/// A transition to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransition {
    /// The instance.
    pub fingerprint: String,
    /// The rule.
    pub rule: String,
    /// The labels, a JSON object.
    pub labels: String,
    /// The state before.
    pub from: AlertState,
    /// The state after.
    pub to: AlertState,
    /// The value evaluated (`None`: no rows in the window).
    pub value: Option<f64>,
    /// When it happened (the evaluation's clock).
    pub at: DateTime<Utc>,
}

/// What one evaluation of a rule read: the rule's comparison, the window and the merged
/// answer's provenance (active batch run, speed positions), the same for all its transitions.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationRecord {
    /// The rule.
    pub rule: String,
    /// The metric compared.
    pub metric: String,
    /// `gt`, `lt`, ...
    pub op: String,
    /// The threshold.
    pub threshold: f64,
    /// The window's start (inclusive).
    pub window_start: DateTime<Utc>,
    /// The window's end (exclusive).
    pub window_end: DateTime<Utc>,
    /// The active batch run, JSON, if any.
    pub batch: Option<String>,
    /// The speed positions, JSON.
    pub speed: String,
    /// When it ran.
    pub at: DateTime<Utc>,
}

/// One instance's new stored state.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceUpdate {
    /// The instance's state after the evaluation.
    pub instance: Instance,
    /// The transition that led there, if the state changed.
    pub transition: Option<NewTransition>,
}

/// Records one evaluation in `tx`: every instance's new state, its transitions with one
/// pending delivery per receiver (`silenced` while the rule is silenced), and the evaluation,
/// in four statements whatever the number of instances. Returns the transitions' ids.
pub async fn record_evaluation(
    tx: &mut Transaction<'_, Postgres>,
    evaluation: &EvaluationRecord,
    updates: &[InstanceUpdate],
    receivers: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    let silenced: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM braid_internal.alert_silences WHERE rule = $1 AND until > $2)",
    )
    .bind(&evaluation.rule)
    .bind(evaluation.at)
    .fetch_one(&mut **tx)
    .await?;
    let ids = insert_transitions(tx, evaluation, updates, receivers, silenced).await?;
    upsert_instances(tx, updates, &ids).await?;
    sqlx::query(
        "INSERT INTO braid_internal.alert_evaluations (rule, evaluated_at, evaluations, batch, speed, instances) \
         VALUES ($1, $2, 1, $3::jsonb, $4::jsonb, $5) \
         ON CONFLICT (rule) DO UPDATE SET evaluated_at = EXCLUDED.evaluated_at, \
           evaluations = alert_evaluations.evaluations + 1, batch = EXCLUDED.batch, \
           speed = EXCLUDED.speed, instances = EXCLUDED.instances",
    )
    .bind(&evaluation.rule)
    .bind(evaluation.at)
    .bind(&evaluation.batch)
    .bind(&evaluation.speed)
    .bind(i32::try_from(updates.len()).unwrap_or(i32::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(ids.into_iter().flatten().collect())
}

/// Inserts the transitions of `updates` (one statement) and one delivery per transition and
/// receiver (one more); returns each update's transition id, in the order of `updates`.
async fn insert_transitions(
    tx: &mut Transaction<'_, Postgres>,
    evaluation: &EvaluationRecord,
    updates: &[InstanceUpdate],
    receivers: &[String],
    silenced: bool,
) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let new: Vec<&NewTransition> = updates
        .iter()
        .filter_map(|u| u.transition.as_ref())
        .collect();
    if new.is_empty() {
        return Ok(vec![None; updates.len()]);
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO braid_internal.alert_transitions \
           (fingerprint, rule, labels, from_state, to_state, value, metric, op, threshold, \
            window_start, window_end, batch, speed, at) \
         SELECT f, r, l::jsonb, fs, ts, v, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, a \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::float8[], $14::timestamptz[]) \
           WITH ORDINALITY AS u(f, r, l, fs, ts, v, a, n) \
         ORDER BY n \
         RETURNING fingerprint, id",
    )
    .bind(
        new.iter()
            .map(|t| t.fingerprint.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|t| t.rule.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|t| t.labels.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|t| t.from.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|t| t.to.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|t| t.value).collect::<Vec<_>>())
    .bind(&evaluation.metric)
    .bind(&evaluation.op)
    .bind(evaluation.threshold)
    .bind(evaluation.window_start)
    .bind(evaluation.window_end)
    .bind(&evaluation.batch)
    .bind(&evaluation.speed)
    .bind(new.iter().map(|t| t.at).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    let by_fingerprint: std::collections::HashMap<String, i64> = rows.into_iter().collect();
    let ids: Vec<Option<i64>> = updates
        .iter()
        .map(|u| {
            u.transition
                .as_ref()
                .and_then(|t| by_fingerprint.get(&t.fingerprint).copied())
        })
        .collect();
    let mut created: Vec<i64> = ids.iter().flatten().copied().collect();
    created.sort_unstable();
    sqlx::query(
        "INSERT INTO braid_internal.alert_deliveries (transition_id, receiver, status) \
         SELECT t, r, $3 FROM unnest($1::bigint[]) AS t, unnest($2::text[]) AS r ORDER BY t, r",
    )
    .bind(&created)
    .bind(receivers)
    .bind(if silenced { "silenced" } else { "pending" })
    .execute(&mut **tx)
    .await?;
    Ok(ids)
}

/// An instance as an evaluation read it: its fingerprint and last transition (`None`: no
/// stored instance, or one without transitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceVersion {
    /// The instance.
    pub fingerprint: String,
    /// Its last transition when the evaluation read it.
    pub last_transition_id: Option<i64>,
}

/// The optimistic check before an evaluation is recorded in `tx`: takes `rule`'s record lock
/// (held until `tx` ends, so that two evaluators, such as a leader that lost its lock and its
/// successor, record one rule one after the other) and returns the first instance of `read`
/// whose last transition is no longer the one read: another evaluator recorded it in between,
/// and recording this evaluation would record its transitions a second time.
pub async fn changed_since_read(
    tx: &mut Transaction<'_, Postgres>,
    rule: &str,
    read: &[InstanceVersion],
) -> Result<Option<String>, sqlx::Error> {
    // The two-int form, so that it never looks like a one-key leader lock in pg_locks.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('braid.alerts.record'), hashtext($1))")
        .bind(rule)
        .execute(&mut **tx)
        .await?;
    let fingerprints: Vec<&str> = read.iter().map(|r| r.fingerprint.as_str()).collect();
    let expected: Vec<Option<i64>> = read.iter().map(|r| r.last_transition_id).collect();
    sqlx::query_scalar(
        "SELECT r.fingerprint FROM unnest($1::text[], $2::bigint[]) AS r (fingerprint, expected) \
         LEFT JOIN braid_internal.alert_instances i ON i.fingerprint = r.fingerprint \
         WHERE i.last_transition_id IS DISTINCT FROM r.expected LIMIT 1",
    )
    .bind(fingerprints)
    .bind(expected)
    .fetch_optional(&mut **tx)
    .await
}

/// Writes every instance of `updates` in one statement (`ids`: the transition each one just
/// had, if any, which becomes its last).
async fn upsert_instances(
    tx: &mut Transaction<'_, Postgres>,
    updates: &[InstanceUpdate],
    ids: &[Option<i64>],
) -> Result<(), sqlx::Error> {
    if updates.is_empty() {
        return Ok(());
    }
    let rows: Vec<&Instance> = updates.iter().map(|u| &u.instance).collect();
    let last: Vec<Option<i64>> = rows
        .iter()
        .zip(ids)
        .map(|(i, id)| id.or(i.last_transition_id))
        .collect();
    sqlx::query(
        "INSERT INTO braid_internal.alert_instances \
           (fingerprint, rule, labels, state, value, active_since, last_true_at, \
            last_transition_id, evaluated_at) \
         SELECT f, r, l::jsonb, s, v, a, t, i, e \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], \
                     $6::timestamptz[], $7::timestamptz[], $8::bigint[], $9::timestamptz[]) \
           AS u(f, r, l, s, v, a, t, i, e) \
         ON CONFLICT (fingerprint) DO UPDATE SET state = EXCLUDED.state, value = EXCLUDED.value, \
           active_since = EXCLUDED.active_since, last_true_at = EXCLUDED.last_true_at, \
           last_transition_id = EXCLUDED.last_transition_id, evaluated_at = EXCLUDED.evaluated_at",
    )
    .bind(
        rows.iter()
            .map(|i| i.fingerprint.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|i| i.rule.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|i| i.labels.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|i| i.state.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|i| i.value).collect::<Vec<_>>())
    .bind(rows.iter().map(|i| i.active_since).collect::<Vec<_>>())
    .bind(rows.iter().map(|i| i.last_true_at).collect::<Vec<_>>())
    .bind(&last)
    .bind(rows.iter().map(|i| i.evaluated_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A rule's last evaluation: when, how many so far, and the batch run it read (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct LastEvaluation {
    /// When.
    pub evaluated_at: DateTime<Utc>,
    /// Evaluations recorded so far.
    pub evaluations: i64,
    /// The active batch run it read, JSON.
    pub batch: Option<String>,
    /// The speed positions it read, JSON.
    pub speed: String,
}

/// The last evaluation of `rule`.
pub async fn last_evaluation(
    pool: &PgPool,
    rule: &str,
) -> Result<Option<LastEvaluation>, sqlx::Error> {
    let row: Option<(DateTime<Utc>, i64, Option<String>, String)> = sqlx::query_as(
        "SELECT evaluated_at, evaluations, batch::text, speed::text \
         FROM braid_internal.alert_evaluations WHERE rule = $1",
    )
    .bind(rule)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| LastEvaluation {
        evaluated_at: r.0,
        evaluations: r.1,
        batch: r.2,
        speed: r.3,
    }))
}
