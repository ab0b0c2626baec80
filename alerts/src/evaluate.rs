//! One evaluation of one rule: the merged window (one statement, one snapshot, the same the
//! API's /rolling answers), each instance stepped through the state machine, and the result
//! written in one transaction that checks this process still leads.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use schemas::alert::{AlertRule, Labels, fingerprint};
use schemas::pg::alerts::{
    self, AlertState, EvaluationRecord, Instance, InstanceUpdate, InstanceVersion, NewTransition,
};
use schemas::pg::leader;
use schemas::view::View;
use serde_json::Value;
use serving::api::{WindowRequest, window_totals};
use sqlx::PgPool;

use crate::error::AlertError;
use crate::state_machine::{Standing, condition_holds, step};

/// One instance as evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedInstance {
    /// Its labels.
    pub labels: Labels,
    /// Its fingerprint.
    pub fingerprint: String,
    /// The metric's value over the window (`None`: no rows).
    pub value: Option<f64>,
    /// Whether the condition holds.
    pub holds: bool,
    /// The state before.
    pub before: AlertState,
    /// The state after.
    pub after: AlertState,
}

/// The outcome of evaluating a rule, before it is written.
#[derive(Debug, Clone)]
pub struct RuleEvaluation {
    /// What was read (window, provenance).
    pub record: EvaluationRecord,
    /// Every instance with a value or a stored state.
    pub instances: Vec<EvaluatedInstance>,
    /// The instance rows to write.
    pub updates: Vec<InstanceUpdate>,
    /// Whether more keys matched than `alerting.max_instances`.
    pub truncated: bool,
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Evaluates `rule` over `view` at `now`, against the stored instances; writes nothing.
pub async fn evaluate(
    pool: &PgPool,
    view: &View,
    topic: &str,
    rule: &AlertRule,
    now: DateTime<Utc>,
    max_instances: u32,
) -> Result<RuleEvaluation, AlertError> {
    let request = WindowRequest {
        window_seconds: rule.window.seconds(),
        group_by: rule.group_by.clone(),
        filters: rule.filters.clone(),
        now,
        limit: i64::from(max_instances),
    };
    let totals = window_totals(pool, view, topic, &request)
        .await
        .map_err(|source| AlertError::Window {
            rule: rule.name.clone(),
            view: view.name.clone(),
            source,
        })?;
    let mut observed: BTreeMap<String, (Labels, Option<f64>)> = BTreeMap::new();
    for row in &totals.rows {
        let labels: Labels = rule
            .group_by
            .iter()
            .map(|&i| {
                let field = &view.group_by[i];
                (
                    field.clone(),
                    row.get(field).cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        let value = number(row.get(&rule.metric));
        observed.insert(fingerprint(&rule.name, &labels), (labels, value));
    }
    let stored: Vec<Instance> = alerts::instances(pool, Some(&rule.name)).await?;
    // By fingerprint, so that up to alerting.max_instances keys cost linear time, not quadratic.
    let by_fingerprint: HashMap<&str, &Instance> =
        stored.iter().map(|i| (i.fingerprint.as_str(), i)).collect();
    let mut instances = Vec::new();
    let mut updates = Vec::new();
    for (fp, (labels, value)) in &observed {
        let before = by_fingerprint.get(fp.as_str()).copied();
        evaluate_one(
            rule,
            now,
            fp,
            labels,
            *value,
            before,
            &mut instances,
            &mut updates,
        );
    }
    for instance in stored
        .iter()
        .filter(|i| !observed.contains_key(&i.fingerprint))
    {
        let labels: Labels = serde_json::from_str(&instance.labels).unwrap_or_default();
        evaluate_one(
            rule,
            now,
            &instance.fingerprint,
            &labels,
            None,
            Some(instance),
            &mut instances,
            &mut updates,
        );
    }
    Ok(RuleEvaluation {
        record: EvaluationRecord {
            rule: rule.name.clone(),
            metric: rule.metric.clone(),
            op: rule.op.name().to_string(),
            threshold: rule.threshold,
            window_start: totals.window_start,
            window_end: totals.window_end,
            batch: totals.batch,
            speed: totals.speed,
            at: now,
        },
        instances,
        updates,
        truncated: totals.truncated,
    })
}

#[allow(clippy::too_many_arguments)]
fn evaluate_one(
    rule: &AlertRule,
    now: DateTime<Utc>,
    fp: &str,
    labels: &Labels,
    value: Option<f64>,
    stored: Option<&Instance>,
    instances: &mut Vec<EvaluatedInstance>,
    updates: &mut Vec<InstanceUpdate>,
) {
    let before = stored.map_or(Standing::NEW, |i| Standing {
        state: i.state,
        active_since: i.active_since,
        last_true_at: i.last_true_at,
    });
    let holds = condition_holds(rule, value);
    let step = step(rule, before, holds, now);
    instances.push(EvaluatedInstance {
        labels: labels.clone(),
        fingerprint: fp.to_string(),
        value,
        holds,
        before: before.state,
        after: step.next.state,
    });
    let live = matches!(step.next.state, AlertState::Pending | AlertState::Firing);
    if step.changed_from.is_none() && !live {
        // A resolved or inactive instance that stays so: nothing to write, so the cost of an
        // evaluation follows the keys that hold, not every key the window saw.
        return;
    }
    let labels_text = Value::Object(labels.clone()).to_string();
    updates.push(InstanceUpdate {
        instance: Instance {
            fingerprint: fp.to_string(),
            rule: rule.name.clone(),
            labels: labels_text.clone(),
            state: step.next.state,
            value,
            active_since: step.next.active_since,
            last_true_at: step.next.last_true_at,
            last_transition_id: stored.and_then(|i| i.last_transition_id),
            evaluated_at: now,
        },
        transition: step.changed_from.map(|from| NewTransition {
            fingerprint: fp.to_string(),
            rule: rule.name.clone(),
            labels: labels_text,
            from,
            to: step.next.state,
            value,
            at: now,
        }),
    });
}

/// Writes `evaluation` in one transaction, if the server process `leader_pid` still holds the
/// evaluator's lock and no instance changed since `evaluation` read it (another evaluator
/// recorded it: [`AlertError::Stale`], nothing written); returns the new transitions' ids.
pub async fn record(
    pool: &PgPool,
    leader_pid: i32,
    evaluation: &RuleEvaluation,
    receivers: &[String],
) -> Result<Vec<i64>, AlertError> {
    let mut tx = pool.begin().await?;
    if !leader::held_by(&mut *tx, leader_pid, crate::evaluator::EVALUATOR_LOCK).await? {
        return Err(AlertError::LostLeadership);
    }
    let read: Vec<InstanceVersion> = evaluation
        .updates
        .iter()
        .map(|u| InstanceVersion {
            fingerprint: u.instance.fingerprint.clone(),
            last_transition_id: u.instance.last_transition_id,
        })
        .collect();
    if let Some(fingerprint) =
        alerts::changed_since_read(&mut tx, &evaluation.record.rule, &read).await?
    {
        return Err(AlertError::Stale {
            rule: evaluation.record.rule.clone(),
            fingerprint,
        });
    }
    let ids =
        alerts::record_evaluation(&mut tx, &evaluation.record, &evaluation.updates, receivers)
            .await?;
    tx.commit().await?;
    Ok(ids)
}
