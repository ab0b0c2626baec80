//! The notification body: a JSON document in the shape Alertmanager's webhook receiver sends
//! (`version`, `status`, `receiver`, `groupLabels`, `commonLabels`, `alerts[]` with `labels`,
//! `annotations`, `startsAt`, `endsAt`, `fingerprint`), so that receivers written for it
//! consume it, plus `braid`: the transition itself with its value, window and provenance.

use crate::store::{AlertState, Transition};
use chrono::SecondsFormat;
use serde_json::{Map, Value, json};

/// The header and field that identify one transition's delivery to one receiver: the same on
/// every retry, so that a receiver recognises a repeated delivery.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The idempotency key of `transition` for `receiver`.
pub fn idempotency_key(transition: &Transition, receiver: &str) -> String {
    format!(
        "braid-{}-{}-{receiver}",
        transition.fingerprint, transition.id
    )
}

/// Alertmanager's status: `firing` or `resolved`; Braid adds `pending` for the transitions
/// Alertmanager never sees (a receiver that only knows two states can ignore it).
fn status(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Pending => "pending",
        AlertState::Resolved | AlertState::Inactive => "resolved",
    }
}

/// The body sent for `transition` to `receiver`.
pub fn body(transition: &Transition, receiver: &str) -> Value {
    let e = &transition.evaluation;
    let mut labels: Map<String, Value> =
        serde_json::from_str(&transition.labels).unwrap_or_default();
    labels.insert("alertname".into(), json!(e.rule));
    let at = e.at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let value = transition
        .value
        .map_or_else(|| "no data".to_string(), |v| v.to_string());
    let summary = format!(
        "{} {} is {value} over [{}, {}) ({} {}); {} -> {}",
        e.rule,
        e.metric,
        e.window_start.to_rfc3339_opts(SecondsFormat::Secs, true),
        e.window_end.to_rfc3339_opts(SecondsFormat::Secs, true),
        e.op,
        e.threshold,
        transition.from,
        transition.to,
    );
    let ended = matches!(transition.to, AlertState::Resolved | AlertState::Inactive);
    json!({
        "version": "4",
        "receiver": receiver,
        "status": status(transition.to),
        "groupKey": format!("{}:{}", e.rule, transition.fingerprint),
        "truncatedAlerts": 0,
        "groupLabels": { "alertname": e.rule },
        "commonLabels": labels,
        "commonAnnotations": { "summary": summary },
        "externalURL": "",
        "alerts": [{
            "status": status(transition.to),
            "labels": labels,
            "annotations": { "summary": summary },
            "startsAt": if ended { Value::Null } else { json!(at) },
            "endsAt": if ended { json!(at) } else { json!("0001-01-01T00:00:00Z") },
            "generatorURL": "",
            "fingerprint": transition.fingerprint,
        }],
        "idempotency_key": idempotency_key(transition, receiver),
        "braid": crate::json::transition_json(transition),
    })
}
