//! One instance's step from one evaluation to the next, as Prometheus and Grafana define it:
//!
//! - the condition holds and the instance is not pending or firing: **pending** (or **firing**
//!   at once when `for` is 0);
//! - pending, and it has held for `for`: **firing**; pending and it stops holding: **inactive**;
//! - firing and it stops holding: still firing until `keep_firing_for` has passed since it last
//!   held, then **resolved**.
//!
//! Pure: the clock and the value come in, the next state and the transition (if any) go out.

use crate::store::AlertState;
use chrono::{DateTime, Duration, Utc};
use schemas::alert::AlertRule;

/// What is known of an instance before an evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// Its state (`Inactive` for an instance never seen).
    pub state: AlertState,
    /// When the condition started holding (pending and firing).
    pub active_since: Option<DateTime<Utc>>,
    /// The last evaluation at which the condition held.
    pub last_true_at: Option<DateTime<Utc>>,
}

impl Standing {
    /// An instance never seen.
    pub const NEW: Standing = Standing {
        state: AlertState::Inactive,
        active_since: None,
        last_true_at: None,
    };
}

/// The result of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The standing afterwards.
    pub next: Standing,
    /// `Some(previous state)` when the state changed.
    pub changed_from: Option<AlertState>,
}

/// Whether `value` satisfies the rule (no value, i.e. no rows in the window, never does).
pub fn condition_holds(rule: &AlertRule, value: Option<f64>) -> bool {
    value.is_some_and(|v| rule.op.holds(v, rule.threshold))
}

/// The next standing of an instance evaluated at `now` with `holds`.
pub fn step(rule: &AlertRule, before: Standing, holds: bool, now: DateTime<Utc>) -> Step {
    use AlertState::*;
    let held_for =
        |since: Option<DateTime<Utc>>| since.map_or(Duration::zero(), |since| now - since);
    let next = match (before.state, holds) {
        (Inactive | Resolved, true) => {
            let state = if rule.for_seconds == 0 {
                Firing
            } else {
                Pending
            };
            Standing {
                state,
                active_since: Some(now),
                last_true_at: Some(now),
            }
        }
        (Inactive | Resolved, false) => before,
        (Pending, true) => Standing {
            state: if held_for(before.active_since) >= Duration::seconds(rule.for_seconds) {
                Firing
            } else {
                Pending
            },
            last_true_at: Some(now),
            ..before
        },
        (Pending, false) => Standing {
            state: Inactive,
            active_since: None,
            ..before
        },
        (Firing, true) => Standing {
            last_true_at: Some(now),
            ..before
        },
        (Firing, false) => {
            if held_for(before.last_true_at) >= Duration::seconds(rule.keep_firing_for_seconds) {
                Standing {
                    state: Resolved,
                    active_since: None,
                    ..before
                }
            } else {
                before
            }
        }
    };
    Step {
        next,
        changed_from: (next.state != before.state).then_some(before.state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::alert::{AlertRule, CompareOp};
    use schemas::duration::HumanDuration;

    fn rule(for_seconds: i64, keep_firing_for_seconds: i64) -> AlertRule {
        AlertRule {
            name: "r".into(),
            view: "v".into(),
            filters: vec![],
            metric: "count".into(),
            window: HumanDuration::from_seconds(60).unwrap(),
            op: CompareOp::Gt,
            threshold: 10.0,
            for_seconds,
            keep_firing_for_seconds,
            group_by: vec![],
            notify: vec![],
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    /// Runs values through the machine one second apart and returns the states entered.
    fn run(rule: &AlertRule, values: &[Option<f64>]) -> Vec<(i64, AlertState)> {
        let mut standing = Standing::NEW;
        let mut entered = Vec::new();
        for (second, value) in values.iter().enumerate() {
            let step = step(
                rule,
                standing,
                condition_holds(rule, *value),
                at(second as i64),
            );
            if step.changed_from.is_some() {
                entered.push((second as i64, step.next.state));
            }
            standing = step.next;
        }
        entered
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved_after_keep_firing_for() {
        use AlertState::*;
        let values = [
            Some(5.0),
            Some(11.0),
            Some(12.0),
            Some(13.0),
            Some(1.0),
            None,
            Some(2.0),
            None,
            None,
        ];
        assert_eq!(
            run(&rule(2, 3), &values),
            [(1, Pending), (3, Firing), (6, Resolved)]
        );
    }

    #[test]
    fn pending_that_stops_holding_goes_inactive_and_never_fires() {
        use AlertState::*;
        let values = [Some(11.0), Some(12.0), Some(1.0), Some(11.0)];
        assert_eq!(
            run(&rule(5, 0), &values),
            [(0, Pending), (2, Inactive), (3, Pending)]
        );
    }

    #[test]
    fn for_zero_fires_at_once_and_keep_firing_for_zero_resolves_at_once() {
        use AlertState::*;
        assert_eq!(
            run(&rule(0, 0), &[Some(11.0), Some(1.0), Some(20.0)]),
            [(0, Firing), (1, Resolved), (2, Firing)]
        );
    }

    #[test]
    fn a_flap_shorter_than_keep_firing_for_does_not_resolve() {
        use AlertState::*;
        let values = [
            Some(11.0),
            Some(1.0),
            Some(11.0),
            Some(1.0),
            Some(1.0),
            Some(1.0),
        ];
        assert_eq!(run(&rule(0, 2), &values), [(0, Firing), (4, Resolved)]);
    }

    #[test]
    fn no_value_never_holds_whatever_the_comparison() {
        let mut r = rule(0, 0);
        r.op = CompareOp::Lt;
        assert!(!condition_holds(&r, None));
        assert!(condition_holds(&r, Some(0.0)));
    }
}
