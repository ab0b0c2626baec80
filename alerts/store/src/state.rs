//! An alert instance's state, as stored (`alert_instances.state`, `alert_transitions.from_state`
//! and `to_state`) and shown.

use std::fmt;
use std::str::FromStr;

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

pub(crate) fn decode_state(text: String) -> Result<AlertState, sqlx::Error> {
    text.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
