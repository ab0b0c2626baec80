//! The routes the API serves: one table that the router is built from and /openapi.json
//! documents, so the two cannot drift; and the size limits.

/// The largest request body accepted, in bytes (admin requests carry small JSON bodies).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest request target (path and query) accepted, in bytes. Longer targets answer 414.
/// Every legitimate query fits many times over; past 64 KiB the HTTP parser refuses on its own.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// GET: the views.
pub const VIEWS: &str = "/v1/views";
/// GET: merged rows of a view.
pub const VIEW_SERIES: &str = "/v1/views/{view}";
/// GET: totals over a window ending now.
pub const VIEW_ROLLING: &str = "/v1/views/{view}/rolling";
/// GET: the top keys over a window ending now.
pub const VIEW_TOP: &str = "/v1/views/{view}/top";
/// GET: the merged sample of a view's rows in a range.
pub const VIEW_SAMPLE: &str = "/v1/views/{view}/sample";
/// GET: alert instances.
pub const ALERTS: &str = "/v1/alerts";
/// GET: alert transitions.
pub const ALERT_HISTORY: &str = "/v1/alerts/history";
/// POST: silence a rule.
pub const ALERT_SILENCE: &str = "/v1/admin/alerts/{name}/silence";
/// GET: job runs.
pub const JOBS: &str = "/v1/jobs";
/// GET: one job run.
pub const JOB: &str = "/v1/jobs/{id}";
/// POST: start a job.
pub const START_JOB: &str = "/v1/admin/jobs/{job}";
/// GET: each component's health.
pub const STATUS: &str = "/v1/status";
/// GET: dead letters.
pub const DEAD_LETTERS: &str = "/v1/dead-letters";
/// GET: liveness.
pub const HEALTHZ: &str = "/healthz";
/// GET: readiness.
pub const READYZ: &str = "/readyz";
/// GET: Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// GET: the OpenAPI document.
pub const OPENAPI: &str = "/openapi.json";

/// An HTTP method a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

impl Method {
    /// As OpenAPI writes it: `get`, `post`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
        }
    }
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Its method.
    pub method: Method,
    /// Its path, with `{segment}` placeholders.
    pub path: &'static str,
    /// What it does, as documented.
    pub summary: &'static str,
}

const fn route(method: Method, path: &'static str, summary: &'static str) -> Route {
    Route {
        method,
        path,
        summary,
    }
}

use Method::{Get, Post};

/// The routes (besides the console's files), as served and documented in /openapi.json.
pub const ROUTES: &[Route] = &[
    route(
        Get,
        VIEWS,
        "The views: definitions and state (active batch run, speed freshness).",
    ),
    route(
        Get,
        VIEW_SERIES,
        "Merged rows of a view per key and time bucket.",
    ),
    route(
        Get,
        VIEW_ROLLING,
        "Totals per key over a sliding window ending now.",
    ),
    route(
        Get,
        VIEW_TOP,
        "The top keys by a metric over a window ending now.",
    ),
    route(
        Get,
        VIEW_SAMPLE,
        "The records a view's sample(K) keeps for the rows in a range: the K with the smallest hash of their Kafka position, merged from both layers.",
    ),
    route(
        Get,
        ALERTS,
        "Alert instances and their states (pending, firing, resolved, inactive).",
    ),
    route(
        Get,
        ALERT_HISTORY,
        "Alert transitions, newest first, with value, window, provenance and deliveries.",
    ),
    route(
        Post,
        ALERT_SILENCE,
        "Silence a rule's notifications for a duration (admin token).",
    ),
    route(Get, JOBS, "Recent job runs (admin token)."),
    route(Get, JOB, "One job run with its progress (admin token)."),
    route(
        Post,
        START_JOB,
        "Start a job now: batch, compact or vacuum (admin token).",
    ),
    route(
        Get,
        STATUS,
        "Each component's health, the speed layer's and the sink's lag per partition and freshness, the latest batch runs.",
    ),
    route(
        Get,
        DEAD_LETTERS,
        "Refused records per layer and reason; with the admin token also the most recent ones, payloads as text.",
    ),
    route(Get, HEALTHZ, "The process is up."),
    route(Get, READYZ, "The database and Kafka are reachable."),
    route(Get, METRICS, "Prometheus metrics."),
    route(Get, OPENAPI, "This document."),
];
