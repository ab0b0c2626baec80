//! The values of live instances (pending or firing) whose keys were not in the window's page:
//! when more keys match than `alerting.max_instances`, such an instance must still be
//! evaluated on its own value, never taken for a key with no rows (which would resolve it).
//!
//! One more window statement, filtered to those instances' label values per group field (a
//! superset of their keys when a rule groups by several fields; the rows of other keys are
//! dropped here).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use merged_read::{CellValue, Filter, WindowEnd, WindowRequest, WindowTotals, window_totals};
use schemas::alert::{AlertRule, Labels, fingerprint};
use schemas::event_schema::FieldType;
use schemas::view::{FilterValues, View};
use serde_json::Value;
use sqlx::PgPool;

use crate::error::AlertError;
use crate::json::label_json;

/// One key's labels and value, as read from a window row.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The labels.
    pub labels: Labels,
    /// The metric's value (`None`: a NULL metric).
    pub value: Option<f64>,
}

/// A window row's value as a metric's value: numbers, and text that holds one; `None` for a
/// NULL (or a float that is not finite, which JSON writes as null).
fn metric_value(value: &CellValue) -> Option<f64> {
    match value {
        CellValue::Int(v) => Some(*v as f64),
        CellValue::Float(v) => v.is_finite().then_some(*v),
        CellValue::IntegerSum(v) | CellValue::Text(v) => v.parse().ok(),
        CellValue::Null | CellValue::Bool(_) | CellValue::Time(_) | CellValue::Json(_) => None,
    }
}

/// The rows of `totals` by fingerprint.
pub fn observed(
    rule: &AlertRule,
    view: &View,
    totals: &WindowTotals,
) -> BTreeMap<String, Observed> {
    totals
        .rows
        .iter()
        .map(|row| {
            let labels: Labels = rule
                .group_by
                .iter()
                .map(|&i| {
                    let field = view.served_name(i);
                    (
                        field.to_string(),
                        totals.value(row, field).map_or(Value::Null, label_json),
                    )
                })
                .collect();
            let value = totals.value(row, &rule.metric).and_then(metric_value);
            (fingerprint(&rule.name, &labels), Observed { labels, value })
        })
        .collect()
}

/// The filter that selects `values` of a group field of `field_type`; `None` when one of the
/// values cannot be written as a filter (a NULL, a float or time key): that field then is not
/// filtered.
fn filter_of(field_type: FieldType, labels: &[Value]) -> Option<FilterValues> {
    match field_type {
        FieldType::String => labels
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<BTreeSet<String>>>()
            .map(|set| FilterValues::Text(set.into_iter().collect())),
        FieldType::I64 => labels
            .iter()
            .map(Value::as_i64)
            .collect::<Option<BTreeSet<i64>>>()
            .map(|set| FilterValues::Int(set.into_iter().collect())),
        FieldType::Bool => labels
            .iter()
            .map(Value::as_bool)
            .collect::<Option<BTreeSet<bool>>>()
            .map(|set| FilterValues::Bool(set.into_iter().collect())),
        FieldType::F64 | FieldType::Timestamp => None,
    }
}

/// What was read of the instances outside the page.
#[derive(Debug, Default)]
pub struct OutsidePage {
    /// The keys read, by fingerprint (only those asked for).
    pub read: BTreeMap<String, Observed>,
    /// Whether the statement was cut short too: the instances asked for and not read may
    /// have rows, so they must be left as they are.
    pub truncated: bool,
}

/// The filters of `rule`, as the merged read takes them.
pub fn rule_filters(rule: &AlertRule) -> Vec<Filter> {
    rule.filters
        .iter()
        .map(|(field, values)| Filter {
            field: *field,
            values: values.clone(),
        })
        .collect()
}

/// The window totals `request` asks for, for `rule` (its error names the rule and the view).
pub async fn rule_window(
    pool: &PgPool,
    view: &View,
    topic: &str,
    rule: &AlertRule,
    request: &WindowRequest,
) -> Result<WindowTotals, AlertError> {
    window_totals(pool, view, topic, request)
        .await
        .map_err(|source| AlertError::Window {
            rule: rule.name.clone(),
            view: view.name.clone(),
            source,
        })
}

/// Reads the window of `rule` for the instances `missing` (fingerprint → labels).
#[allow(clippy::too_many_arguments)]
pub async fn read(
    pool: &PgPool,
    view: &View,
    topic: &str,
    rule: &AlertRule,
    now: DateTime<Utc>,
    limit: i64,
    missing: &BTreeMap<String, Labels>,
) -> Result<OutsidePage, AlertError> {
    if missing.is_empty() {
        return Ok(OutsidePage::default());
    }
    let mut filters = rule_filters(rule);
    for &i in &rule.group_by {
        let field = view.served_name(i);
        let labels: Vec<Value> = missing
            .values()
            .map(|l| l.get(field).cloned().unwrap_or(Value::Null))
            .collect();
        if let Some(values) = filter_of(view.served_type(i), &labels) {
            filters.push(Filter { field: i, values });
        }
    }
    let request = WindowRequest {
        window_seconds: rule.window.seconds(),
        group_by: rule.group_by.clone(),
        filters,
        now,
        limit,
        end: WindowEnd::CompleteBuckets,
        rank_by: None,
        quantiles: schemas::alert::metric_levels(view, &rule.metric),
    };
    let totals = rule_window(pool, view, topic, rule, &request).await?;
    let read = observed(rule, view, &totals)
        .into_iter()
        .filter(|(fp, _)| missing.contains_key(fp))
        .collect();
    Ok(OutsidePage {
        read,
        truncated: totals.truncated,
    })
}
