//! Alert rules: `[[alerts]]` as written, and the validated [`AlertRule`] the evaluator runs.
//!
//! A rule watches one metric of one view over a rolling window ending now, on the same exact
//! merge the API serves, with one instance per value of its `group_by` fields.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::duration::HumanDuration;
use crate::event_schema::{FieldType, is_identifier};
use crate::quantile::QuantileLevel;
use crate::view::{FilterValues, View};

/// A rule as written in `[[alerts]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleConfig {
    /// The rule's name: `[a-z_][a-z0-9_]*`, at most 63 characters.
    pub name: String,
    /// The view it watches.
    pub view: String,
    /// Keep only keys whose group fields take these values (a value or an array of values).
    #[serde(default, rename = "where")]
    pub where_values: BTreeMap<String, toml::Value>,
    /// An output column of the view: `count`, `sum_price`, `avg_price`, `distinct_user_id`, ...
    pub metric: String,
    /// The rolling window ending now, a multiple of the view's bucket, e.g. `5m`.
    pub window: String,
    /// How the value compares with the threshold: `gt`, `ge`, `lt`, `le`, `eq`, `ne`.
    pub op: CompareOp,
    /// The threshold.
    pub threshold: f64,
    /// How long the condition must hold before the instance fires (`0s`: at once).
    #[serde(default = "zero", rename = "for")]
    pub for_duration: String,
    /// How long a firing instance keeps firing after the condition stops holding.
    #[serde(default = "zero")]
    pub keep_firing_for: String,
    /// Group fields of the view; one instance per value. Empty: one instance for the rule.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Where transitions go: `webhook:<name>` (an `[alerting.webhooks.<name>]`) or
    /// `kafka:<topic>`.
    #[serde(default)]
    pub notify: Vec<String>,
}

fn zero() -> String {
    "0s".to_string()
}

/// A comparison with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareOp {
    /// value > threshold.
    Gt,
    /// value ≥ threshold.
    Ge,
    /// value < threshold.
    Lt,
    /// value ≤ threshold.
    Le,
    /// value = threshold.
    Eq,
    /// value ≠ threshold.
    Ne,
}

impl CompareOp {
    /// Whether `value op threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            CompareOp::Gt => value > threshold,
            CompareOp::Ge => value >= threshold,
            CompareOp::Lt => value < threshold,
            CompareOp::Le => value <= threshold,
            CompareOp::Eq => value == threshold,
            CompareOp::Ne => value != threshold,
        }
    }

    /// As written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
        }
    }
}

/// Where a rule's transitions are sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Receiver {
    /// A webhook declared under `[alerting.webhooks.<name>]`.
    Webhook(String),
    /// A Kafka topic on `kafka.brokers`, one message per transition keyed by fingerprint.
    Kafka(String),
}

impl fmt::Display for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Receiver::Webhook(name) => write!(f, "webhook:{name}"),
            Receiver::Kafka(topic) => write!(f, "kafka:{topic}"),
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// The name.
    pub name: String,
    /// The view's name.
    pub view: String,
    /// Equality filters on the view's group fields (index into its `group_by`).
    pub filters: Vec<(usize, FilterValues)>,
    /// The output column compared.
    pub metric: String,
    /// The window.
    pub window: HumanDuration,
    /// The comparison.
    pub op: CompareOp,
    /// The threshold.
    pub threshold: f64,
    /// Seconds the condition must hold before firing.
    pub for_seconds: i64,
    /// Seconds a firing instance keeps firing after the condition stops holding.
    pub keep_firing_for_seconds: i64,
    /// Group fields and attributes (index into the view's `served_names`), one instance per
    /// value.
    pub group_by: Vec<usize>,
    /// Receivers, in the order written.
    pub notify: Vec<Receiver>,
}

/// Why a rule was refused: the key under `alerts[i]` and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct AlertRuleError {
    /// The key inside the rule, e.g. `view` or `for`.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

