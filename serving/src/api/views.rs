//! GET /v1/views/{view}, /rolling and /top.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use merged_read::{OrderTerm, Selection, WindowBounds, WindowEnd, ceil_to, column_names, floor_to};
use schemas::view::View;
use serde_json::{Value, json};

use super::error::ApiError;
use super::params::{Endpoint, Limits, Params};
use super::provenance;
use super::query;
use super::request_input::path_text;
use super::state::AppState;

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Says, for a view with decayed metrics, the time their scores are decayed to.
fn with_decayed_to(envelope: &mut Value, view: &View, now: DateTime<Utc>) {
    if view.has_decayed_metrics() {
        envelope["decayed_to"] = json!(now.to_rfc3339_opts(SecondsFormat::Micros, true));
    }
}

/// The default order: group fields, then bucket_start, ascending.
fn natural_order(view: &View, group_by: &[usize], bucketed: bool) -> Vec<OrderTerm> {
    group_by
        .iter()
        .map(|&i| OrderTerm::ascending(view.served_name(i)))
        .chain(bucketed.then(|| OrderTerm::ascending("bucket_start")))
        .collect()
}

/// Appends the natural order as a tie-break, so that answers are deterministic.
fn with_tie_break(mut order: Vec<OrderTerm>, natural: Vec<OrderTerm>) -> Vec<OrderTerm> {
    for key in natural {
        if !order.iter().any(|t| t.column == key.column) {
            order.push(key);
        }
    }
    order
}

