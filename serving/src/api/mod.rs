//! The REST API (axum): merged view rows, rolling windows, top keys, the catalog, health,
//! Prometheus metrics, an OpenAPI document built from the same tables as the parser, and
//! token-protected admin endpoints.
//!
//! [`app`] builds the router from an [`AppState`]; `braid serve` binds it to a socket.

pub mod admin;
pub mod alerts;
mod answer_cache;
mod answer_json;
mod catalog;
mod console;
mod dead_letters;
mod error;
mod health;
mod kafka_watch;
mod launcher;
mod openapi;
pub mod params;
mod provenance;
mod query;
mod request_input;
mod routes;
mod state;
mod status;
#[cfg(test)]
mod tests;
mod views;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use answer_cache::AnswerCache;
pub use error::ApiError;
pub use kafka_watch::{CommittedPosition, KafkaStatus, KafkaWatch, WatchedGroup};
pub use launcher::{JobLauncher, LaunchError};
pub use merged_read::{Bind, BoundStatement};
pub use params::Limits;
pub use routes::{MAX_BODY_BYTES, MAX_URI_BYTES, ROUTES};
pub use state::{AppState, Clock, MetricsRender, ServingSettings};

/// The statement that answers `GET path_and_query` (a /v1/views/{view} URI), with the values
/// of its placeholders: the same statement the API runs.
pub fn series_statement(
    state: &AppState,
    path_and_query: &str,
) -> Result<BoundStatement, ApiError> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let name = path
        .strip_prefix("/v1/views/")
        .filter(|n| !n.contains('/'))
        .ok_or_else(|| ApiError::NotFound(format!("`{path}` is not /v1/views/{{view}}")))?;
    let view = state.view(name)?;
    let (selection, _) = views::series_selection(state, view, Some(query))?;
    Ok(merged_read::ReadStatement::new(view, &selection, &state.settings.topic)?.into_bound())
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(console::index))
        .route("/console/{file}", get(console::file))
        .route("/v1/views", get(catalog::list))
        .route("/v1/views/{view}", get(views::series))
        .route("/v1/views/{view}/rolling", get(views::rolling))
        .route("/v1/views/{view}/top", get(views::top))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/history", get(alerts::history))
        .route("/v1/admin/alerts/{name}/silence", post(alerts::silence))
        .route("/v1/jobs", get(admin::list_jobs))
        .route("/v1/jobs/{id}", get(admin::job))
        .route("/v1/admin/jobs/{job}", post(admin::start_job))
        .route("/v1/status", get(status::status))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(request_input::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_input::refuse_long_uris))
        .layer(middleware::from_fn(measure))
        .layer(middleware::from_fn(console::security_headers))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route {} {}; GET /openapi.json lists them",
        request.method(),
        request.uri().path()
    ))
}

/// Counts requests and times them per route and status.
async fn measure(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("braid_serving_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("braid_serving_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