fn refuse(key: &'static str, reason: impl Into<String>) -> AlertRuleError {
    AlertRuleError {
        key,
        reason: reason.into(),
    }
}

/// Parses a hold time (`for`, `keep_firing_for`): a duration, or zero.
fn hold_seconds(key: &'static str, text: &str) -> Result<i64, AlertRuleError> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(refuse(key, format!("`{text}` is negative; use 0s or more")));
    }
    if text
        .trim_end_matches(['s', 'm', 'h', 'd'])
        .chars()
        .all(|c| c == '0')
        && !text.is_empty()
    {
        return Ok(0);
    }
    HumanDuration::parse(text)
        .map(HumanDuration::seconds)
        .map_err(|e| refuse(key, e.to_string()))
}

/// The output columns of a view whose values are numbers, so that a threshold applies: a
/// quantile metric as its default levels (`quantile_latency_ms_p99`; any other level's column
/// is accepted too, [`metric_levels`]).
pub fn numeric_columns(view: &View) -> Vec<String> {
    let defaults = QuantileLevel::defaults();
    view.metrics
        .iter()
        .zip(crate::plan::ViewPlan::of(view).metrics)
        .filter(|(_, plan)| plan.answer().is_number())
        .flat_map(|(metric, _)| metric.answer_columns(&defaults))
        .chain(view.averages().into_iter().map(|a| a.column))
        .collect()
}

/// The quantile level an alert's `metric` reads, when it names one of a quantile metric of
/// `view` (`quantile_latency_ms_p99`: `[0.99]`); else none.
pub fn metric_levels(view: &View, metric: &str) -> Vec<QuantileLevel> {
    view.metrics
        .iter()
        .filter(|m| crate::pg_layout::merge::answers_quantiles(m))
        .find_map(|m| QuantileLevel::of_column(&m.column, metric))
        .into_iter()
        .collect()
}

