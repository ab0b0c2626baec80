//! The evaluator: one active process per database (advisory lock `braid.alerts`, as the
//! scheduler has), the others standby. The active one evaluates a rule when a speed flush or a
//! batch publish changed its view (a PostgreSQL notification, at most once per
//! `alerting.min_interval_ms` per rule) and every `alerting.evaluation_interval_ms`, and runs
//! the delivery workers.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::{self, AlertState};
use chrono::{DateTime, Utc};
use schemas::alert::AlertRule;
use schemas::pg::leader::LeaderLock;
use schemas::pg::view_changes;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use crate::error::AlertError;
use crate::evaluate::{RuleEvaluation, evaluate, record};
use crate::notify::Workers;
use crate::settings::AlertSettings;

pub use crate::evaluate::EVALUATOR_LOCK;

/// How often a standby tries to take over, and the leader checks its lock.
const LOCK_CHECK: Duration = Duration::from_millis(500);

/// Where "now" comes from.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// What the evaluator needs.
#[derive(Clone)]
pub struct EvaluatorContext {
    /// The database.
    pub pool: PgPool,
    /// The rules, their views and the receivers.
    pub settings: Arc<AlertSettings>,
    /// The clock.
    pub clock: Clock,
}

/// Runs until `stop`: standby while another evaluator is active, leader otherwise. Returns
/// early only for the operator's errors (a webhook's token variable missing). A receiver that
/// is away (Kafka, a webhook) never stops an evaluation: its own worker retries it.
pub async fn run_evaluator(
    ctx: &EvaluatorContext,
    stop: Arc<AtomicBool>,
) -> Result<(), AlertError> {
    if ctx.settings.rules.is_empty() {
        tracing::info!("no [[alerts]] rules are configured; the evaluator has nothing to do");
    }
    // A webhook's missing token is the operator's error: found at start, leader or not.
    crate::notify::check_tokens(&ctx.settings)?;
    let mut announced_standby = false;
    while !stop.load(Ordering::Relaxed) {
        let lock = match LeaderLock::try_take(&ctx.pool, EVALUATOR_LOCK).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                if !announced_standby {
                    tracing::info!(
                        "standby: another alert evaluator is active; waiting to take over"
                    );
                    announced_standby = true;
                }
                tokio::time::sleep(LOCK_CHECK).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reach the database to take the evaluator lock; trying again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        announced_standby = false;
        tracing::info!(
            rules = ctx.settings.rules.len(),
            pid = lock.backend_pid(),
            "active alert evaluator"
        );
        metrics::gauge!("braid_alerts_leader").set(1.0);
        let result = lead(ctx, &stop, lock).await;
        metrics::gauge!("braid_alerts_leader").set(0.0);
        match result {
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "the evaluator stepped down; trying to lead again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => other?,
        }
    }
    Ok(())
}

/// Per rule: when it was last evaluated and whether its view changed since.
struct Due {
    last: Option<Instant>,
    changed: bool,
}

async fn lead(
    ctx: &EvaluatorContext,
    stop: &AtomicBool,
    mut lock: LeaderLock,
) -> Result<(), AlertError> {
    let settings = &ctx.settings;
    let workers = match Workers::new(settings) {
        Ok(workers) => workers,
        Err(error) => {
            lock.release().await;
            return Err(error);
        }
    };
    let wake = Arc::new(Notify::new());
    let term = Arc::new(AtomicBool::new(false));
    let running = workers.spawn(ctx.pool.clone(), settings.retry, wake.clone(), term.clone());
    let mut listener = listen(&ctx.pool).await;
    let mut due: Vec<Due> = settings
        .rules
        .iter()
        .map(|_| Due {
            last: None,
            changed: true,
        })
        .collect();
    let periodic = settings.evaluation_interval;
    let min_interval = settings.min_interval;
    let mut last_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_check.elapsed() >= LOCK_CHECK {
            if !lock.still_held().await {
                tracing::warn!("lost the alert evaluator lock's connection; back to standby");
                break;
            }
            last_check = Instant::now();
        }
        let mut lost = false;
        for (rule, d) in settings.rules.iter().zip(due.iter_mut()) {
            let since = d.last.map(|t| t.elapsed());
            let run = since.is_none_or(|s| s >= periodic || (d.changed && s >= min_interval));
            if !run {
                continue;
            }
            d.last = Some(Instant::now());
            d.changed = false;
            match evaluate_and_record(ctx, rule, lock.backend_pid()).await {
                Ok(transitions) if transitions > 0 => wake.notify_waiters(),
                Ok(_) => {}
                Err(AlertError::LostLeadership) => {
                    tracing::warn!(
                        rule = rule.name,
                        "the evaluator lost its lock; nothing written; back to standby"
                    );
                    lost = true;
                    break;
                }
                Err(error) => {
                    tracing::warn!(rule = rule.name, %error, "alert evaluation failed; it runs again at its next turn")
                }
            }
            release_silenced(ctx, rule, &wake).await;
        }
        if lost {
            break;
        }
        let next = next_wake(&due, periodic, min_interval).min(LOCK_CHECK);
        match listener.as_mut() {
            Some(l) => {
                if let Ok(received) = tokio::time::timeout(next, l.try_recv()).await {
                    match received {
                        Ok(Some(notification)) => mark_changed(
                            ctx,
                            &mut due,
                            &view_changes::ViewChange::parse(notification.payload()).view,
                        ),
                        // The connection was lost; sqlx reconnects on the next call. Evaluate
                        // everything, since notifications may have been missed.
                        Ok(None) => due.iter_mut().for_each(|d| d.changed = true),
                        Err(error) => {
                            tracing::warn!(%error, "the view-change listener failed; reconnecting");
                            listener = None;
                        }
                    }
                }
            }
            None => {
                tokio::time::sleep(next).await;
                listener = listen(&ctx.pool).await;
                due.iter_mut().for_each(|d| d.changed = true);
            }
        }
    }
    running.stop().await;
    lock.release().await;
    Ok(())
}

