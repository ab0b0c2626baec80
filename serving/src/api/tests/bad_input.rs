//! Bad parameters get 400 naming the parameter; unknown views 404; injection attempts change
//! nothing; a database that is down answers 503.

use axum::http::StatusCode;
use sqlx::PgPool;

use super::fixture::{get, sales, start, state, store};

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn every_bad_parameter_is_a_400_that_names_it(pool: PgPool) {
    let state = state(pool, start(), None);
    let cases = [
        (
            "/v1/views/sales?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            "from",
        ),
        (
            "/v1/views/sales?from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "from",
        ),
        ("/v1/views/sales?from=yesterday", "from"),
        ("/v1/views/sales?to=2026-13-01T00:00:00Z", "to"),
        (
            "/v1/views/sales?from=2025-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "from",
        ),
        ("/v1/views/sales?granularity=90s", "granularity"),
        ("/v1/views/sales?granularity=7x", "granularity"),
        ("/v1/views/sales?granularity=30d", "granularity"),
        ("/v1/views/sales?group_by=city", "group_by"),
        ("/v1/views/sales?group_by=country,country", "group_by"),
        ("/v1/views/sales?filter.city=Paris", "filter.city"),
        ("/v1/views/sales?filter.store=north", "filter.store"),
        ("/v1/views/sales?limit=5001", "limit"),
        ("/v1/views/sales?limit=0", "limit"),
        ("/v1/views/sales?limit=ten", "limit"),
        ("/v1/views/sales?order=price", "order"),
        ("/v1/views/sales?order=count:sideways", "order"),
        (
            "/v1/views/sales?order=count;DROP TABLE braid_internal.epoch",
            "order",
        ),
        ("/v1/views/sales?colour=red", "colour"),
        ("/v1/views/sales?limit=1&limit=2", "limit"),
        ("/v1/views/sales?window=5m", "window"),
        ("/v1/views/sales/rolling", "window"),
        ("/v1/views/sales/rolling?window=90s", "window"),
        ("/v1/views/sales/top?window=5m", "metric"),
        ("/v1/views/sales/top?window=5m&metric=country", "metric"),
        ("/v1/views/sales/top?window=5m&metric=count&k=100000", "k"),
        ("/v1/views/all_events?filter.country=DE", "filter.country"),
        // PostgreSQL cannot store or compare a NUL in text: refused here, never a 500.
        ("/v1/views/sales?filter.country=%00abc", "filter.country"),
        (
            "/v1/views/sales?filter.country=DE&filter.store=1%00",
            "filter.store",
        ),
        ("/v1/views/sales?order=count%00", "order"),
    ];
    for (uri, parameter) in cases {
        let (status, body) = get(&state, &uri.replace(' ', "%20")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["parameter"], parameter, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_parameter");
        assert_eq!(body["error"]["retryable"], false);
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn unknown_views_and_routes_are_404_in_json(pool: PgPool) {
    let state = state(pool, start(), None);
    for uri in [
        "/v1/views/nope",
        "/v1/views/nope/rolling?window=1m",
        "/v1/nothing",
    ] {
        let (status, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(body["error"]["message"].is_string(), "{uri}: {body}");
    }
    let (_, body) = get(&state, "/v1/views/nope").await;
    assert_eq!(body["error"]["code"], "unknown_view");
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn injection_attempts_are_values_and_change_nothing(pool: PgPool) {
    let all = sales();
    store(&pool, &all, Some(2)).await;
    let state = state(pool.clone(), start(), None);
    let base = "/v1/views/sales?from=2026-03-01T10:00:00Z&to=2026-03-01T12:00:00Z";
    for value in [
        "DE' OR '1'='1",
        "DE'); DELETE FROM braid_internal.batch_runs; --",
        "x\"; DROP TABLE braid_internal.epoch; --",
    ] {
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let (status, body) = get(&state, &format!("{base}&filter.country={encoded}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"], serde_json::json!([]), "{value} matched rows");
    }
    // A value with a quote that does exist matches exactly its own rows.
    let (status, body) = get(
        &state,
        &format!("{base}&filter.country=it%27s&group_by=country&granularity=2h"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let count = all.iter().filter(|s| s.country == "it's").count();
    assert_eq!(body["rows"][0]["count"], count as i64, "{body}");
    let (runs,): (i64,) = sqlx::query_as("SELECT count(*) FROM braid_internal.batch_runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 2, "the batch runs are untouched");
    let (epochs,): (i64,) = sqlx::query_as("SELECT count(*) FROM braid_internal.epoch")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(epochs, 1);
}

#[tokio::test]
async fn a_database_that_is_down_answers_503_with_retry_after() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://braid:braid@127.0.0.1:9/braid")
        .unwrap();
    let state = state(pool, start(), None);
    let response = tower::ServiceExt::oneshot(
        crate::api::app(state.clone()),
        axum::http::Request::get("/v1/views/sales")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, body) = get(&state, "/v1/views").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["retryable"], true);
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["database"]["reachable"], false, "{body}");
    assert_eq!(
        body["database"]["error"], "database_unreachable",
        "a code, not the database's message with its host and role: {body}"
    );
    assert!(
        !body.to_string().contains("127.0.0.1:9") && !body.to_string().contains("braid@"),
        "{body}"
    );
    let (status, _) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "the process itself is healthy");
}
