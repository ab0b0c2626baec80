//! The merged read's test data (`merged_read::fixture`: a sales stream stored in both layers)
//! and request helpers.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use schemas::BraidConfig;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::api::{AppState, KafkaWatch, Limits, ServingSettings, app};

pub use merged_read::fixture::{
    Sale, TOPIC, Totals, add, config, sales, start, store, store_positions,
};

/// A state over `pool` with the test views, a clock fixed at `now` and `admin_token`.
pub fn state(pool: PgPool, now: DateTime<Utc>, admin_token: Option<&str>) -> AppState {
    state_of(&config(), TOPIC, pool, now, admin_token)
}

/// A state over `pool` with the views of `config` on `topic`, a clock fixed at `now` and
/// `admin_token`.
pub fn state_of(
    config: &BraidConfig,
    topic: &str,
    pool: PgPool,
    now: DateTime<Utc>,
    admin_token: Option<&str>,
) -> AppState {
    let mut state = AppState::new(
        pool,
        ServingSettings {
            views: config.views.clone(),
            topic: topic.into(),
            limits: Limits {
                max_limit: 5000,
                max_range_seconds: 10 * 86_400,
            },
            admin_token: admin_token.map(str::to_string),
            alert_rules: config.alerts.iter().map(|r| r.name.clone()).collect(),
        },
        KafkaWatch::unwatched(),
    );
    state.clock = Arc::new(move || now);
    state
}

/// Sends `request` and returns the status and the JSON body.
pub async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, Value) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

/// GET `uri`.
pub async fn get(state: &AppState, uri: &str) -> (StatusCode, Value) {
    send(state, Request::get(uri).body(Body::empty()).unwrap()).await
}
