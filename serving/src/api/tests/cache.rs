//! The answer cache against a real database: a repeated query is answered from memory, and a
//! view-change notification (as the speed layer's flush sends) makes the next answer fresh.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::TimeZone;
use schemas::pg_layout::ViewLayout;
use sqlx::PgPool;

use super::fixture::{config, get, sales, start, state, store, store_positions};
use crate::api::AnswerCache;

async fn total(state: &crate::api::AppState, uri: &str) -> i64 {
    let (status, body) = get(state, uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_i64().unwrap())
        .sum()
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_change_notification_replaces_a_cached_answer(pool: PgPool) {
    store(&pool, &sales(), None).await;
    store_positions(&pool).await;
    let mut state = state(pool.clone(), start(), None);
    state.answers = AnswerCache::new(Duration::from_secs(600), 100);
    state.answers.listen(pool.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.answers.is_listening() {
        assert!(
            Instant::now() < deadline,
            "the cache's listener did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let uri = format!(
        "/v1/views/all_events?from={}&to={}&group_by=",
        "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
    );
    let before = total(&state, &uri).await;
    assert_eq!(before, sales().len() as i64);
    // A row written without a notification: the cached answer stands.
    let table = ViewLayout::of(&config().views[1]).speed_table;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (epoch, bucket_start, count) VALUES (9, $1, 5)"
    )))
    .bind(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 23, 0, 0).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(total(&state, &uri).await, before, "answered from memory");
    // The notification the flush sends: the next answers read the database.
    let mut tx = pool.begin().await.unwrap();
    schemas::pg::view_changes::notify(
        &mut tx,
        &[schemas::pg::view_changes::ViewChange::whole("all_events")],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while total(&state, &uri).await != before + 5 {
        assert!(
            Instant::now() < deadline,
            "the notification did not reach the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
