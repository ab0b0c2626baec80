//! `braid_internal.alert_instances`, `alert_transitions`, `alert_deliveries`,
//! `alert_silences` and `alert_evaluations`: the only module with their SQL. JSON columns are
//! bound and read as text (`$n::jsonb`, `col::text`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

/// The state of an instance, as operators know it from Prometheus and Grafana.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// The condition held for `for` (and, after it stopped, for less than `keep_firing_for`).
    Firing,
    /// It fired and then stopped holding for `keep_firing_for`.
    Resolved,
    /// It was pending and stopped holding before it fired (or never held).
    Inactive,
}

impl AlertState {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Inactive => "inactive",
        }
    }

    /// Pending or firing: an instance every evaluation must step, whether its key has rows
    /// or not.
    pub fn is_live(self) -> bool {
        matches!(self, AlertState::Pending | AlertState::Firing)
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored state that is none of the four (the table's CHECK makes this unreachable).
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an alert state")]
pub struct UnknownState(String);

impl FromStr for AlertState {
    type Err = UnknownState;
    fn from_str(text: &str) -> Result<Self, UnknownState> {
        Ok(match text {
            "pending" => AlertState::Pending,
            "firing" => AlertState::Firing,
            "resolved" => AlertState::Resolved,
            "inactive" => AlertState::Inactive,
            other => return Err(UnknownState(other.to_string())),
        })
    }
}

fn decode_state(text: String) -> Result<AlertState, sqlx::Error> {
    text.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// One instance's stored state.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Hash of rule and labels.
    pub fingerprint: String,
    /// The rule.
    pub rule: String,
    /// The labels, a JSON object.
    pub labels: String,
    /// The state.
    pub state: AlertState,
    /// The value at the last evaluation (`None`: no rows in the window).
    pub value: Option<f64>,
    /// When the condition started holding (pending and firing).
    pub active_since: Option<DateTime<Utc>>,
    /// The last evaluation at which the condition held.
    pub last_true_at: Option<DateTime<Utc>>,
    /// The instance's last transition.
    pub last_transition_id: Option<i64>,
    /// The last evaluation.
    pub evaluated_at: DateTime<Utc>,
}

type InstanceRow = (
    String,
    String,
    String,
    String,
    Option<f64>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i64>,
    DateTime<Utc>,
);

fn instance(row: InstanceRow) -> Result<Instance, sqlx::Error> {
    Ok(Instance {
        fingerprint: row.0,
        rule: row.1,
        labels: row.2,
        state: decode_state(row.3)?,
        value: row.4,
        active_since: row.5,
        last_true_at: row.6,
        last_transition_id: row.7,
        evaluated_at: row.8,
    })
}

const INSTANCE_COLUMNS: &str = "fingerprint, rule, labels::text, state, value, active_since, \
     last_true_at, last_transition_id, evaluated_at";

/// The instances of `rule`, or of every rule, in rule and fingerprint order.
pub async fn instances(
    executor: impl PgExecutor<'_>,
    rule: Option<&str>,
) -> Result<Vec<Instance>, sqlx::Error> {
    let rows: Vec<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {INSTANCE_COLUMNS} FROM braid_internal.alert_instances \
         WHERE $1::text IS NULL OR rule = $1 ORDER BY rule, fingerprint"
    )))
    .bind(rule)
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(instance).collect()
}

/// What one evaluation of `rule` needs of the stored instances: the live ones (pending or
/// firing, through the partial index `alert_instances_live`) and those of `fingerprints` (the
/// keys the window read, whose stored state a transition starts from). Resolved and inactive
/// instances of other keys are not read, however many are stored.
pub async fn instances_to_evaluate(
    executor: impl PgExecutor<'_>,
    rule: &str,
    fingerprints: &[String],
) -> Result<Vec<Instance>, sqlx::Error> {
    let rows: Vec<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {INSTANCE_COLUMNS} FROM braid_internal.alert_instances \
           WHERE rule = $1 AND state IN ('pending', 'firing') \
         UNION \
         SELECT {INSTANCE_COLUMNS} FROM braid_internal.alert_instances \
           WHERE fingerprint = ANY($2) AND rule = $1"
    )))
    .bind(rule)
    .bind(fingerprints)
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(instance).collect()
}

/// Where a page of instances starts: after this rule and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCursor {
    /// The rule of the last instance shown.
    pub rule: String,
    /// Its fingerprint.
    pub fingerprint: String,
}

/// Up to `limit` instances of `rule` (or of every rule) after `after`, in rule and
/// fingerprint order (the primary key and `alert_instances_rule_fingerprint` serve it).
pub async fn instances_page(
    executor: impl PgExecutor<'_>,
    rule: Option<&str>,
    after: Option<&InstanceCursor>,
    limit: i64,
) -> Result<Vec<Instance>, sqlx::Error> {
    let rows: Vec<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {INSTANCE_COLUMNS} FROM braid_internal.alert_instances \
         WHERE ($1::text IS NULL OR rule = $1) \
           AND ($2::text IS NULL OR (rule, fingerprint) > ($2, $3)) \
         ORDER BY rule, fingerprint LIMIT $4"
    )))
    .bind(rule)
    .bind(after.map(|c| c.rule.as_str()))
    .bind(after.map(|c| c.fingerprint.as_str()))
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(instance).collect()
}

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
