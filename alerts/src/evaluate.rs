//! One evaluation of one rule: the merged window over complete buckets (one statement, one
//! snapshot, the statement the API's /rolling runs), each instance stepped through the state machine, and the result
//! written in one transaction that checks this process still leads.

use std::collections::{BTreeMap, HashMap};

use crate::store::{
    self, AlertState, EvaluationRecord, Instance, InstanceUpdate, InstanceVersion, NewTransition,
};
use chrono::{DateTime, Utc};
use merged_read::{OrderTerm, WindowEnd, WindowRequest};
use schemas::alert::{AlertRule, CompareOp, Labels};
use schemas::pg::leader;
use schemas::view::View;
use serde_json::Value;
use sqlx::PgPool;

use crate::error::AlertError;
use crate::outside_page;
use crate::state_machine::{Standing, condition_holds, step};

/// The advisory-lock key of the active evaluator: only its holder records evaluations.
pub const EVALUATOR_LOCK: &str = "braid.alerts";

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
    /// Every instance with a value or a live stored state.
    pub instances: Vec<EvaluatedInstance>,
    /// The instance rows to write.
    pub updates: Vec<InstanceUpdate>,
    /// Whether more keys matched than `alerting.max_instances` (keys were left out).
    pub truncated: bool,
    /// Live instances whose value could not be read (left as they were).
    pub unread_live: usize,
}

/// The order that puts the keys nearest to holding first, so that the keys kept under
/// `alerting.max_instances` are the ones that may fire: largest first for `gt`/`ge`, smallest
/// first for `lt`/`le`; `eq`/`ne` have no such order and keep the group-field order.
pub fn rank_by(rule: &AlertRule) -> Option<OrderTerm> {
    let descending = match rule.op {
        CompareOp::Gt | CompareOp::Ge => true,
        CompareOp::Lt | CompareOp::Le => false,
        CompareOp::Eq | CompareOp::Ne => return None,
    };
    Some(OrderTerm {
        column: rule.metric.clone(),
        descending,
    })
}

/// Evaluates `rule` over `view` at `now`, against the stored instances; writes nothing.
///
/// The window is made of complete buckets (it ends at the start of the bucket holding `now`),
/// and holds at most `max_instances` keys, those nearest to holding first ([`rank_by`]). Every
/// live (pending or firing) stored instance is evaluated on its own value even when its key
/// was not among them.
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
        filters: outside_page::rule_filters(rule),
        now,
        limit: i64::from(max_instances),
        end: WindowEnd::CompleteBuckets,
        rank_by: rank_by(rule),
        quantiles: schemas::alert::metric_levels(view, &rule.metric),
    };
    let totals = outside_page::rule_window(pool, view, topic, rule, &request).await?;
    let mut observed = outside_page::observed(rule, view, &totals);
    // The live instances, and the stored state of the keys read (a transition from resolved
    // names it); resolved and inactive instances of keys not read are not read at all.
    let fingerprints: Vec<String> = observed.keys().cloned().collect();
    let stored: Vec<Instance> =
        store::instances_to_evaluate(pool, &rule.name, &fingerprints).await?;
    let by_fingerprint: HashMap<&str, &Instance> =
        stored.iter().map(|i| (i.fingerprint.as_str(), i)).collect();
    let missing: BTreeMap<String, Labels> = stored
        .iter()
        .filter(|i| i.state.is_live() && !observed.contains_key(&i.fingerprint))
        .map(|i| {
            let labels: Labels = serde_json::from_str(&i.labels).unwrap_or_default();
            (i.fingerprint.clone(), labels)
        })
        .collect();
    // Without truncation every key with rows was read: a live instance not among them has no
    // value. With it, its value is read by a statement of its own.
    let mut unread: BTreeMap<String, Labels> = BTreeMap::new();
    if totals.truncated && !missing.is_empty() {
        let outside = outside_page::read(
            pool,
            view,
            topic,
            rule,
            now,
            i64::from(max_instances),
            &missing,
        )
        .await?;
        for (fp, labels) in &missing {
            if !outside.read.contains_key(fp) && outside.truncated {
                unread.insert(fp.clone(), labels.clone());
            }
        }
        observed.extend(outside.read);
    }
    let mut instances = Vec::new();
    let mut updates = Vec::new();
    for (fp, seen) in &observed {
        let before = by_fingerprint.get(fp.as_str()).copied();
        evaluate_one(
            rule,
            now,
            fp,
            &seen.labels,
            seen.value,
            before,
            &mut instances,
            &mut updates,
        );
    }
    for (fp, labels) in missing
        .iter()
        .filter(|(fp, _)| !observed.contains_key(*fp) && !unread.contains_key(*fp))
    {
        evaluate_one(
            rule,
            now,
            fp,
            labels,
            None,
            by_fingerprint.get(fp.as_str()).copied(),
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
        unread_live: unread.len(),
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
    if !leader::held_by(&mut *tx, leader_pid, EVALUATOR_LOCK).await? {
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
        store::changed_since_read(&mut tx, &evaluation.record.rule, &read).await?
    {
        return Err(AlertError::Stale {
            rule: evaluation.record.rule.clone(),
            fingerprint,
        });
    }
    let ids = store::record_evaluation(&mut tx, &evaluation.record, &evaluation.updates, receivers)
        .await?;
    tx.commit().await?;
    Ok(ids)
}
