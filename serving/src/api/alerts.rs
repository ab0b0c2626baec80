//! GET /v1/alerts (current instances), GET /v1/alerts/history (transitions with their
//! deliveries) and POST /v1/admin/alerts/{name}/silence (admin token).

use alerts::json::{instance_json, time_json as time, transition_json};
use alerts::store;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use schemas::duration::HumanDuration;
use serde_json::{Value, json};

use super::admin::authorize;
use super::error::ApiError;
use super::request_input::{CountParam, body_bytes, path_text, query_pairs};
use super::state::AppState;

/// `name`, if an alert rule has it.
fn known_rule(state: &AppState, name: String) -> Result<String, ApiError> {
    if state.settings.alert_rules.contains(&name) {
        Ok(name)
    } else {
        Err(ApiError::NotFound(format!(
            "no alert rule is named `{name}`; GET /v1/alerts lists them"
        )))
    }
}

/// The `rule` and `limit` parameters of the history; anything else is refused by name.
fn rule_and_limit(state: &AppState, raw: Option<&str>) -> Result<(Option<String>, i64), ApiError> {
    let mut rule = None;
    let mut limit = HISTORY_LIMIT.default;
    let takes = "rule and limit";
    for pair in query_pairs(raw)? {
        match pair.name.as_str() {
            "rule" => {
                rule = Some(known_rule(state, pair.value)?);
            }
            "limit" => limit = HISTORY_LIMIT.parse(&pair.value)?,
            other => {
                return Err(ApiError::bad(
                    other,
                    format!("unknown parameter `{other}`; this endpoint takes {takes}"),
                ));
            }
        }
    }
    Ok((rule, limit))
}

/// The `limit` of GET /v1/alerts/history.
pub const HISTORY_LIMIT: CountParam = CountParam {
    name: "limit",
    min: 1,
    default: 100,
    max: 10_000,
    description: "Most transitions to return, newest first",
};

/// The `limit` of GET /v1/alerts: a page's size.
pub const ALERTS_LIMIT: CountParam = CountParam {
    name: "limit",
    min: 1,
    default: 100,
    max: 1000,
    description: "Most instances to return, in rule and fingerprint order",
};

/// A page's cursor as the API shows it: `rule:fingerprint` of the last instance shown.
fn cursor_text(cursor: &store::InstanceCursor) -> String {
    format!("{}:{}", cursor.rule, cursor.fingerprint)
}

fn parse_cursor(text: &str) -> Result<store::InstanceCursor, ApiError> {
    text.rsplit_once(':')
        .filter(|(rule, fingerprint)| !rule.is_empty() && !fingerprint.is_empty())
        .map(|(rule, fingerprint)| store::InstanceCursor {
            rule: rule.to_string(),
            fingerprint: fingerprint.to_string(),
        })
        .ok_or_else(|| {
            ApiError::bad(
                "cursor",
                format!("`{text}` is not a cursor; pass the `next_cursor` of the previous page"),
            )
        })
}

/// The parameters of GET /v1/alerts.
struct InstancesQuery {
    rule: Option<String>,
    limit: i64,
    cursor: Option<store::InstanceCursor>,
}

fn instances_query(state: &AppState, raw: Option<&str>) -> Result<InstancesQuery, ApiError> {
    let mut query = InstancesQuery {
        rule: None,
        limit: ALERTS_LIMIT.default,
        cursor: None,
    };
    for pair in query_pairs(raw)? {
        match pair.name.as_str() {
            "rule" => {
                query.rule = Some(known_rule(state, pair.value)?);
            }
            "limit" => query.limit = ALERTS_LIMIT.parse(&pair.value)?,
            "cursor" => query.cursor = Some(parse_cursor(&pair.value)?),
            other => {
                return Err(ApiError::bad(
                    other,
                    format!(
                        "unknown parameter `{other}`; this endpoint takes rule, limit and cursor"
                    ),
                ));
            }
        }
    }
    Ok(query)
}

