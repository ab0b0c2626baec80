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

/// Adds 5 records to `all_events` at 23:00 of the test's day, as a speed row of epoch 9.
async fn add_five(executor: impl sqlx::PgExecutor<'_>) {
    let table = ViewLayout::of(&config().views[1]).speed_table;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (epoch, bucket_start, count) VALUES (9, $1, 5)"
    )))
    .bind(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 23, 0, 0).unwrap())
    .execute(executor)
    .await
    .unwrap();
}

/// The notification a flush sends for `all_events`, in `tx`.
async fn notify_all_events(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) {
    schemas::pg::view_changes::notify(
        tx,
        &[schemas::pg::view_changes::ViewChange::whole("all_events")],
    )
    .await
    .unwrap();
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
    add_five(&pool).await;
    assert_eq!(total(&state, &uri).await, before, "answered from memory");
    // The notification the flush sends: the next answers read the database.
    let mut tx = pool.begin().await.unwrap();
    notify_all_events(&mut tx).await;
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

async fn wait_listening(state: &crate::api::AppState, listening: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while state.answers.is_listening() != listening {
        assert!(
            Instant::now() < deadline,
            "the cache's listener did not become listening = {listening}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lets new connections into the test's database, or not (from the server's main database:
/// PostgreSQL refuses to change this for the database a session is in).
async fn allow_connections(pool: &PgPool, allow: bool) {
    use sqlx::Connection;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS {allow}",
        database.replace('"', "\"\"")
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

/// The listener's connection is lost and cannot come back for a while: a change committed
/// meanwhile is heard by nobody, so no answer may be kept or served until a new LISTEN is in
/// place (and then the cache starts empty).
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_change_made_while_the_listener_is_away_is_never_hidden_by_the_cache(pool: PgPool) {
    store(&pool, &sales(), None).await;
    store_positions(&pool).await;
    let mut state = state(pool.clone(), start(), None);
    state.answers = AnswerCache::new(Duration::from_secs(600), 100);
    // The listener on a pool of its own, so that a new connection is what it needs to listen
    // again (from the queries' pool it could take an idle one).
    let listener_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pool.connect_options()).clone());
    state.answers.listen(listener_pool);
    wait_listening(&state, true).await;
    let uri = format!(
        "/v1/views/all_events?from={}&to={}&group_by=",
        "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
    );
    let before = total(&state, &uri).await;

    allow_connections(&pool, false).await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        terminated,
        [true],
        "the listener's connection is found and ended"
    );
    wait_listening(&state, false).await;
    assert_eq!(total(&state, &uri).await, before);
    let mut tx = pool.begin().await.unwrap();
    add_five(&mut *tx).await;
    notify_all_events(&mut tx).await;
    tx.commit().await.unwrap();
    assert_eq!(
        total(&state, &uri).await,
        before + 5,
        "an answer kept while the listener was away hid a change"
    );

    allow_connections(&pool, true).await;
    wait_listening(&state, true).await;
    assert_eq!(total(&state, &uri).await, before + 5);
}
