//! GET /openapi.json: an OpenAPI 3.0 document built from the route table, the parameter
//! table the parser uses, and the configured views (their names and group fields).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::params::{Endpoint, FILTER_PREFIX, PARAMETERS};
use super::routes::{MAX_BODY_BYTES, MAX_URI_BYTES, ROUTES};
use super::state::AppState;

fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path {
        "/v1/views/{view}" => Some(Endpoint::Series),
        "/v1/views/{view}/rolling" => Some(Endpoint::Rolling),
        "/v1/views/{view}/top" => Some(Endpoint::Top),
        _ => None,
    }
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
    for (method, path, summary) in ROUTES {
        let mut parameters: Vec<Value> = Vec::new();
        if path.contains("{view}") {
            parameters.push(json!({
                "name": "view", "in": "path", "required": true,
                "schema": { "type": "string", "enum": views },
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
        if path.starts_with("/v1/alerts") {
            parameters.push(json!({
                "name": "rule", "in": "query", "required": false,
                "schema": { "type": "string", "enum": state.settings.alert_rules },
                "description": "Only this rule's instances or transitions.",
            }));
        }
        if *path == "/v1/alerts/history" {
            parameters.push(json!({
                "name": "limit", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1, "maximum": 10000 },
                "description": "Most transitions to return, newest first (default 100).",
            }));
        }
        if *path == "/v1/alerts" {
            parameters.push(json!({
                "name": "limit", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1, "maximum": super::alerts::ALERTS_PAGE_MAX },
                "description": format!("Most instances to return, in rule and fingerprint order (default {}).", super::alerts::ALERTS_PAGE_DEFAULT),
            }));
            parameters.push(json!({
                "name": "cursor", "in": "query", "required": false,
                "schema": { "type": "string" },
                "description": "Where the page starts: the `next_cursor` of the previous page (it is null on the last page).",
            }));
        }
        if *path == "/v1/jobs" {
            parameters.push(json!({
                "name": "limit", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1, "maximum": 1000 },
                "description": "Most runs to return, newest first (default 50).",
            }));
        }
        if *path == "/v1/dead-letters" {
            parameters.push(json!({
                "name": "recent", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 0, "maximum": 200 },
                "description": "How many of the most recent dead letters to show (default 20); only with the admin token.",
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
                parameters.push(json!({
                    "name": spec.name, "in": "query",
                    "required": spec.required_on.contains(&endpoint),
                    "schema": schema, "description": spec.description,
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
        let admin = path.starts_with("/v1/admin") || path.starts_with("/v1/jobs");
        let mut responses = Map::new();
        let starts_job = *method == "post" && path.starts_with("/v1/admin/jobs");
        let ok = if starts_job { "202" } else { "200" };
        responses.insert(ok.into(), json!({ "description": "Success." }));
        let alerts = path.starts_with("/v1/alerts") || path.starts_with("/v1/admin/alerts");
        let dead_letters = *path == "/v1/dead-letters";
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
        if *method == "post" {
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
        if *method == "post" {
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
            .insert(method.to_string(), operation);
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
