//! GET /v1/status: the pipeline at a glance, for the console's overview and for scripts: each
//! component's health, the speed layer's and the sink's lag per partition and their freshness,
//! and the latest batch runs.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, SecondsFormat, Utc};
use merged_read::speed_state_sql;
use schemas::pg::{batch_runs, leader};
use serde_json::{Value, json};

use super::error::ApiError;
use super::kafka_watch::{CommittedPosition, KafkaStatus};
use super::provenance;
use super::state::AppState;

/// A layer behind Kafka's end that has not committed for this long is reported `stalled`.
const STALLED_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// The advisory locks whose holders are the running leaders, by component.
const LEADERS: &[(&str, &str)] = &[("scheduler", "braid.scheduler"), ("alerts", "braid.alerts")];

/// How many batch runs the status shows.
const BATCH_RUNS_SHOWN: i64 = 20;

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One component's health: `ok`, `idle`, `stalled`, `down` or `unknown`, and why.
fn component(name: &str, status: &str, detail: String) -> Value {
    json!({ "name": name, "status": status, "detail": detail })
}

/// A layer's positions beside Kafka's ends: per-partition lag and commit times.
struct LayerLag {
    partitions: Vec<Value>,
    total_lag: i64,
    last_commit: Option<DateTime<Utc>>,
}

fn layer_lag(
    kafka: &KafkaStatus,
    next_offsets: impl Fn(i32) -> Option<i64>,
    commits: Option<&std::collections::BTreeMap<i32, CommittedPosition>>,
) -> LayerLag {
    let mut lag = LayerLag {
        partitions: Vec::new(),
        total_lag: 0,
        last_commit: None,
    };
    for (&partition, &high) in &kafka.high_watermarks {
        let committed = commits.and_then(|c| c.get(&partition));
        let next = next_offsets(partition);
        let behind = (high - next.unwrap_or(0)).max(0);
        lag.total_lag += behind;
        let committed_at = committed.and_then(|c| c.committed_at);
        lag.last_commit = lag.last_commit.max(committed_at);
        lag.partitions.push(json!({
            "partition": partition,
            "high_watermark": high,
            "next_offset": next,
            "lag": behind,
            "committed_at": committed_at.map(rfc3339),
        }));
    }
    lag
}

/// A layer's health from its lag and its last commit.
fn layer_health(name: &str, kafka: &KafkaStatus, lag: &LayerLag, now: DateTime<Utc>) -> Value {
    if !kafka.reachable {
        return component(
            name,
            "unknown",
            "Kafka is unreachable, so its lag is unknown".into(),
        );
    }
    let since = lag
        .last_commit
        .map(|t| (now - t).num_milliseconds() as f64 / 1000.0);
    let committed = since.map_or_else(
        || "no commit seen".to_string(),
        |s| format!("last commit {s:.1} s ago"),
    );
    if lag.total_lag == 0 {
        return component(name, "ok", format!("caught up; {committed}"));
    }
    // Behind the end but committing: records keep arriving and the layer keeps up with them.
    let recent = lag.last_commit.is_some_and(|t| now - t < STALLED_AFTER);
    let status = if recent { "ok" } else { "stalled" };
    component(
        name,
        status,
        format!("{} records behind; {committed}", lag.total_lag),
    )
}

/// GET /v1/status.
pub async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = (state.clock)();
    let kafka = state.kafka.status();
    let database = tokio::time::timeout(Duration::from_secs(2), async {
        let speed_text: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT ({})::text",
            speed_state_sql("$1")
        )))
        .bind(&state.settings.topic)
        .fetch_one(&state.pool)
        .await?;
        let runs = batch_runs::recent_json(&state.pool, BATCH_RUNS_SHOWN).await?;
        let mut leaders = Vec::new();
        for (name, key) in LEADERS {
            leaders.push((*name, leader::holder(&state.pool, key).await?));
        }
        Ok::<_, sqlx::Error>((speed_text, runs, leaders))
    })
    .await;
    let (speed_text, runs, leaders) = match database {
        Ok(Ok(read)) => read,
        Ok(Err(error)) => return Err(error.into()),
        Err(_) => {
            return Err(ApiError::Unavailable);
        }
    };
    let speed = provenance::speed(&speed_text, &kafka, now)?;
    let speed_positions = speed["positions"].as_array().cloned().unwrap_or_default();
    let speed_next = |partition: i32| {
        speed_positions
            .iter()
            .find(|p| p["partition"].as_i64() == Some(i64::from(partition)))
            .and_then(|p| p["next_offset"].as_i64())
    };
    let speed_lag = layer_lag(&kafka, speed_next, kafka.committed.get("speed"));
    let sink_commits = kafka.committed.get("sink");
    let sink_next = |partition: i32| {
        sink_commits
            .and_then(|c| c.get(&partition))
            .map(|c| c.next_offset)
    };
    let sink_lag = layer_lag(&kafka, sink_next, sink_commits);

    let mut components = vec![
        component("database", "ok", "PostgreSQL answered".into()),
        if kafka.reachable {
            component(
                "kafka",
                "ok",
                format!(
                    "topic {} has {} partitions",
                    state.settings.topic,
                    kafka.high_watermarks.len()
                ),
            )
        } else {
            component(
                "kafka",
                if kafka.checked_at.is_none() {
                    "unknown"
                } else {
                    "down"
                },
                kafka
                    .error
                    .clone()
                    .unwrap_or_else(|| "not checked yet".into()),
            )
        },
        layer_health("speed", &kafka, &speed_lag, now),
        layer_health("sink", &kafka, &sink_lag, now),
    ];
    for (name, holder) in leaders {
        components.push(match holder {
            Some(pid) => component(
                name,
                "ok",
                format!("a leader runs (database session {pid})"),
            ),
            None => component(name, "idle", "no process holds the leader lock".into()),
        });
    }
    let freshness = |lag: &LayerLag| {
        lag.last_commit
            .map(|t| (now - t).num_milliseconds() as f64 / 1000.0)
    };
    let runs: Value = serde_json::from_str(&runs)
        .map_err(|e| ApiError::Internal(format!("batch runs JSON: {e}")))?;
    Ok(Json(json!({
        "checked_at": rfc3339(now),
        "topic": state.settings.topic,
        "kafka_checked_at": kafka.checked_at.map(rfc3339),
        "components": components,
        "speed": {
            "offset_lag": kafka.reachable.then_some(speed_lag.total_lag),
            "seconds_since_commit": freshness(&speed_lag),
            "newest_event_time": speed["newest_event_time"],
            "event_lag_seconds": speed["event_lag_seconds"],
            "last_flush_at": speed["last_flush_at"],
            "partitions": speed_lag.partitions,
        },
        "sink": {
            "offset_lag": kafka.reachable.then_some(sink_lag.total_lag),
            "seconds_since_commit": freshness(&sink_lag),
            "partitions": sink_lag.partitions,
        },
        "batch_runs": runs,
    })))
}
