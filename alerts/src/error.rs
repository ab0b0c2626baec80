//! What can go wrong, and whose fault it is.

use merged_read::ReadError;

/// An alerting error.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The database failed (transient: retried at the next evaluation).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The merged window could not be read (transient unless the config is wrong).
    #[error("reading the merged window of view `{view}` for rule `{rule}`: {source}")]
    Window {
        /// The rule.
        rule: String,
        /// The view.
        view: String,
        /// The read's error.
        source: ReadError,
    },
    /// The rule's view is not configured (a config that changed under a running evaluator).
    #[error("rule `{rule}` watches view `{view}`, which is not configured")]
    UnknownView {
        /// The rule.
        rule: String,
        /// The view.
        view: String,
    },
    /// This process is no longer the active evaluator: nothing was written.
    #[error("this evaluator lost its lock (another one may be active); nothing was written")]
    LostLeadership,
    /// Another evaluator recorded an instance after this evaluation read it (a failover):
    /// nothing was written; the next evaluation reads the new state.
    #[error(
        "instance `{fingerprint}` of rule `{rule}` changed since this evaluation read it (another evaluator recorded it); nothing was written"
    )]
    Stale {
        /// The rule.
        rule: String,
        /// The instance.
        fingerprint: String,
    },
    /// A webhook's token variable is not set (the operator's: not retried).
    #[error(
        "[alerting.webhooks.{webhook}] token_env names `{var}`, which is not set in the environment"
    )]
    MissingToken {
        /// The webhook.
        webhook: String,
        /// The variable.
        var: String,
    },
    /// A notification client could not be built.
    #[error("setting up receiver `{receiver}`: {reason}")]
    Receiver {
        /// The receiver.
        receiver: String,
        /// Why.
        reason: String,
    },
    /// No rule has this name.
    #[error("no alert rule is named `{0}`; `braid alerts list` shows the configured rules")]
    UnknownRule(String),
}

impl AlertError {
    /// Whether trying again may succeed (the database or a receiver was away); `false` for the
    /// operator's errors, which stop the evaluator with their message.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            AlertError::MissingToken { .. }
                | AlertError::UnknownView { .. }
                | AlertError::UnknownRule(_)
        )
    }
}
