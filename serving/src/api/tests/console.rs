//! The console's files and headers, `parts=true` against a fold of which part each record is
//! in, and the status and dead-letter endpoints.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use sqlx::PgPool;
use tower::ServiceExt;

use super::fixture::{get, sales, start, state, store, store_positions};
use crate::api::app;

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn the_console_is_served_with_a_content_security_policy_and_etags(pool: PgPool) {
    let state = state(pool, start(), None);
    let index = app(state.clone())
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let csp = index.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert_eq!(index.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    if console::left_out().is_some() {
        return; // the note page; the files below are absent (scripts/test.sh requires them)
    }
    let script = app(state.clone())
        .oneshot(Request::get("/console/app.js").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = script.headers()[header::ETAG].clone();
    let again = app(state.clone())
        .oneshot(
            Request::get("/console/app.js")
                .header(header::IF_NONE_MATCH, etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let (status, body) = get(&state, "/console/..%2Fsecret").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The API's answers carry the headers too.
    let api = app(state)
        .oneshot(Request::get("/v1/views").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(api.headers().contains_key(header::CONTENT_SECURITY_POLICY));
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn parts_say_which_layers_each_row_merges(pool: PgPool) {
    let records = sales();
    store(&pool, &records, Some(2)).await;
    store_positions(&pool).await;
    let state = state(pool, start(), None);
    let from = start().to_rfc3339();
    let to = (start() + chrono::Duration::hours(3)).to_rfc3339();
    let query = |parts: &str| {
        format!(
            "/v1/views/sales?from={}&to={}&group_by=country{parts}",
            urlencode(&from),
            urlencode(&to)
        )
    };
    // The fold: per (country, minute), whether a record below the covered epoch (batch) and
    // one at or above it (speed) are there.
    let mut expected: BTreeMap<(String, i64), (bool, bool)> = BTreeMap::new();
    for sale in &records {
        let bucket = sale.micros.div_euclid(60_000_000) * 60;
        let entry = expected
            .entry((sale.country.to_string(), bucket))
            .or_default();
        if sale.epoch < 2 {
            entry.0 = true;
        } else {
            entry.1 = true;
        }
    }
    let (status, body) = get(&state, &query("&parts=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for row in rows {
        let bucket = chrono::DateTime::parse_from_rfc3339(row["bucket_start"].as_str().unwrap())
            .unwrap()
            .timestamp();
        let key = (row["country"].as_str().unwrap().to_string(), bucket);
        let (batch, speed) = expected[&key];
        assert_eq!(row["batch_part"], batch, "{key:?}");
        assert_eq!(row["speed_part"], speed, "{key:?}");
    }
    assert!(
        body["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "speed_part")
    );
    // Without parts the rows are the same, without the two columns.
    let (_, plain) = get(&state, &query("")).await;
    let plain = plain["rows"].as_array().unwrap();
    assert_eq!(plain.len(), rows.len());
    assert!(plain.iter().all(|r| r.get("batch_part").is_none()));
    for (with, without) in rows.iter().zip(plain) {
        assert_eq!(with["count"], without["count"]);
    }
    let (status, body) = get(&state, &query("&parts=yes")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["parameter"], "parts", "{body}");
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn status_and_dead_letters_answer_and_samples_need_the_token(pool: PgPool) {
    let state = state(pool, start(), Some("the-token"));
    let (status, body) = get(&state, "/v1/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["database", "kafka", "speed", "sink", "scheduler", "alerts"]
    );
    // This server watches no Kafka: the layers' health is unknown, not made up.
    assert_eq!(body["components"][2]["status"], "unknown");
    let (status, body) = get(&state, "/v1/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["recent"].is_null());
    let wrong = Request::get("/v1/dead-letters")
        .header(header::AUTHORIZATION, "Bearer wrong")
        .body(Body::empty())
        .unwrap();
    let (status, _) = super::fixture::send(&state, wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let right = Request::get("/v1/dead-letters?recent=5")
        .header(header::AUTHORIZATION, "Bearer the-token")
        .body(Body::empty())
        .unwrap();
    let (status, body) = super::fixture::send(&state, right).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["recent"].is_array());
    let (status, body) = get(&state, "/v1/dead-letters?recent=1000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["parameter"], "recent");
}

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
