//! The REST API (axum): merged view rows, rolling windows, top keys, the catalog, health,
//! Prometheus metrics, an OpenAPI document built from the same tables as the parser, and
//! token-protected admin endpoints.
//!
//! [`app`] builds the router from an [`AppState`]; `braid serve` binds it to a socket.

pub mod admin;
mod answer_json;
mod catalog;
mod error;
mod health;
mod kafka_watch;
mod openapi;
pub mod params;
mod provenance;
mod query;
#[cfg(test)]
mod tests;
mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use schemas::view::View;
use sqlx::PgPool;

pub use admin::{JobLauncher, LaunchError};
pub use error::ApiError;
pub use kafka_watch::{KafkaStatus, KafkaWatch};
pub use params::Limits;

/// The largest request body accepted, in bytes (admin requests carry small JSON bodies).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where "now" comes from: the wall clock in production, a fixed instant in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Renders the Prometheus exposition of the process's metrics.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What the API serves, from the validated configuration.
#[derive(Debug, Clone)]
pub struct ServingSettings {
    /// The views, by name.
    pub views: Vec<View>,
    /// The Kafka topic whose speed positions are reported.
    pub topic: String,
    /// Caps on queries.
    pub limits: Limits,
    /// The bearer token of the admin endpoints; `None` turns them off.
    pub admin_token: Option<String>,
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// What is served.
    pub settings: Arc<ServingSettings>,
    /// Kafka's last known state.
    pub kafka: KafkaWatch,
    /// The clock.
    pub clock: Clock,
    /// Starts admin jobs; `None` when this server cannot run them.
    pub jobs: Option<Arc<dyn JobLauncher>>,
    /// Renders /metrics; `None` when no recorder is installed.
    pub metrics: Option<MetricsRender>,
}

impl AppState {
    /// A state with the wall clock, no job launcher and no metrics.
    pub fn new(pool: PgPool, settings: ServingSettings, kafka: KafkaWatch) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            kafka,
            clock: Arc::new(Utc::now),
            jobs: None,
            metrics: None,
        }
    }

    /// The view named `name`.
    pub fn view(&self, name: &str) -> Result<&View, ApiError> {
        self.settings
            .views
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| ApiError::UnknownView(name.to_string()))
    }
}

/// The routes, as documented in /openapi.json: (method, path, summary).
pub const ROUTES: &[(&str, &str, &str)] = &[
    (
        "get",
        "/v1/views",
        "The views: definitions and state (active batch run, speed freshness).",
    ),
    (
        "get",
        "/v1/views/{view}",
        "Merged rows of a view per key and time bucket.",
    ),
    (
        "get",
        "/v1/views/{view}/rolling",
        "Totals per key over a sliding window ending now.",
    ),
    (
        "get",
        "/v1/views/{view}/top",
        "The top keys by a metric over a window ending now.",
    ),
    ("get", "/v1/jobs", "Recent job runs (admin token)."),
    (
        "get",
        "/v1/jobs/{id}",
        "One job run with its progress (admin token).",
    ),
    (
        "post",
        "/v1/admin/jobs/{job}",
        "Start a job now: batch, compact or vacuum (admin token).",
    ),
    ("get", "/healthz", "The process is up."),
    ("get", "/readyz", "The database and Kafka are reachable."),
    ("get", "/metrics", "Prometheus metrics."),
    ("get", "/openapi.json", "This document."),
];

/// The SQL statement that answers `GET path_and_query` (a /v1/views/{view} URI), with its
/// values as literals: what the benchmark runs directly with pgbench beside the API.
pub fn series_sql(state: &AppState, path_and_query: &str) -> Result<String, ApiError> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let name = path
        .strip_prefix("/v1/views/")
        .filter(|n| !n.contains('/'))
        .ok_or_else(|| ApiError::NotFound(format!("`{path}` is not /v1/views/{{view}}")))?;
    let view = state.view(name)?;
    let (selection, _) = views::series_selection(state, view, Some(query))?;
    Ok(query::with_literals(
        view,
        &selection,
        &state.settings.topic,
    ))
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/views", get(catalog::list))
        .route("/v1/views/{view}", get(views::series))
        .route("/v1/views/{view}/rolling", get(views::rolling))
        .route("/v1/views/{view}/top", get(views::top))
        .route("/v1/jobs", get(admin::list_jobs))
        .route("/v1/jobs/{id}", get(admin::job))
        .route("/v1/admin/jobs/{job}", post(admin::start_job))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(measure))
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
