//! GET /openapi.json: an OpenAPI 3.0 document built from the route table the router is built
//! from, the parameter table the parser uses, the handlers' own bounds (their `CountParam`s,
//! the server's limits) and the configured views (their names and group fields).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::params::{Bound, COUNT_MIN, Endpoint, FILTER_PREFIX, PARAMETERS};
use super::request_input::CountParam;
use super::routes::{
    ALERT_HISTORY, ALERT_SILENCE, ALERTS, DEAD_LETTERS, JOB, JOBS, MAX_BODY_BYTES, MAX_URI_BYTES,
    Method, ROUTES, START_JOB, VIEW_ROLLING, VIEW_SAMPLE, VIEW_SERIES, VIEW_TOP,
};
use super::state::AppState;
use super::{admin, alerts, dead_letters};

fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path {
        VIEW_SERIES => Some(Endpoint::Series),
        VIEW_ROLLING => Some(Endpoint::Rolling),
        VIEW_TOP => Some(Endpoint::Top),
        VIEW_SAMPLE => Some(Endpoint::Sample),
        _ => None,
    }
}

/// The whole-number query parameter the handler of `path` takes, if any.
fn count_param(path: &str) -> Option<&'static CountParam> {
    match path {
        ALERTS => Some(&alerts::ALERTS_LIMIT),
        ALERT_HISTORY => Some(&alerts::HISTORY_LIMIT),
        JOBS => Some(&admin::JOBS_LIMIT),
        DEAD_LETTERS => Some(&dead_letters::RECENT),
        _ => None,
    }
}

