//! GET /v1/alerts pages through the instances: following `next_cursor` from the first page
//! returns every stored instance once, in an independent `ORDER BY rule, fingerprint`, and
//! the last page says there is no next one.

use axum::http::StatusCode;
use sqlx::PgPool;

use super::fixture::{get, start, state};

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn following_next_cursor_returns_every_instance_once_in_order(pool: PgPool) {
    // 250 instances over two rules, some fingerprints of one rule sorting between the other's.
    sqlx::query(
        "INSERT INTO braid_internal.alert_instances (fingerprint, rule, labels, state, evaluated_at) \
         SELECT md5(i::text), CASE WHEN i % 3 = 0 THEN 'rule_b' ELSE 'rule_a' END, \
                jsonb_build_object('i', i), CASE WHEN i % 5 = 0 THEN 'firing' ELSE 'resolved' END, now() \
         FROM generate_series(1, 250) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    let expected: Vec<(String, String)> = sqlx::query_as(
        "SELECT rule, fingerprint FROM braid_internal.alert_instances ORDER BY rule, fingerprint",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let state = state(pool, start(), None);

    let (status, body) = get(&state, "/v1/alerts").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["alerts"].as_array().unwrap().len(),
        100,
        "the default page"
    );

    let mut seen: Vec<(String, String)> = Vec::new();
    let mut uri = "/v1/alerts?limit=70".to_string();
    let mut pages = 0;
    loop {
        let (status, body) = get(&state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        pages += 1;
        for instance in body["alerts"].as_array().unwrap() {
            seen.push((
                instance["rule"].as_str().unwrap().to_string(),
                instance["fingerprint"].as_str().unwrap().to_string(),
            ));
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/alerts?limit=70&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, expected.len().div_ceil(70));

    for (uri, parameter) in [
        ("/v1/alerts?limit=1001", "limit"),
        ("/v1/alerts?limit=0", "limit"),
        ("/v1/alerts?cursor=nocolon", "cursor"),
        ("/v1/alerts?cursor=:", "cursor"),
        ("/v1/alerts?page=2", "page"),
    ] {
        let (status, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["parameter"], parameter, "{uri}: {body}");
    }
}
