//! Recording against a real PostgreSQL database: two evaluators that read the same state
//! (a failover) record its transitions once.

use crate::store::{AlertState, EvaluationRecord, Instance, InstanceUpdate, NewTransition};
use chrono::{TimeZone, Utc};
use schemas::pg::leader::LeaderLock;
use sqlx::PgPool;

use crate::AlertError;
use crate::evaluate::{RuleEvaluation, record};
use crate::evaluator::EVALUATOR_LOCK;

/// An evaluation of `rule` that read no stored instance and fires one.
fn firing_evaluation(rule: &str) -> RuleEvaluation {
    let at = Utc.with_ymd_and_hms(2026, 12, 6, 4, 0, 0).unwrap();
    let labels = r#"{"page":"/hot"}"#.to_string();
    RuleEvaluation {
        record: EvaluationRecord {
            rule: rule.into(),
            metric: "count".into(),
            op: "gt".into(),
            threshold: 5.0,
            window_start: at - chrono::Duration::seconds(10),
            window_end: at,
            batch: None,
            speed: "{}".into(),
            at,
        },
        instances: Vec::new(),
        updates: vec![InstanceUpdate {
            instance: Instance {
                fingerprint: "fp-hot".into(),
                rule: rule.into(),
                labels: labels.clone(),
                state: AlertState::Firing,
                value: Some(8.0),
                active_since: Some(at),
                last_true_at: Some(at),
                last_transition_id: None,
                evaluated_at: at,
            },
            transition: Some(NewTransition {
                fingerprint: "fp-hot".into(),
                rule: rule.into(),
                labels,
                from: AlertState::Inactive,
                to: AlertState::Firing,
                value: Some(8.0),
                at,
            }),
        }],
        truncated: false,
        unread_live: 0,
    }
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM braid_internal.{table}"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn two_evaluators_that_read_the_same_state_record_its_transition_once(pool: PgPool) {
    let lock = LeaderLock::try_take(&pool, EVALUATOR_LOCK)
        .await
        .unwrap()
        .unwrap();
    let pid = lock.backend_pid();
    let evaluation = firing_evaluation("hot_page");
    let receivers = ["webhook:test".to_string()];
    // Both read "no instance" and race to record inactive -> firing.
    let (first, second) = tokio::join!(
        record(&pool, pid, &evaluation, &receivers),
        record(&pool, pid, &evaluation, &receivers),
    );
    let recorded = [&first, &second].iter().filter(|r| r.is_ok()).count();
    let stale = [&first, &second]
        .iter()
        .filter(
            |r| matches!(r, Err(AlertError::Stale { fingerprint, .. }) if fingerprint == "fp-hot"),
        )
        .count();
    assert_eq!(
        (recorded, stale),
        (1, 1),
        "one records, the other is refused: {first:?} {second:?}"
    );
    assert_eq!(count(&pool, "alert_transitions").await, 1);
    assert_eq!(
        count(&pool, "alert_deliveries").await,
        receivers.len() as i64
    );
    // A third that read the same (now stale) state is refused too; one that read the new state
    // records.
    assert!(matches!(
        record(&pool, pid, &evaluation, &receivers).await,
        Err(AlertError::Stale { .. })
    ));
    let stored = crate::store::instances(&pool, Some("hot_page"))
        .await
        .unwrap();
    let mut fresh = firing_evaluation("hot_page");
    fresh.updates[0].instance.last_transition_id = stored[0].last_transition_id;
    fresh.updates[0].transition = None;
    assert!(
        record(&pool, pid, &fresh, &receivers)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(count(&pool, "alert_transitions").await, 1);
    lock.release().await;
}
