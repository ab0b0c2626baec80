//! The REST API (axum): merged view rows, rolling windows, top keys, the catalog, health,
//! Prometheus metrics, an OpenAPI document built from the same tables as the router and the parser, and
//! token-protected admin endpoints.
//!
//! [`app`] builds the router from [`ROUTES`] and an [`AppState`]; `braid serve` binds it to a socket.

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
pub mod routes;
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
use axum::routing::{MethodFilter, MethodRouter, get, on};

pub use answer_cache::AnswerCache;
pub use error::ApiError;
pub use kafka_watch::{CommittedPosition, KafkaStatus, KafkaWatch, WatchedGroup};
pub use launcher::{JobLauncher, LaunchError};
pub use merged_read::{Bind, BoundStatement};
pub use params::Limits;
pub use routes::{MAX_BODY_BYTES, MAX_URI_BYTES, Method, ROUTES, Route};
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

/// The router: the console's files, and every route of [`ROUTES`] with its handler.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(console::index))
        .route("/console/{file}", get(console::file));
    for route in ROUTES {
        router = router.route(route.path, handler(route));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(request_input::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_input::refuse_long_uris))
        .layer(middleware::from_fn(measure))
        .layer(middleware::from_fn(console::security_headers))
        .with_state(state)
}

/// The handler of `route`, under the route's method.
fn handler(route: &Route) -> MethodRouter<AppState> {
    let method = match route.method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
    };
    match route.path {
        routes::VIEWS => on(method, catalog::list),
        routes::VIEW_SERIES => on(method, views::series),
        routes::VIEW_ROLLING => on(method, views::rolling),
        routes::VIEW_TOP => on(method, views::top),
        routes::VIEW_SAMPLE => on(method, views::sample),
        routes::ALERTS => on(method, alerts::list),
        routes::ALERT_HISTORY => on(method, alerts::history),
        routes::ALERT_SILENCE => on(method, alerts::silence),
        routes::JOBS => on(method, admin::list_jobs),
        routes::JOB => on(method, admin::job),
        routes::START_JOB => on(method, admin::start_job),
        routes::STATUS => on(method, status::status),
        routes::DEAD_LETTERS => on(method, dead_letters::list),
        routes::HEALTHZ => on(method, health::healthz),
        routes::READYZ => on(method, health::readyz),
        routes::METRICS => on(method, health::metrics),
        routes::OPENAPI => on(method, openapi::document),
        other => unreachable!("route {other} is in ROUTES without a handler"),
    }
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