fn count_parameter(count: &CountParam) -> Value {
    json!({
        "name": count.name, "in": "query", "required": false,
        "schema": { "type": "integer", "minimum": count.min, "maximum": count.max },
        "description": format!("{} (default {}).", count.description, count.default),
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

/// The document.
pub fn build(state: &AppState) -> Value {
    let views: Vec<&str> = state
        .settings
        .views
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    let mut group_fields: Vec<&str> = state
        .settings
        .views
        .iter()
        .flat_map(|v| v.served_names())
        .collect();
    group_fields.sort_unstable();
    group_fields.dedup();
    let mut paths = Map::new();
    for route in ROUTES {
        let (method, path, summary) = (route.method, route.path, route.summary);
        let alerts = matches!(path, ALERTS | ALERT_HISTORY | ALERT_SILENCE);
        let mut parameters: Vec<Value> = Vec::new();
        if path.contains("{view}") {
            // The sample route answers the views that keep a sample (the others: a 400).
            let sampled: Vec<&str> = state
                .settings
                .views
                .iter()
                .filter(|v| v.metrics.iter().any(|m| m.sample.is_some()))
                .map(|v| v.name.as_str())
                .collect();
            let names = if path == VIEW_SAMPLE && !sampled.is_empty() {
                &sampled
            } else {
                &views
            };
            parameters.push(json!({
                "name": "view", "in": "path", "required": true,
                "schema": { "type": "string", "enum": names },
                "description": "The view's name, as configured in [[views]].",
            }));
        }
        if path.contains("{id}") {
            parameters.push(json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }));
        }
        if path.contains("{job}") {
            parameters.push(json!({ "name": "job", "in": "path", "required": true, "schema": { "type": "string" } }));
        }
        if path.contains("{name}") {
            parameters.push(json!({
                "name": "name", "in": "path", "required": true,
                "schema": { "type": "string", "enum": state.settings.alert_rules },
                "description": "The alert rule's name, as configured in [[alerts]].",
            }));
        }
        if matches!(path, ALERTS | ALERT_HISTORY) {
            parameters.push(json!({
                "name": "rule", "in": "query", "required": false,
                "schema": { "type": "string", "enum": state.settings.alert_rules },
                "description": "Only this rule's instances or transitions.",
            }));
        }
        if let Some(count) = count_param(path) {
            parameters.push(count_parameter(count));
        }
        if path == ALERTS {
            parameters.push(json!({
                "name": "cursor", "in": "query", "required": false,
                "schema": { "type": "string" },
                "description": "Where the page starts: the `next_cursor` of the previous page (it is null on the last page).",
            }));
        }
        if let Some(endpoint) = endpoint_of(path) {
            for spec in PARAMETERS
                .iter()
                .filter(|p| p.endpoints.contains(&endpoint))
            {
                let mut schema = json!({ "type": spec.schema.0 });
                if let Some(format) = spec.schema.1 {
                    schema["format"] = json!(format);
                }
                let limits = &state.settings.limits;
                let days = limits.max_range_seconds / 86_400;
                let description = match spec.bound {
                    Bound::Unbounded => spec.description.to_string(),
                    Bound::Count => {
                        schema["minimum"] = json!(COUNT_MIN);
                        schema["maximum"] = json!(limits.max_limit);
                        spec.description.to_string()
                    }
                    Bound::Span => format!(
                        "{} At most {days} days on this server (serving.max_range_days).",
                        spec.description
                    ),
                    Bound::RangeStart => format!(
                        "{} The range is at most {days} days on this server (serving.max_range_days).",
                        spec.description
                    ),
                };
                parameters.push(json!({
                    "name": spec.name, "in": "query",
                    "required": spec.required_on.contains(&endpoint),
                    "schema": schema, "description": description,
                }));
            }
            for field in &group_fields {
                parameters.push(json!({
                    "name": format!("{FILTER_PREFIX}{field}"), "in": "query", "required": false,
                    "style": "form", "explode": true,
                    "schema": { "type": "array", "items": { "type": "string" } },
                    "description": format!("Keep rows whose `{field}` is one of the given values (repeat the parameter for several). Only for views grouped by `{field}`."),
                }));
            }
        }
        let admin = matches!(path, ALERT_SILENCE | JOBS | JOB | START_JOB);
        let mut responses = Map::new();
        let starts_job = path == START_JOB;
        let ok = if starts_job { "202" } else { "200" };
        responses.insert(ok.into(), json!({ "description": "Success." }));
        let dead_letters = path == DEAD_LETTERS;
        if endpoint_of(path).is_some() || admin || alerts || dead_letters {
            responses.insert(
                "400".into(),
                error_response("A bad parameter; `parameter` names it."),
            );
        }
        if path.contains('{') || alerts {
            responses.insert(
                "404".into(),
                error_response("No such view, job, job run or alert rule."),
            );
        }
        if starts_job {
            responses.insert(
                "409".into(),
                error_response("This server cannot run jobs, or the job refused to start."),
            );
        }
        if method == Method::Post {
            responses.insert(
                "413".into(),
                error_response(&format!("The body is larger than {MAX_BODY_BYTES} bytes.")),
            );
        }
        responses.insert(
            "405".into(),
            error_response("The path does not take this method."),
        );
        responses.insert(
            "414".into(),
            error_response(&format!(
                "The path and query are longer than {MAX_URI_BYTES} bytes."
            )),
        );
        if admin || dead_letters {
            responses.insert(
                "401".into(),
                error_response("The bearer token is missing or wrong."),
            );
            responses.insert(
                "403".into(),
                error_response("Admin endpoints are off (no BRAID_ADMIN_TOKEN)."),
            );
        }
        responses.insert(
            "503".into(),
            error_response("The database is unavailable; retry after Retry-After seconds."),
        );
        let mut operation =
            json!({ "summary": summary, "parameters": parameters, "responses": responses });
        if admin {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        if method == Method::Post {
            operation["requestBody"] = json!({
                "required": false,
                "description": format!("A JSON object of job parameters (at most {MAX_BODY_BYTES} bytes)."),
                "content": { "application/json": { "schema": { "type": "object" } } },
            });
        }
        paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object")
            .insert(method.as_str().to_string(), operation);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Braid serving API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Exact merged views of a Kafka stream: the active batch run ⊕ the speed layer's rows. Every answer carries its provenance.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "status": { "type": "integer" },
                                "code": { "type": "string" },
                                "message": { "type": "string" },
                                "parameter": { "type": "string", "nullable": true },
                                "retryable": { "type": "boolean" },
                            },
                        },
                    },
                },
            },
        },
    })
}

/// GET /openapi.json.
pub async fn document(State(state): State<AppState>) -> Json<Value> {
    Json(build(&state))
}
