//! Admin endpoints need the token and are off without one; the OpenAPI document lists every
//! route and parameter, and states the bounds the handlers hold counts to; bodies have a cap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

use super::fixture::{get, send, start, state, store};
use crate::api::routes::{VIEW_ROLLING, VIEW_TOP};
use crate::api::{JobLauncher, LaunchError, MAX_BODY_BYTES, Method, ROUTES};

/// Records a job run the way the real runner does, and runs nothing.
struct RecordingLauncher(PgPool);

impl JobLauncher for RecordingLauncher {
    fn launch(
        &self,
        job: &str,
        _parameters: Value,
    ) -> Pin<Box<dyn Future<Output = Result<i64, LaunchError>> + Send + '_>> {
        let job = job.to_string();
        Box::pin(async move {
            if job != "batch" {
                return Err(LaunchError::UnknownJob {
                    name: job,
                    known: "batch".into(),
                });
            }
            sqlx::query_scalar(
                "INSERT INTO braid_internal.job_runs (job, trigger, status) VALUES ($1, 'api', 'running') RETURNING id",
            )
            .bind(job)
            .fetch_one(&self.0)
            .await
            .map_err(|e| LaunchError::Failed(e.to_string()))
        })
    }
}

fn post(uri: &str, token: Option<&str>, body: Body) -> Request<Body> {
    let mut request = Request::post(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(body).unwrap()
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn admin_endpoints_are_off_without_a_token(pool: PgPool) {
    let state = state(pool, start(), None);
    let (status, body) = send(
        &state,
        post("/v1/admin/jobs/batch", Some("guess"), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "admin_disabled");
    let (status, _) = get(&state, "/v1/jobs").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn admin_endpoints_need_the_right_bearer_token(pool: PgPool) {
    let mut state = state(pool.clone(), start(), Some("s3cret-token"));
    state.jobs = Some(Arc::new(RecordingLauncher(pool)));
    // "s3cret-tokeN": wrong, and exactly as long as the right one.
    for token in [
        None,
        Some("wrong"),
        Some("s3cret-token-and-more"),
        Some(""),
        Some("s3cret-tokeN"),
    ] {
        let (status, body) = send(&state, post("/v1/admin/jobs/batch", token, Body::empty())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
    }
    let (status, _) = get(&state, "/v1/jobs/1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = send(
        &state,
        post("/v1/admin/jobs/batch", Some("s3cret-token"), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let read = Request::get(format!("/v1/jobs/{id}"))
        .header("authorization", "Bearer s3cret-token")
        .body(Body::empty())
        .unwrap();
    let (status, job) = send(&state, read).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["job"], "batch");
    assert_eq!(job["trigger"], "api");

    let (status, body) = send(
        &state,
        post(
            "/v1/admin/jobs/rebuild_everything",
            Some("s3cret-token"),
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = send(
        &state,
        post(
            "/v1/admin/jobs/batch",
            Some("s3cret-token"),
            Body::from("[1,2]"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["parameter"], "body");
    let (status, _) = send(
        &state,
        post(
            "/v1/admin/jobs/batch",
            Some("s3cret-token"),
            Body::from(vec![b' '; MAX_BODY_BYTES + 1]),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn the_openapi_document_lists_every_route_and_parameter(pool: PgPool) {
    let mut state = state(pool, start(), None);
    state.metrics = Some(Arc::new(|| "# no metrics yet\n".to_string()));
    let (status, document) = get(&state, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.0.3");
    for route in ROUTES {
        let (method, path) = (route.method.as_str(), route.path);
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    // The document has no other route: the router is built from the same table.
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, ROUTES.len());
    let series = &document["paths"]["/v1/views/{view}"]["get"]["parameters"];
    let names: Vec<&str> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "view",
        "from",
        "to",
        "granularity",
        "group_by",
        "order",
        "limit",
        "filter.country",
        "filter.store",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(
        series[0]["schema"]["enum"],
        serde_json::json!(["sales", "all_events"])
    );
    // Every route the document names answers something other than "no route".
    for route in ROUTES {
        let (method, path) = (route.method.as_str(), route.path);
        let uri = path
            .replace("{view}", "sales")
            .replace("{id}", "1")
            .replace("{job}", "batch");
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let (_, body) = send(&state, request).await;
        assert_ne!(body["error"]["code"], "not_found", "{method} {uri}: {body}");
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_silence_too_long_for_the_clock_is_refused_naming_duration(pool: PgPool) {
    let mut state = state(pool, start(), Some("s3cret-token"));
    let mut settings = (*state.settings).clone();
    settings.alert_rules = vec!["hot".into()];
    state.settings = Arc::new(settings);
    let silence = |duration: &str| {
        post(
            "/v1/admin/alerts/hot/silence",
            Some("s3cret-token"),
            Body::from(serde_json::json!({ "duration": duration }).to_string()),
        )
    };
    // Each overflowed chrono's arithmetic (a panic) or a year of days; i64's extremes too.
    for duration in [
        "100000000d",
        "9223372036854775807s",
        "9223372036854775808s",
        "-9223372036854775808s",
        "106751991167300d",
        "366d",
        "31536001s",
    ] {
        let (status, body) = send(&state, silence(duration)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{duration}: {body}");
        assert_eq!(body["error"]["parameter"], "duration", "{duration}: {body}");
    }
    let (status, body) = send(&state, silence("365d")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let until = (start() + chrono::Duration::days(365))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(body["silenced_until"], until.as_str(), "{body}");
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn every_count_bound_the_document_states_is_the_one_its_handler_holds_to(pool: PgPool) {
    store(&pool, &[], None).await;
    let state = state(pool, start(), Some("s3cret-token"));
    let (_, document) = get(&state, "/openapi.json").await;
    // What makes the rest of each request valid.
    let base = |path: &str| match path {
        VIEW_ROLLING => "window=1m&",
        VIEW_TOP => "window=1m&metric=count&",
        _ => "",
    };
    let mut checked = Vec::new();
    for route in ROUTES.iter().filter(|r| r.method == Method::Get) {
        let parameters = document["paths"][route.path]["get"]["parameters"]
            .as_array()
            .unwrap();
        for parameter in parameters {
            let schema = &parameter["schema"];
            let Some(max) = schema["maximum"].as_i64() else {
                continue;
            };
            let min = schema["minimum"].as_i64().expect("a minimum too");
            let name = parameter["name"].as_str().unwrap();
            let path = route.path.replace("{view}", "sales");
            for (value, taken) in [(min - 1, false), (min, true), (max, true), (max + 1, false)] {
                let uri = format!("{path}?{}{name}={value}", base(route.path));
                let request = Request::get(&uri)
                    .header("Authorization", "Bearer s3cret-token")
                    .body(Body::empty())
                    .unwrap();
                let (status, body) = send(&state, request).await;
                let refused =
                    status == StatusCode::BAD_REQUEST && body["error"]["parameter"] == name;
                assert_eq!(refused, !taken, "{uri}: {status} {body}");
                if taken {
                    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
                }
            }
            checked.push(format!("{} {name}", route.path));
        }
    }
    // limit of the three view endpoints' two (k on top), alerts, history, jobs, dead letters.
    assert_eq!(checked.len(), 7, "{checked:?}");
}