/// GET /v1/alerts?rule=NAME&limit=N&cursor=C: the rules, and one page of instances in rule and
/// fingerprint order (`limit`, default 100, at most 1000) with `next_cursor` for the next
/// page (`null` on the last).
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = instances_query(&state, raw.as_deref())?;
    let rule = query.rule;
    // One row more than the page tells whether there is a next one.
    let mut instances = store::instances_page(
        &state.pool,
        rule.as_deref(),
        query.cursor.as_ref(),
        query.limit + 1,
    )
    .await?;
    let more = instances.len() as i64 > query.limit;
    instances.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
    let next_cursor = instances.last().filter(|_| more).map(|i| {
        cursor_text(&store::InstanceCursor {
            rule: i.rule.clone(),
            fingerprint: i.fingerprint.clone(),
        })
    });
    let now = (state.clock)();
    let mut rules = Vec::new();
    for name in state
        .settings
        .alert_rules
        .iter()
        .filter(|n| rule.as_ref().is_none_or(|r| r == *n))
    {
        let until = store::silenced_until(&state.pool, name, now).await?;
        rules.push(json!({ "rule": name, "silenced_until": until.map(time) }));
    }
    let instances: Vec<Value> = instances.iter().map(instance_json).collect();
    Ok(
        axum::Json(json!({ "rules": rules, "alerts": instances, "next_cursor": next_cursor }))
            .into_response(),
    )
}

/// GET /v1/alerts/history?rule=NAME&limit=N: transitions, newest first, each with the value,
/// threshold, window and provenance it was evaluated on, and its deliveries.
pub async fn history(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (rule, limit) = rule_and_limit(&state, raw.as_deref())?;
    let transitions: Vec<Value> = store::history(&state.pool, rule.as_deref(), limit)
        .await?
        .into_iter()
        .map(|t| transition_json(&t))
        .collect();
    Ok(axum::Json(json!({ "transitions": transitions })).into_response())
}

/// The longest silence: a year. Longer ones are refused rather than clamped (a typo such as
/// `100000000d` would otherwise overflow the clock's arithmetic).
pub const MAX_SILENCE_SECONDS: i64 = 365 * 86_400;

/// When a silence of `text` (e.g. `30m`) that starts at `now` ends; refused, naming
/// `duration`, unless it is a duration from 1 s to [`MAX_SILENCE_SECONDS`].
pub fn silence_end(now: DateTime<Utc>, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let duration =
        HumanDuration::parse(text).map_err(|e| ApiError::bad("duration", e.to_string()))?;
    let too_long = || {
        ApiError::bad(
            "duration",
            format!("`{text}` is longer than a silence may be (at most 365d)"),
        )
    };
    if duration.seconds() > MAX_SILENCE_SECONDS {
        return Err(too_long());
    }
    Duration::try_seconds(duration.seconds())
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(too_long)
}

/// POST /v1/admin/alerts/{name}/silence with `{"duration": "30m"}`: no notifications for the
/// rule until then (transitions are still recorded, their deliveries marked `silenced`).
pub async fn silence(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let name = path_text(name, "name")?;
    if !state.settings.alert_rules.contains(&name) {
        return Err(ApiError::NotFound(format!(
            "no alert rule is named `{name}`; GET /v1/alerts lists them"
        )));
    }
    let body = body_bytes(body)?;
    let parameters: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "body",
            format!("the body is not JSON: {e}; send {{\"duration\": \"30m\"}}"),
        )
    })?;
    let text = parameters
        .get("duration")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad(
                "duration",
                "`duration` is required, e.g. {\"duration\": \"30m\"}",
            )
        })?;
    if let Some(other) = parameters
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "duration"))
    {
        return Err(ApiError::bad(
            other,
            format!("unknown field `{other}`; the body takes duration"),
        ));
    }
    let until = silence_end((state.clock)(), text)?;
    store::silence(&state.pool, &name, until).await?;
    tracing::info!(rule = name, until = %until, "alert rule silenced through the API");
    Ok(axum::Json(json!({ "rule": name, "silenced_until": time(until) })).into_response())
}
