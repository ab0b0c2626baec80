//! GET /v1/views: every view's definition and state.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, SecondsFormat, Utc};
use merged_read::speed_state_sql;
use schemas::pg::{batch_runs, view_definitions};
use schemas::quantile::QuantileLevel;
use schemas::record::Value as FieldValue;
use schemas::view::View;
use serde_json::{Value, json};

use super::error::ApiError;
use super::provenance;
use super::state::AppState;

fn field_value(value: &FieldValue) -> Value {
    match value {
        FieldValue::String(s) => json!(s),
        FieldValue::I64(i) => json!(i),
        FieldValue::F64(f) => json!(f),
        FieldValue::Bool(b) => json!(b),
        FieldValue::Timestamp(micros) => json!(
            DateTime::<Utc>::from_timestamp_micros(*micros)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        ),
    }
}

/// A view's definition as the API shows it.
pub fn definition(view: &View) -> Value {
    json!({
        "name": view.name,
        "fingerprint": view.fingerprint,
        "bucket": view.bucket.to_string(),
        "filter": view.filter.as_ref().map(|f| json!({
            "field": f.field,
            "op": serde_json::to_value(f.op).unwrap_or(Value::Null),
            "values": f.values.iter().map(field_value).collect::<Vec<_>>(),
        })),
        "group_by": view.group_by.iter().zip(&view.group_by_types).map(|(name, t)| json!({
            "name": name,
            "type": t.name(),
        })).collect::<Vec<_>>(),
        "attributes": view.attributes.iter().map(|a| json!({
            "name": a.name,
            "type": a.attribute_type.name(),
            "dimension": a.dimension,
            "key": a.key,
        })).collect::<Vec<_>>(),
        "metrics": view.metrics.iter().map(|m| json!({
            "column": m.column,
            "kind": serde_json::to_value(m.kind).unwrap_or(Value::Null),
            "field": m.field,
            // The answer columns it gives by default (a quantile metric: one per default level).
            "answers": merged_read::metric_columns(m, &QuantileLevel::defaults()),
        })).collect::<Vec<_>>(),
        "averages": view.averages().into_iter().map(|a| a.column).collect::<Vec<_>>(),
        "sql_view": schemas::pg_layout::ViewLayout::of(view).serving_view,
        "path": format!("/v1/views/{}", view.name),
    })
}

/// GET /v1/views.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut tx = state.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let runs = batch_runs::active_runs(&mut tx).await?;
    let (speed,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT ({})::text",
        speed_state_sql("$1")
    )))
    .bind(&state.settings.topic)
    .fetch_one(&mut *tx)
    .await?;
    let backfilling = view_definitions::needing_backfill(&mut *tx).await?;
    tx.commit().await?;
    let views: Vec<Value> = state
        .settings
        .views
        .iter()
        .map(|view| {
            let run = runs
                .iter()
                .find(|r| r.view_name == view.name && r.fingerprint == view.fingerprint);
            let mut shown = definition(view);
            let needs_backfill = backfilling
                .iter()
                .any(|(name, fingerprint)| *name == view.name && *fingerprint == view.fingerprint);
            shown["backfilling"] = json!(needs_backfill && run.is_none());
            shown["batch"] = run.map_or(Value::Null, |r| {
                json!({
                    "run_id": r.run_id,
                    "covered_epoch": r.covered_epoch,
                    "delta_version": r.delta_version,
                    "finished_at": r.finished_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
                })
            });
            shown
        })
        .collect();
    Ok(Json(json!({
        "topic": state.settings.topic,
        "views": views,
        "speed": provenance::speed(&speed, &state.kafka.status(), (state.clock)())?,
        "merge": provenance::MERGE_RULE,
    })))
}