fn where_values(
    view: &View,
    field: &str,
    value: &toml::Value,
) -> Result<(usize, FilterValues), AlertRuleError> {
    let index = view
        .group_by
        .iter()
        .position(|g| g == field)
        .ok_or_else(|| {
            refuse(
                "where",
                format!(
                    "`{field}` is not a group field of view `{}`; its group fields are [{}]",
                    view.name,
                    view.group_by.join(", ")
                ),
            )
        })?;
    let items: Vec<&toml::Value> = match value {
        toml::Value::Array(items) if !items.is_empty() => items.iter().collect(),
        toml::Value::Array(_) => {
            return Err(refuse("where", format!("`{field}`: the array is empty")));
        }
        one => vec![one],
    };
    let kind = view.group_by_types[index];
    let wrong = |item: &toml::Value| {
        refuse(
            "where",
            format!("`{field}` is a {} field; `{item}` is not one", kind.name()),
        )
    };
    let values = match kind {
        FieldType::I64 => FilterValues::Int(
            items
                .iter()
                .map(|i| i.as_integer().ok_or_else(|| wrong(i)))
                .collect::<Result<_, _>>()?,
        ),
        FieldType::Bool => FilterValues::Bool(
            items
                .iter()
                .map(|i| i.as_bool().ok_or_else(|| wrong(i)))
                .collect::<Result<_, _>>()?,
        ),
        _ => FilterValues::Text(
            items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(|| wrong(i)))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok((index, values))
}

impl AlertRuleConfig {
    /// Checks the rule against the views and the names of the declared webhooks. A Kafka
    /// receiver's topic name is checked with the rest of the configuration.
    pub fn validate(&self, views: &[View], webhooks: &[&str]) -> Result<AlertRule, AlertRuleError> {
        if !is_identifier(&self.name, 63) {
            return Err(refuse(
                "name",
                "must be lowercase letters, digits and `_`, starting with a letter or `_`, at most 63 characters",
            ));
        }
        let view = views.iter().find(|v| v.name == self.view).ok_or_else(|| {
            refuse(
                "view",
                format!(
                    "unknown view `{}`; the views are [{}]",
                    self.view,
                    views
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let numeric = numeric_columns(view);
        if !numeric.contains(&self.metric) && metric_levels(view, &self.metric).is_empty() {
            return Err(refuse(
                "metric",
                format!(
                    "`{}` is not a numeric metric of view `{}`; its metrics are [{}]",
                    self.metric,
                    view.name,
                    numeric.join(", ")
                ),
            ));
        }
        let window =
            HumanDuration::parse(&self.window).map_err(|e| refuse("window", e.to_string()))?;
        let bucket = view.bucket.seconds();
        if window.seconds() < bucket {
            return Err(refuse(
                "window",
                format!(
                    "`{window}` is shorter than view `{}`'s bucket `{}`",
                    view.name, view.bucket
                ),
            ));
        }
        if window.seconds() % bucket != 0 {
            return Err(refuse(
                "window",
                format!(
                    "`{window}` is not a whole number of view `{}`'s bucket `{}`",
                    view.name, view.bucket
                ),
            ));
        }
        if !self.threshold.is_finite() {
            return Err(refuse("threshold", "must be a finite number"));
        }
        let for_seconds = hold_seconds("for", &self.for_duration)?;
        let keep_firing_for_seconds = hold_seconds("keep_firing_for", &self.keep_firing_for)?;
        let mut group_by = Vec::with_capacity(self.group_by.len());
        for field in &self.group_by {
            // A group field, or an attribute of a dimension of one (a versioned dimension's
            // as of each bucket's start, the others' current value).
            let served = view.served_names();
            let index = served.iter().position(|g| g == field).ok_or_else(|| {
                refuse(
                    "group_by",
                    format!(
                        "`{field}` is not a group field or attribute of view `{}`; it has [{}]",
                        view.name,
                        served.join(", ")
                    ),
                )
            })?;
            if group_by.contains(&index) {
                return Err(refuse("group_by", format!("`{field}` is named twice")));
            }
            group_by.push(index);
        }
        let filters = self
            .where_values
            .iter()
            .map(|(field, value)| where_values(view, field, value))
            .collect::<Result<Vec<_>, _>>()?;
        let mut notify = Vec::with_capacity(self.notify.len());
        let mut seen = HashSet::new();
        for target in &self.notify {
            let receiver = match target.split_once(':') {
                Some(("webhook", name)) if webhooks.contains(&name) => {
                    Receiver::Webhook(name.to_string())
                }
                Some(("webhook", name)) => {
                    return Err(refuse(
                        "notify",
                        format!(
                            "`{target}`: no [alerting.webhooks.{name}] is declared; declared: [{}]",
                            webhooks.join(", ")
                        ),
                    ));
                }
                Some(("kafka", topic)) if !topic.is_empty() => Receiver::Kafka(topic.to_string()),
                _ => {
                    return Err(refuse(
                        "notify",
                        format!("`{target}` is not `webhook:<name>` or `kafka:<topic>`"),
                    ));
                }
            };
            if !seen.insert(receiver.clone()) {
                return Err(refuse("notify", format!("`{target}` is named twice")));
            }
            notify.push(receiver);
        }
        Ok(AlertRule {
            name: self.name.clone(),
            view: view.name.clone(),
            filters,
            metric: self.metric.clone(),
            window,
            op: self.op,
            threshold: self.threshold,
            for_seconds,
            keep_firing_for_seconds,
            group_by,
            notify,
        })
    }
}

/// The labels of one instance: the rule's group fields and their values (JSON: a string, a
/// number, a boolean, or null for an absent optional field).
pub type Labels = serde_json::Map<String, serde_json::Value>;

/// The stable identity of an instance: a hash of the rule's name and its labels (in key order).
pub fn fingerprint(rule: &str, labels: &Labels) -> String {
    let mut hasher = Sha256::new();
    hasher.update(rule.as_bytes());
    hasher.update([0]);
    hasher.update(
        serde_json::Value::Object(labels.clone())
            .to_string()
            .as_bytes(),
    );
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
