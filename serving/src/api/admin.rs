//! Admin endpoints: start a job now, and read the job history. They need the bearer token
//! the server was started with (BRAID_ADMIN_TOKEN) and are off when it has none.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use jobs_store as job_runs;

use super::error::ApiError;
use super::launcher::LaunchError;
use super::request_input::{CountParam, body_bytes, path_text, query_pairs};
use super::state::AppState;

/// Compares in time independent of where the first difference is and of either length: both
/// sides are hashed to 32 bytes first, then every byte is compared.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (given, expected) = (Sha256::digest(given), Sha256::digest(expected));
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Passes when the request carries the admin token.
pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = state
        .settings
        .admin_token
        .as_deref()
        .ok_or(ApiError::AdminDisabled)?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if same_secret(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// POST /v1/admin/jobs/{job}: starts a job; the body, if any, is a JSON object of parameters.
pub async fn start_job(
    State(state): State<AppState>,
    job: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let job = path_text(job, "job")?;
    let body = body_bytes(body)?;
    let parameters: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad("body", format!("the body is not JSON: {e}")))?
    };
    if !parameters.is_object() {
        return Err(ApiError::bad(
            "body",
            "the body must be a JSON object of job parameters",
        ));
    }
    let launcher = state
        .jobs
        .as_ref()
        .ok_or_else(|| ApiError::Conflict("this server cannot run jobs".into()))?;
    let id = launcher
        .launch(&job, parameters)
        .await
        .map_err(|error| match error {
            LaunchError::UnknownJob { .. } => ApiError::NotFound(error.to_string()),
            LaunchError::BadParameter { parameter, message } => ApiError::bad(parameter, message),
            LaunchError::Failed(message) => ApiError::Internal(message),
        })?;
    tracing::info!(job, id, "job started through the API");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/jobs/{id}"))],
        axum::Json(json!({ "job": job, "id": id, "status_url": format!("/v1/jobs/{id}") })),
    )
        .into_response())
}

/// The `limit` of GET /v1/jobs.
pub const JOBS_LIMIT: CountParam = CountParam {
    name: "limit",
    min: 1,
    default: 50,
    max: 1000,
    description: "Most runs to return, newest first",
};

/// GET /v1/jobs?limit=N: the most recent runs, newest first.
pub async fn list_jobs(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let mut limit = JOBS_LIMIT.default;
    for pair in query_pairs(raw.as_deref())? {
        let (name, value) = (pair.name, pair.value);
        match name.as_str() {
            "limit" => limit = JOBS_LIMIT.parse(&value)?,
            other => {
                return Err(ApiError::bad(
                    other,
                    format!("unknown parameter `{other}`; this endpoint takes limit"),
                ));
            }
        }
    }
    let jobs = job_runs::list_json(&state.pool, limit).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"jobs\":{jobs}}}"),
    )
        .into_response())
}

/// GET /v1/jobs/{id}: one run, with its progress.
pub async fn job(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = path_text(id, "id")?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad("id", format!("`{id}` is not a job id (a whole number)")))?;
    let job = job_runs::one_json(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job run has id {id}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], job).into_response())
}
