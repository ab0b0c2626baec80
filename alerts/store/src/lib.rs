//! The alert tables: `braid_internal.alert_instances`, `alert_transitions`,
//! `alert_deliveries`, `alert_silences` and `alert_evaluations`. This crate is the only code
//! with their SQL; the evaluator and notifiers (`alerts`), the API (`serving::api::alerts`),
//! `braid alerts` and the `prune` job (`jobs`) read and write them through it. It depends on
//! nothing of Braid's, so that each of them may use it (the API included, which the evaluator
//! reads through). JSON columns are bound and read as text (`$n::jsonb`, `col::text`).
//!
//! - [`state`]: an instance's state (pending, firing, resolved, inactive);
//! - [`instances`]: reading the stored instances;
//! - [`evaluations`]: recording one evaluation (instances, transitions, deliveries);
//! - [`deliveries`]: the transition history and the notifiers' outbox;
//! - [`silences`]: silencing a rule, and what a receiver missed when it ends;
//! - [`retention`]: deleting old finished history in chunks (the `prune` job).

pub mod deliveries;
pub mod evaluations;
pub mod instances;
pub mod retention;
pub mod silences;
pub mod state;

pub use deliveries::{
    DueDelivery, Transition, due_deliveries, history, mark_delivered, mark_failed, next_due,
};
pub use evaluations::{
    EvaluationRecord, InstanceUpdate, InstanceVersion, LastEvaluation, NewTransition,
    changed_since_read, last_evaluation, record_evaluation,
};
pub use instances::{Instance, InstanceCursor, instances, instances_page, instances_to_evaluate};
pub use silences::{release_silenced, silence, silenced_until};
pub use state::{AlertState, UnknownState};

#[cfg(test)]
mod tests;