/// Runs the selection and answers with `envelope` plus rows, truncation and provenance.
async fn answer(
    state: &AppState,
    view: &View,
    selection: &Selection,
    mut envelope: Value,
) -> Result<Response, ApiError> {
    let answer = query::run_cached(
        &state.pool,
        &state.answers,
        view,
        selection,
        &state.settings.topic,
    )
    .await?;
    envelope["truncated"] = json!(answer.truncated);
    envelope["provenance"] = provenance::of_answer(
        answer.batch.as_deref(),
        &answer.speed,
        &state.kafka.status(),
        (state.clock)(),
    )?;
    envelope["provenance"]["backfilling"] = json!(answer.backfilling);
    // The rows are already JSON (api/answer_json.rs): splice them in rather than build a Value.
    let rest = serde_json::to_string(&envelope)
        .map_err(|e| ApiError::Internal(format!("encoding the answer: {e}")))?;
    let body = format!("{{\"rows\":{},{}", answer.rows, &rest[1..]);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn group_names(view: &View, group_by: &[usize]) -> Vec<String> {
    group_by
        .iter()
        .map(|&i| view.served_name(i).to_string())
        .collect()
}

fn order_text(order: &[OrderTerm]) -> Vec<String> {
    order
        .iter()
        .map(|t| format!("{}:{}", t.column, if t.descending { "desc" } else { "asc" }))
        .collect()
}

/// GET /v1/views/{view}: merged rows per key and bucket over [from, to).
pub async fn series(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let name = path_text(name, "view")?;
    let view = state.view(&name)?;
    let (selection, envelope) = series_selection(&state, view, raw.as_deref())?;
    answer(&state, view, &selection, envelope).await
}

/// The range `[from, to)` of `from` and `to` (defaults: the 24 hours before now), rounded out
/// to `granularity` and held to the server's widest range.
fn range(
    params: &Params,
    granularity: i64,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = ceil_to(params.time("to")?.unwrap_or(now), granularity);
    let from = floor_to(
        params.time("from")?.unwrap_or(to - Duration::hours(24)),
        granularity,
    );
    if from >= to {
        return Err(ApiError::bad(
            "from",
            format!(
                "the range is empty or reversed: from {} is not before to {} (after rounding to the granularity)",
                rfc3339(from),
                rfc3339(to)
            ),
        ));
    }
    if (to - from).num_seconds() > limits.max_range_seconds {
        return Err(ApiError::bad(
            "from",
            format!(
                "the range from {} to {} is longer than the server allows ({} days, serving.max_range_days)",
                rfc3339(from),
                rfc3339(to),
                limits.max_range_seconds / 86_400
            ),
        ));
    }
    Ok((from, to))
}

/// The validated selection of a GET /v1/views/{view} and the envelope of its answer.
pub fn series_selection(
    state: &AppState,
    view: &View,
    raw: Option<&str>,
) -> Result<(Selection, Value), ApiError> {
    let limits = state.settings.limits;
    let params = Params::parse(raw, Endpoint::Series, view)?;
    let granularity = params
        .bucket_multiple("granularity", view, &limits)?
        .unwrap_or_else(|| view.bucket.seconds());
    let now = (state.clock)();
    let decayed_to = params.time("at")?.unwrap_or(now);
    let (from, to) = range(&params, granularity, now, &limits)?;
    let group_by = params.group_by(view)?;
    let quantiles = params.quantiles(view)?;
    let columns = column_names(view, &group_by, true, &quantiles);
    let natural = natural_order(view, &group_by, true);
    let order = with_tie_break(params.order(&columns, natural.clone())?, natural);
    let parts = params.flag("parts")?;
    let mut shown_columns = columns.clone();
    if parts {
        shown_columns.extend(["batch_part".to_string(), "speed_part".to_string()]);
    }
    let selection = Selection {
        from,
        to,
        granularity: Some(granularity),
        group_by: group_by.clone(),
        filters: params.filters(view)?,
        limit: params.count("limit", i64::from(limits.max_limit), &limits)?,
        order,
        decayed_to,
        parts,
        quantiles,
        samples: false,
    };
    let mut envelope = json!({
        "view": view.name,
        "granularity": schemas::duration::HumanDuration::from_seconds(granularity).map(|d| d.to_string()),
        "from": rfc3339(from),
        "to": rfc3339(to),
        "group_by": group_names(view, &group_by),
        "order": order_text(&selection.order),
        "limit": selection.limit,
        "columns": shown_columns,
    });
    with_decayed_to(&mut envelope, view, decayed_to);
    Ok((selection, envelope))
}

/// A window query's common part: the window [end - window, end) where end is the end of the
/// bucket holding now, the kept group fields and the filters; the envelope describes it.
/// `limit` and `order` are the endpoint's.
fn window_selection(
    state: &AppState,
    view: &View,
    params: &Params,
    limit: i64,
    order: impl FnOnce(&[String], Vec<OrderTerm>) -> Result<Vec<OrderTerm>, ApiError>,
) -> Result<(Selection, Value), ApiError> {
    let seconds = params
        .bucket_multiple("window", view, &state.settings.limits)?
        .ok_or_else(|| ApiError::bad("window", "`window` is required"))?;
    let now = (state.clock)();
    let decayed_to = params.time("at")?.unwrap_or(now);
    let WindowBounds {
        start: from,
        end: to,
    } = WindowBounds::of(view, now, seconds, WindowEnd::CurrentBucket);
    let group_by = params.group_by(view)?;
    let quantiles = params.quantiles(view)?;
    let columns = column_names(view, &group_by, false, &quantiles);
    let natural = natural_order(view, &group_by, false);
    let order = with_tie_break(order(&columns, natural.clone())?, natural);
    let mut envelope = json!({
        "view": view.name,
        "window": params.get("window"),
        "window_start": rfc3339(from),
        "window_end": rfc3339(to),
        "group_by": group_names(view, &group_by),
        "order": order_text(&order),
        "limit": limit,
        "columns": columns,
    });
    with_decayed_to(&mut envelope, view, decayed_to);
    let selection = Selection {
        from,
        to,
        granularity: None,
        group_by,
        filters: params.filters(view)?,
        limit,
        order,
        decayed_to,
        parts: false,
        quantiles,
        samples: false,
    };
    Ok((selection, envelope))
}

/// GET /v1/views/{view}/rolling: totals per key over the window ending now.
pub async fn rolling(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let name = path_text(name, "view")?;
    let view = state.view(&name)?;
    let limits = state.settings.limits;
    let params = Params::parse(raw.as_deref(), Endpoint::Rolling, view)?;
    let limit = params.count("limit", i64::from(limits.max_limit), &limits)?;
    let (selection, envelope) =
        window_selection(&state, view, &params, limit, |columns, natural| {
            params.order(columns, natural)
        })?;
    answer(&state, view, &selection, envelope).await
}

/// GET /v1/views/{view}/top: the k keys with the largest `metric` over the window ending now.
pub async fn top(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let name = path_text(name, "view")?;
    let view = state.view(&name)?;
    let limits = state.settings.limits;
    let params = Params::parse(raw.as_deref(), Endpoint::Top, view)?;
    let k = params.count("k", 10.min(i64::from(limits.max_limit)), &limits)?;
    let metric = params.get("metric").unwrap_or_default().to_string();
    let numbers = schemas::alert::numeric_columns(view);
    let numbers = |column: &String| {
        numbers.contains(column) || !schemas::alert::metric_levels(view, column).is_empty()
    };
    let (selection, mut envelope) = window_selection(&state, view, &params, k, |columns, _| {
        // The numbers: metrics (a quantile metric as its levels) and averages, not samples.
        let metrics: Vec<&String> = columns.iter().filter(|c| numbers(c)).collect();
        if !metrics.contains(&&metric) {
            return Err(ApiError::bad(
                "metric",
                format!(
                    "`{metric}` is not a metric of view `{}`; its metrics are {}",
                    view.name,
                    metrics
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(vec![OrderTerm {
            column: metric.clone(),
            descending: true,
        }])
    })?;
    envelope["metric"] = json!(metric);
    envelope["k"] = json!(k);
    answer(&state, view, &selection, envelope).await
}

/// GET /v1/views/{view}/sample: the records the view's `sample(K)` keeps for its rows in
/// `[from, to)` that match the filters, merged from both layers: the K with the smallest hash
/// of their Kafka position among all of those rows' records.
pub async fn sample(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let name = path_text(name, "view")?;
    let view = state.view(&name)?;
    let limits = state.settings.limits;
    let params = Params::parse(raw.as_deref(), Endpoint::Sample, view)?;
    let now = (state.clock)();
    let (from, to) = range(&params, view.bucket.seconds(), now, &limits)?;
    let filters = params.filters(view)?;
    // After the parameters, so that a bad one is named whatever the view.
    let Some(metric) = view.metrics.iter().find(|m| m.sample.is_some()) else {
        // A 400 naming the view (as a parameter that cannot be answered), not a 404: the
        // route and the view exist.
        return Err(ApiError::bad(
            "view",
            format!(
                "view `{}` keeps no sample: add sample(K) to its metrics",
                view.name
            ),
        ));
    };
    let selection = Selection {
        from,
        to,
        granularity: None,
        group_by: Vec::new(),
        filters,
        order: Vec::new(),
        limit: 1,
        decayed_to: now,
        parts: false,
        quantiles: Vec::new(),
        samples: true,
    };
    let answer = query::run_cached(
        &state.pool,
        &state.answers,
        view,
        &selection,
        &state.settings.topic,
    )
    .await?;
    let rows: Value = serde_json::from_str(&answer.rows)
        .map_err(|e| ApiError::Internal(format!("reading the merged sample: {e}")))?;
    let sample = rows
        .get(0)
        .and_then(|row| row.get(&metric.column))
        .filter(|sample| !sample.is_null())
        .cloned()
        .unwrap_or_else(|| {
            let params = metric.sample.expect("a sample metric has its settings");
            schemas::sample::SampleSketch::new(params).to_json()
        });
    let mut envelope = json!({
        "view": view.name,
        "metric": metric.column,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "sample": sample,
    });
    envelope["provenance"] = provenance::of_answer(
        answer.batch.as_deref(),
        &answer.speed,
        &state.kafka.status(),
        now,
    )?;
    envelope["provenance"]["backfilling"] = json!(answer.backfilling);
    Ok(Json(envelope).into_response())
}
