//! The routes the API serves, as /openapi.json documents them, and the size limits.

/// The largest request body accepted, in bytes (admin requests carry small JSON bodies).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest request target (path and query) accepted, in bytes. Longer targets answer 414.
/// Every legitimate query fits many times over; past 64 KiB the HTTP parser refuses on its own.
pub const MAX_URI_BYTES: usize = 8 * 1024;

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
    (
        "get",
        "/v1/alerts",
        "Alert instances and their states (pending, firing, resolved, inactive).",
    ),
    (
        "get",
        "/v1/alerts/history",
        "Alert transitions, newest first, with value, window, provenance and deliveries.",
    ),
    (
        "post",
        "/v1/admin/alerts/{name}/silence",
        "Silence a rule's notifications for a duration (admin token).",
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
    (
        "get",
        "/v1/status",
        "Each component's health, the speed layer's and the sink's lag per partition and freshness, the latest batch runs.",
    ),
    (
        "get",
        "/v1/dead-letters",
        "Refused records per layer and reason; with the admin token also the most recent ones, payloads as text.",
    ),
    ("get", "/healthz", "The process is up."),
    ("get", "/readyz", "The database and Kafka are reachable."),
    ("get", "/metrics", "Prometheus metrics."),
    ("get", "/openapi.json", "This document."),
];
