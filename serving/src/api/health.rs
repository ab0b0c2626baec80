//! /healthz, /readyz and /metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::error::ApiError;
use super::state::AppState;

/// How old Kafka's last successful check may be for the server to count as ready.
const KAFKA_CHECK_MAX_AGE: chrono::Duration = chrono::Duration::seconds(15);

/// GET /healthz: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// GET /readyz: 200 when the database answers and Kafka answered recently, else 503 naming
/// what is not reachable.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool),
    )
    .await;
    let database = match database {
        Ok(Ok(_)) => json!({ "reachable": true }),
        Ok(Err(error)) => {
            // The detail (host, role, database) is for the operator's log, not for callers.
            tracing::warn!(%error, "readiness: the database did not answer; /readyz answers 503 until it does: check postgres.url and the server");
            json!({ "reachable": false, "error": "database_unreachable" })
        }
        Err(_) => json!({ "reachable": false, "error": "no answer within 2 s" }),
    };
    let kafka = state.kafka.status();
    let kafka_ready = kafka.reachable
        && kafka
            .checked_at
            .is_some_and(|t| Utc::now() - t < KAFKA_CHECK_MAX_AGE);
    let kafka_shown = json!({
        "reachable": kafka_ready,
        "checked_at": kafka.checked_at.map(|t| t.to_rfc3339()),
        "error": if kafka.checked_at.is_none() { Some("not checked yet".to_string()) } else { kafka.error },
    });
    let ready = database["reachable"] == true && kafka_ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not ready" },
            "database": database,
            "kafka": kafka_shown,
        })),
    )
        .into_response()
}

/// GET /metrics: the Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let render = state
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this server has no metrics recorder".into()))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
        .into_response())
}
