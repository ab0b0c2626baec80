//! `braid_internal.alert_instances` read: every instance, a page of them, or those one
//! evaluation steps.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::state::{AlertState, decode_state};

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

pub(crate) fn instance(row: InstanceRow) -> Result<Instance, sqlx::Error> {
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