/// Once a silence of `rule` has ended (expired or replaced by a shorter one), queues each
/// instance's current state for the receivers whose last delivery differs (see
/// [`store::release_silenced`]).
async fn release_silenced(ctx: &EvaluatorContext, rule: &AlertRule, wake: &Notify) {
    match store::release_silenced(&ctx.pool, &rule.name, (ctx.clock)()).await {
        Ok(0) => {}
        Ok(queued) => {
            tracing::info!(
                rule = rule.name,
                queued,
                "a silence ended: each instance's state that differs from the last one delivered is sent"
            );
            wake.notify_waiters();
        }
        Err(error) => {
            tracing::warn!(rule = rule.name, %error, "cannot look for silenced states to send; trying again at the next evaluation")
        }
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let attempt = async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(view_changes::CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match attempt.await {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for view changes; evaluating on the interval only until it can");
            None
        }
    }
}

fn mark_changed(ctx: &EvaluatorContext, due: &mut [Due], view: &str) {
    for (rule, d) in ctx.settings.rules.iter().zip(due.iter_mut()) {
        if rule.view == view {
            d.changed = true;
        }
    }
}

/// How long until some rule is due.
fn next_wake(due: &[Due], periodic: Duration, min_interval: Duration) -> Duration {
    due.iter()
        .map(|d| {
            let since = d.last.map_or(periodic, |t| t.elapsed());
            let wait = if d.changed { min_interval } else { periodic };
            wait.saturating_sub(since)
        })
        .min()
        .unwrap_or(periodic)
}

/// Says in a warning and in `braid_alerts_keys_left_out_total` that an evaluation left keys
/// out (more matched than `alerting.max_instances`): the keys kept are those nearest to
/// holding, and every live instance was evaluated all the same, unless it says
/// `unread_live`.
pub fn report_left_out(rule: &str, max_instances: u32, evaluation: &RuleEvaluation) {
    if !evaluation.truncated {
        return;
    }
    metrics::counter!("braid_alerts_keys_left_out_total", "rule" => rule.to_string()).increment(1);
    tracing::warn!(
        rule,
        max = max_instances,
        unread_live = evaluation.unread_live,
        "more keys matched than alerting.max_instances: keys were left out of this evaluation \
         (those nearest to holding were kept; pending and firing instances were evaluated all \
         the same, except `unread_live` of them, left as they were)"
    );
}

/// Evaluates one rule and writes the outcome; returns how many transitions it recorded.
pub async fn evaluate_and_record(
    ctx: &EvaluatorContext,
    rule: &AlertRule,
    leader_pid: i32,
) -> Result<usize, AlertError> {
    let view = ctx
        .settings
        .views
        .iter()
        .find(|v| v.name == rule.view)
        .ok_or_else(|| AlertError::UnknownView {
            rule: rule.name.clone(),
            view: rule.view.clone(),
        })?;
    let started = Instant::now();
    let now = (ctx.clock)();
    let evaluation = evaluate(
        &ctx.pool,
        view,
        &ctx.settings.topic,
        rule,
        now,
        ctx.settings.max_instances,
    )
    .await?;
    report_left_out(&rule.name, ctx.settings.max_instances, &evaluation);
    let receivers: Vec<String> = rule.notify.iter().map(ToString::to_string).collect();
    let ids = record(&ctx.pool, leader_pid, &evaluation, &receivers).await?;
    let firing = evaluation
        .instances
        .iter()
        .filter(|i| i.after == AlertState::Firing)
        .count();
    metrics::counter!("braid_alerts_evaluations_total", "rule" => rule.name.clone()).increment(1);
    metrics::histogram!("braid_alerts_evaluation_duration_seconds", "rule" => rule.name.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::gauge!("braid_alerts_firing", "rule" => rule.name.clone()).set(firing as f64);
    let changed: HashSet<&str> = evaluation
        .updates
        .iter()
        .filter_map(|u| u.transition.as_ref().map(|t| t.fingerprint.as_str()))
        .collect();
    for instance in evaluation
        .instances
        .iter()
        .filter(|i| changed.contains(i.fingerprint.as_str()))
    {
        tracing::info!(
            rule = rule.name,
            labels = %serde_json::Value::Object(instance.labels.clone()),
            value = ?instance.value,
            from = %instance.before,
            to = %instance.after,
            "alert transition"
        );
    }
    Ok(ids.len())
}
