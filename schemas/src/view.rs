//! View definitions: declared once in configuration, computed by both layers.
//!
//! A view is a filter, group-by fields, a time bucket and mergeable metrics (count, sum,
//! min, max). avg is derived when reading, as sum / count.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dimension::Attribute;
use crate::duration::HumanDuration;
use crate::event_schema::{EventSchema, FieldType, is_identifier};
use crate::record::{Record, Value};
use crate::sketch::SketchParams;

/// A view as written in `[[views]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// The view's name: `[a-z_][a-z0-9_]*`, at most 40 characters. Names the API path and SQL view.
    pub name: String,
    /// Keep only records that pass this filter. Omit to keep all valid records.
    #[serde(default)]
    pub filter: Option<FilterConfig>,
    /// Fields whose values form the group key (string, i64 or bool fields). May be empty.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// The time bucket of the event time, e.g. `10s`, `1m`, `1h`.
    pub bucket: String,
    /// Metrics: `count`, `sum(f)`, `min(f)`, `max(f)`.
    pub metrics: Vec<String>,
}

/// A filter as written in configuration: `{ field = "event_type", op = "eq", value = "purchase" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The field to test.
    pub field: String,
    /// One of `eq`, `ne`, `in`, `lt`, `le`, `gt`, `ge`.
    pub op: FilterOp,
    /// The value to compare with; an array for `in`. Timestamps are RFC 3339 strings.
    pub value: toml::Value,
}

/// A filter operator. A record whose field is absent never passes (as in SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Equal to one of a set.
    In,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
}

/// A validated filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The field's name.
    pub field: String,
    /// The field's index in the schema.
    pub field_index: usize,
    /// The operator.
    pub op: FilterOp,
    /// The operand(s), typed like the field; several only for `in`.
    pub values: Vec<Value>,
}

/// A mergeable aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Number of records.
    Count,
    /// Sum of a numeric field (absent values are skipped).
    Sum,
    /// Smallest value of an ordered field.
    Min,
    /// Largest value of an ordered field.
    Max,
    /// A decayed score: per bucket, the sum over its records of `w · 2^((t − bucket_start) /
    /// half_life)`, where `w` is 1 (`decayed(count, …)`) or the field's value (`decayed(sum(f),
    /// …)`) and `t` the event time. A plain sum, so batch and speed add; readers decay each
    /// bucket to the time asked (now) by `2^((bucket_start − now) / half_life)`.
    Decayed,
    /// How many distinct values a field takes, estimated by a HyperLogLog sketch that
    /// PostgreSQL's `hll` extension merges ([`crate::sketch`]).
    Distinct,
    /// Quantiles of a numeric field within a relative accuracy, from a logarithmic-bucket
    /// sketch ([`crate::quantile`]).
    Quantile,
    /// K records per key and bucket, those whose Kafka position hashes lowest, with their
    /// fields ([`crate::sample`]).
    Sample,
}

/// A validated metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// The function.
    pub kind: MetricKind,
    /// The field it reads (`None` for count).
    pub field: Option<String>,
    /// The field's index in the schema.
    pub field_index: Option<usize>,
    /// The field's type (`None` for count).
    pub field_type: Option<FieldType>,
    /// The column name: `count`, `count_price`, `sum_price`, `min_price`, ...
    pub column: String,
    /// Whether the field is required (every valid record has it); false for `count`.
    pub field_required: bool,
    /// The half-life of a decayed metric (`None` for the others).
    pub half_life: Option<HumanDuration>,
    /// The precision of a distinct metric's sketches (`None` for the others).
    pub sketch: Option<SketchParams>,
    /// The settings of a quantile metric's sketches (`None` for the others).
    pub quantile: Option<crate::quantile::QuantileParams>,
    /// The settings of a sample metric (`None` for the others).
    pub sample: Option<crate::sample::SampleParams>,
}

/// The largest bucket width of a decayed metric, in half-lives: within a bucket, weights reach
/// `2^(bucket / half_life)`, which must stay far from f64's range (2^1024).
pub const MAX_BUCKET_HALF_LIVES: i64 = 256;

/// Readers decay a bucket by at most this many half-lives (a weight of 2^-600 ≈ 2.4e-181):
/// older buckets count as this old, so that PostgreSQL never underflows (it raises an error
/// where f64 would round to zero). Their share of any answer is below 1e-180 of a record.
pub const MAX_DECAY_HALF_LIVES: i64 = 600;

impl View {
    /// Whether the view has decayed metrics, whose answers depend on the time decayed to.
    pub fn has_decayed_metrics(&self) -> bool {
        self.metrics.iter().any(|m| m.half_life.is_some())
    }
}

impl Metric {
    /// Its answer columns for quantile `levels`: one per level of a quantile metric
    /// ([`crate::quantile::QuantileLevel::column`]), else its own column.
    pub fn answer_columns(&self, levels: &[crate::quantile::QuantileLevel]) -> Vec<String> {
        if self.quantile.is_some() {
            levels.iter().map(|l| l.column(&self.column)).collect()
        } else {
            vec![self.column.clone()]
        }
    }

    /// The half-life in microseconds of a decayed metric.
    pub fn half_life_micros(&self) -> Option<i64> {
        self.half_life.map(HumanDuration::micros)
    }

    /// The weight of one record at `event_micros` in the bucket starting at `bucket_micros`:
    /// `2^((t − bucket_start) / half_life)`. The speed layer and the batch layer both use this
    /// formula (the batch layer as a Polars expression of the same operations).
    pub fn decay_weight(half_life_micros: i64, event_micros: i64, bucket_micros: i64) -> f64 {
        ((event_micros - bucket_micros) as f64 / half_life_micros as f64).exp2()
    }
}

/// An average a view answers: `avg_<field>` = the sum's column / the count's column, where the
/// count counts exactly the records the sum added (records that have the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Average {
    /// The output column, `avg_<field>`.
    pub column: String,
    /// The sum's column.
    pub sum: String,
    /// The column counting the records the sum added: `count_<field>`, or `count` for a
    /// required field.
    pub count: String,
}

/// Values a group field must take (any of them): a request's `filter.<field>` parameters or
/// an alert rule's `where`.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValues {
    /// A string field.
    Text(Vec<String>),
    /// An i64 field.
    Int(Vec<i64>),
    /// A bool field.
    Bool(Vec<bool>),
}

/// A validated view, ready for both layers.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The name.
    pub name: String,
    /// The filter, if any.
    pub filter: Option<Filter>,
    /// Group-by field names.
    pub group_by: Vec<String>,
    /// Group-by field indexes in the schema.
    pub group_by_indexes: Vec<usize>,
    /// Group-by field types.
    pub group_by_types: Vec<FieldType>,
    /// The bucket width.
    pub bucket: HumanDuration,
    /// The metrics, in declaration order.
    pub metrics: Vec<Metric>,
    /// A short hash of everything that affects the view's rows. Changes when the definition does.
    pub fingerprint: String,
    /// Attributes of dimensions keyed on one of its group fields, which answers may group and
    /// filter by (joined when read; not part of the stored rows or the fingerprint).
    pub attributes: Vec<Attribute>,
}

/// Why a view definition was refused. Always names the view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("view `{view}`: {reason}")]
pub struct ViewError {
    /// The view's name (or its position when the name itself is bad).
    pub view: String,
    /// What is wrong, naming the field where one is involved.
    pub reason: String,
}

impl ViewConfig {
    /// Checks the definition against the schema.
    pub fn validate(&self, schema: &EventSchema) -> Result<View, ViewError> {
        let error = |reason: String| ViewError {
            view: self.name.clone(),
            reason,
        };
        if !is_identifier(&self.name, 40) {
            return Err(error("the name must be lowercase letters, digits and `_`, start with a letter or `_`, at most 40 characters".into()));
        }
        let field = |name: &str, role: &str| {
            schema
                .field_index(name)
                .map(|i| (i, schema.fields[i].field_type))
                .ok_or_else(|| error(format!("{role} field `{name}` is not in the schema")))
        };
        let filter = self
            .filter
            .as_ref()
            .map(|f| validate_filter(f, schema))
            .transpose()
            .map_err(error)?;
        let mut group_by_indexes = Vec::new();
        let mut group_by_types = Vec::new();
        for name in &self.group_by {
            let (index, field_type) = field(name, "group-by")?;
            if !matches!(
                field_type,
                FieldType::String | FieldType::I64 | FieldType::Bool
            ) {
                return Err(error(format!(
                    "group-by field `{name}` is {}; only string, i64 and bool fields can be grouped by",
                    field_type.name()
                )));
            }
            if group_by_indexes.contains(&index) {
                return Err(error(format!("group-by field `{name}` is listed twice")));
            }
            group_by_indexes.push(index);
            group_by_types.push(field_type);
        }
        let bucket =
            HumanDuration::parse(&self.bucket).map_err(|e| error(format!("bucket: {e}")))?;
        if self.metrics.is_empty() {
            return Err(error(
                "declare at least one metric, e.g. metrics = [\"count\"]".into(),
            ));
        }
        let mut metrics: Vec<Metric> = Vec::new();
        for text in &self.metrics {
            let metric = parse_metric(text).map_err(error)?;
            let metric = match metric {
                (MetricKind::Count, None) => Metric {
                    kind: MetricKind::Count,
                    field: None,
                    field_index: None,
                    field_type: None,
                    column: "count".into(),
                    field_required: false,
                    half_life: None,
                    sketch: None,
                    quantile: None,
                    sample: None,
                },
                (MetricKind::Decayed, decayed) => {
                    decayed_metric(text, decayed, &bucket, schema).map_err(error)?
                }
                (MetricKind::Distinct, inner) => {
                    distinct_metric(text, inner, schema).map_err(error)?
                }
                (MetricKind::Quantile, inner) => {
                    quantile_metric(text, inner, schema).map_err(error)?
                }
                (MetricKind::Sample, inner) => sample_metric(text, inner).map_err(error)?,
                (kind, Some(name)) => {
                    let (index, field_type) = field(name, "metric")?;
                    let allowed = match kind {
                        MetricKind::Count => true,
                        MetricKind::Sum => field_type.is_summable(),
                        _ => field_type.is_ordered(),
                    };
                    if !allowed {
                        return Err(error(format!(
                            "metric `{text}`: field `{name}` is {}, which {} cannot use",
                            field_type.name(),
                            kind_name(kind)
                        )));
                    }
                    Metric {
                        kind,
                        field: Some(name.to_string()),
                        field_index: Some(index),
                        field_type: Some(field_type),
                        column: format!("{}_{name}", kind_name(kind)),
                        field_required: schema.fields[index].required,
                        half_life: None,
                        sketch: None,
                        quantile: None,
                        sample: None,
                    }
                }
                (_, None) => unreachable!("parse_metric pairs every kind but count with a field"),
            };
            if metrics.iter().any(|m| m.column == metric.column) {
                return Err(error(format!("metric `{text}` is listed twice")));
            }
            if self.group_by.contains(&metric.column) {
                return Err(error(format!(
                    "metric column `{}` clashes with a group-by field",
                    metric.column
                )));
            }
            metrics.push(metric);
        }
        let mut view = View {
            name: self.name.clone(),
            filter,
            group_by: self.group_by.clone(),
            group_by_indexes,
            group_by_types,
            bucket,
            metrics,
            fingerprint: String::new(),
            attributes: Vec::new(),
        };
        view.fingerprint = view.compute_fingerprint(schema);
        let mut seen: Vec<String> = view.group_by.clone();
        for name in view.answer_names() {
            if seen.contains(&name) {
                return Err(error(format!(
                    "answer column `{name}` is named twice (a group field, a metric's column, a quantile level `_pNN`, a sketch `_sketch` or an average `avg_`): rename the field or drop a metric"
                )));
            }
            if name.len() > MAX_ANSWER_NAME_BYTES {
                return Err(error(format!(
                    "answer column `{name}` is longer than PostgreSQL's {MAX_ANSWER_NAME_BYTES}-byte names: use a shorter field name"
                )));
            }
            seen.push(name);
        }
        Ok(view)
    }
}

/// The longest name PostgreSQL keeps (longer identifiers are truncated, so two could clash).
pub const MAX_ANSWER_NAME_BYTES: usize = 63;

impl MetricKind {
    /// Every kind, in declaration order: what tests iterate to cover each kind.
    pub const ALL: [MetricKind; 8] = [
        MetricKind::Count,
        MetricKind::Sum,
        MetricKind::Min,
        MetricKind::Max,
        MetricKind::Decayed,
        MetricKind::Distinct,
        MetricKind::Quantile,
        MetricKind::Sample,
    ];

    /// A metric of this kind as configuration writes it, over `field` (`None`: over every
    /// record), with default parameters; `None` where the kind has no such form. Whether the
    /// field's type suits the kind is for validation to say. Tests build views of every kind
    /// from these, so a new kind is covered without new test code.
    pub fn example(self, field: Option<&str>) -> Option<String> {
        let name = kind_name(self);
        match (self, field) {
            (MetricKind::Count, None) => Some(name.to_string()),
            (MetricKind::Decayed, None) => Some(format!("{name}(count, 1h)")),
            (MetricKind::Sample, None) => Some(format!("{name}(5)")),
            (MetricKind::Sample, Some(_)) => None,
            (MetricKind::Decayed, Some(field)) => Some(format!("{name}(sum({field}), 1h)")),
            (
                MetricKind::Count
                | MetricKind::Sum
                | MetricKind::Min
                | MetricKind::Max
                | MetricKind::Distinct
                | MetricKind::Quantile,
                Some(field),
            ) => Some(format!("{name}({field})")),
            (
                MetricKind::Sum
                | MetricKind::Min
                | MetricKind::Max
                | MetricKind::Distinct
                | MetricKind::Quantile,
                None,
            ) => None,
        }
    }
}

/// Every metric the schema admits, as configuration writes it: for each kind, its form over
/// every record and over each field whose type the kind takes (default parameters). Tests
/// build views of every kind from it, so a new kind is covered without new test code.
pub fn example_metrics(schema: &EventSchema) -> Vec<String> {
    let fields = std::iter::once(None).chain(schema.fields.iter().map(|f| Some(f.name.as_str())));
    let fields: Vec<Option<&str>> = fields.collect();
    MetricKind::ALL
        .iter()
        .flat_map(|kind| fields.iter().filter_map(|field| kind.example(*field)))
        .filter(|text| {
            ViewConfig {
                name: "example".into(),
                filter: None,
                group_by: Vec::new(),
                bucket: "1h".into(),
                metrics: vec![text.clone()],
            }
            .validate(schema)
            .is_ok()
        })
        .collect()
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Count => "count",
        MetricKind::Sum => "sum",
        MetricKind::Min => "min",
        MetricKind::Max => "max",
        MetricKind::Decayed => "decayed",
        MetricKind::Distinct => "distinct",
        MetricKind::Quantile => "quantile",
        MetricKind::Sample => "sample",
    }
}

/// `decayed(count, H)` or `decayed(sum(field), H)`: `inner` is the text inside the parentheses.
fn decayed_metric(
    text: &str,
    inner: Option<&str>,
    bucket: &HumanDuration,
    schema: &EventSchema,
) -> Result<Metric, String> {
    let usage = || {
        format!(
            "metric `{text}`: write decayed(count, HALF_LIFE) or decayed(sum(FIELD), HALF_LIFE), e.g. decayed(count, 10m)"
        )
    };
    let (what, half_life) = inner.and_then(|i| i.rsplit_once(',')).ok_or_else(usage)?;
    let half_life = HumanDuration::parse(half_life.trim())
        .map_err(|e| format!("metric `{text}`: half-life: {e}"))?;
    if bucket.micros() > half_life.micros() * MAX_BUCKET_HALF_LIVES {
        return Err(format!(
            "metric `{text}`: the bucket {bucket} is more than {MAX_BUCKET_HALF_LIVES} half-lives; use a half-life of at least 1/{MAX_BUCKET_HALF_LIVES} of the bucket"
        ));
    }
    let what = what.trim();
    let (field, column) = if what == "count" {
        (None, "decayed_count".to_string())
    } else {
        let name = what
            .strip_prefix("sum(")
            .and_then(|r| r.strip_suffix(')'))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(usage)?;
        let index = schema
            .field_index(name)
            .ok_or_else(|| format!("metric `{text}`: field `{name}` is not in the schema"))?;
        let field_type = schema.fields[index].field_type;
        if field_type != FieldType::I64 {
            return Err(format!(
                "metric `{text}`: field `{name}` is {}; decayed sums take i64 fields",
                field_type.name()
            ));
        }
        (
            Some((name, index, field_type)),
            format!("decayed_sum_{name}"),
        )
    };
    Ok(Metric {
        kind: MetricKind::Decayed,
        field: field.map(|(name, _, _)| name.to_string()),
        field_index: field.map(|(_, index, _)| index),
        field_type: field.map(|(_, _, field_type)| field_type),
        column,
        field_required: field.is_some_and(|(_, index, _)| schema.fields[index].required),
        half_life: Some(half_life),
        sketch: None,
        quantile: None,
        sample: None,
    })
}

/// `distinct(field)`, or with the extension's parameters `distinct(field, LOG2M[, REGWIDTH[,
/// EXPTHRESH[, SPARSEON]]])` (those left out take the extension's defaults): `inner` is the
/// text inside the parentheses.
fn distinct_metric(
    text: &str,
    inner: Option<&str>,
    schema: &EventSchema,
) -> Result<Metric, String> {
    let usage = || {
        format!(
            "metric `{text}`: write distinct(FIELD), or distinct(FIELD, LOG2M[, REGWIDTH[, EXPTHRESH[, SPARSEON]]]) \
             with integers for other sketch parameters (default {}: postgresql-hll's own)",
            SketchParams::default()
        )
    };
    let parts: Vec<&str> = inner.ok_or_else(usage)?.split(',').map(str::trim).collect();
    if parts.len() > 5 {
        return Err(usage());
    }
    // The extension's defaults for the arguments left out.
    let mut arguments = SketchParams::default().arguments();
    let names = ["LOG2M", "REGWIDTH", "EXPTHRESH", "SPARSEON"];
    for ((argument, part), name) in arguments.iter_mut().zip(&parts[1..]).zip(names) {
        *argument = part.parse().map_err(|_| {
            let digits = part.strip_prefix('-').unwrap_or(part);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                format!("metric `{text}`: {name} {part} is out of range")
            } else {
                usage()
            }
        })?;
    }
    let [log2m, regwidth, expthresh, sparseon] = arguments;
    let sketch = SketchParams::checked(log2m, regwidth, expthresh, sparseon)
        .map_err(|e| format!("metric `{text}`: {e}"))?;
    let name = parts[0];
    if name.is_empty() {
        return Err(usage());
    }
    let mut metric = sketched_metric(
        text,
        name,
        schema,
        MetricKind::Distinct,
        (
            &[FieldType::String, FieldType::I64],
            "distinct counts take string and i64 fields",
        ),
    )?;
    metric.sketch = Some(sketch);
    Ok(metric)
}

/// A metric of `kind` over field `name`, which must be of one of `types` (`takes` says which,
/// for the refusal); its column is `<kind>_<name>`, its settings still unset.
fn sketched_metric(
    text: &str,
    name: &str,
    schema: &EventSchema,
    kind: MetricKind,
    (types, takes): (&[FieldType], &str),
) -> Result<Metric, String> {
    let index = schema
        .field_index(name)
        .ok_or_else(|| format!("metric `{text}`: field `{name}` is not in the schema"))?;
    let field_type = schema.fields[index].field_type;
    if !types.contains(&field_type) {
        return Err(format!(
            "metric `{text}`: field `{name}` is {}; {takes}",
            field_type.name()
        ));
    }
    Ok(Metric {
        kind,
        field: Some(name.to_string()),
        field_index: Some(index),
        field_type: Some(field_type),
        column: format!("{}_{name}", kind_name(kind)),
        field_required: schema.fields[index].required,
        half_life: None,
        sketch: None,
        quantile: None,
        sample: None,
    })
}

/// `quantile(field)` or `quantile(field, ACCURACY)` over an i64 or f64 field: `inner` is the
/// text inside the parentheses.
fn quantile_metric(
    text: &str,
    inner: Option<&str>,
    schema: &EventSchema,
) -> Result<Metric, String> {
    let usage = || {
        format!(
            "metric `{text}`: write quantile(FIELD) or quantile(FIELD, ACCURACY), ACCURACY a relative error such as 0.01 (the default, 1 %)"
        )
    };
    let parts: Vec<&str> = inner.ok_or_else(usage)?.split(',').map(str::trim).collect();
    let params = match parts[1..] {
        [] => crate::quantile::QuantileParams::default(),
        [accuracy] => {
            let accuracy: f64 = accuracy.parse().map_err(|_| usage())?;
            crate::quantile::QuantileParams::for_accuracy(accuracy)
                .map_err(|e| format!("metric `{text}`: {e}"))?
        }
        _ => return Err(usage()),
    };
    let name = parts[0];
    if name.is_empty() {
        return Err(usage());
    }
    let mut metric = sketched_metric(
        text,
        name,
        schema,
        MetricKind::Quantile,
        (
            &[FieldType::I64, FieldType::F64],
            "quantiles take i64 and f64 fields",
        ),
    )?;
    metric.quantile = Some(params);
    Ok(metric)
}

/// `sample(K)` or `sample(K, MAX_RECORD_BYTES)`: K records per key and bucket (column
/// `sample`), each record's fields bounded by MAX_RECORD_BYTES of JSON.
fn sample_metric(text: &str, inner: Option<&str>) -> Result<Metric, String> {
    let usage = || {
        format!(
            "metric `{text}`: write sample(K) or sample(K, MAX_RECORD_BYTES), K the records kept per key and bucket (1 to {}), MAX_RECORD_BYTES the most bytes of a kept record's fields (default {})",
            crate::sample::MAX_K,
            crate::sample::DEFAULT_MAX_RECORD_BYTES
        )
    };
    let parts: Vec<&str> = inner.ok_or_else(usage)?.split(',').map(str::trim).collect();
    let number = |part: &str| part.parse::<i64>().map_err(|_| usage());
    let params = match parts[..] {
        [k] => crate::sample::SampleParams::new(number(k)?),
        [k, bytes] => {
            let bytes = number(bytes)?;
            crate::sample::SampleParams::new(number(k)?)
                .and_then(|p| p.with_max_record_bytes(bytes))
        }
        _ => return Err(usage()),
    }
    .map_err(|e| format!("metric `{text}`: {e}"))?;
    Ok(Metric {
        kind: MetricKind::Sample,
        field: None,
        field_index: None,
        field_type: None,
        column: "sample".into(),
        field_required: false,
        half_life: None,
        sketch: None,
        quantile: None,
        sample: Some(params),
    })
}

/// Parses `count`, `count(f)`, `sum(f)`, `min(f)`, `max(f)`.
fn parse_metric(text: &str) -> Result<(MetricKind, Option<&str>), String> {
    let text = text.trim();
    if text == "count" {
        return Ok((MetricKind::Count, None));
    }
    let bad = || {
        format!(
            "metric `{text}` is not one of count, count(field), sum(field), min(field), max(field), distinct(field), decayed(count, HALF_LIFE), decayed(sum(field), HALF_LIFE)"
        )
    };
    let (function, rest) = text.split_once('(').ok_or_else(bad)?;
    let field = rest.strip_suffix(')').ok_or_else(bad)?.trim();
    match function.trim() {
        "decayed" => return Ok((MetricKind::Decayed, Some(field))),
        "distinct" => return Ok((MetricKind::Distinct, Some(field))),
        "quantile" => return Ok((MetricKind::Quantile, Some(field))),
        "sample" => return Ok((MetricKind::Sample, Some(field))),
        _ => {}
    }
    let kind = match function.trim() {
        "count" => MetricKind::Count,
        "sum" => MetricKind::Sum,
        "min" => MetricKind::Min,
        "max" => MetricKind::Max,
        "avg" => {
            return Err(format!(
                "metric `{text}`: avg is derived when reading, as sum/count; declare sum({field}) and count({field}) (or count, for a required field) instead"
            ));
        }
        _ => return Err(bad()),
    };
    if field.is_empty() {
        return Err(bad());
    }
    Ok((kind, Some(field)))
}

fn validate_filter(config: &FilterConfig, schema: &EventSchema) -> Result<Filter, String> {
    let index = schema
        .field_index(&config.field)
        .ok_or_else(|| format!("filter field `{}` is not in the schema", config.field))?;
    let field_type = schema.fields[index].field_type;
    let typed = |value: &toml::Value| -> Result<Value, String> {
        let wrong = || {
            format!(
                "filter value {value} does not match field `{}` of type {}",
                config.field,
                field_type.name()
            )
        };
        Ok(match (field_type, value) {
            (FieldType::String, toml::Value::String(s)) => Value::String(s.clone()),
            (FieldType::I64, toml::Value::Integer(i)) => Value::I64(*i),
            (FieldType::F64, toml::Value::Float(f)) => Value::F64(*f),
            (FieldType::F64, toml::Value::Integer(i)) => Value::F64(*i as f64),
            (FieldType::Bool, toml::Value::Boolean(b)) => Value::Bool(*b),
            (FieldType::Timestamp, toml::Value::String(s)) => Value::Timestamp(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|_| wrong())?
                    .timestamp_micros(),
            ),
            _ => return Err(wrong()),
        })
    };
    let values = match (config.op, &config.value) {
        (FilterOp::In, toml::Value::Array(items)) if !items.is_empty() => {
            items.iter().map(typed).collect::<Result<_, _>>()?
        }
        (FilterOp::In, _) => {
            return Err(format!(
                "filter op `in` on `{}` needs a non-empty array value",
                config.field
            ));
        }
        (_, toml::Value::Array(_)) => {
            return Err(format!(
                "filter on `{}`: only op `in` takes an array",
                config.field
            ));
        }
        (op, value) => {
            if matches!(
                op,
                FilterOp::Lt | FilterOp::Le | FilterOp::Gt | FilterOp::Ge
            ) && !field_type.is_ordered()
            {
                return Err(format!(
                    "filter on `{}`: {} fields cannot be compared with lt/le/gt/ge",
                    config.field,
                    field_type.name()
                ));
            }
            vec![typed(value)?]
        }
    };
    Ok(Filter {
        field: config.field.clone(),
        field_index: index,
        op: config.op,
        values,
    })
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::I64(a), Value::I64(b)) => Some(a.cmp(b)),
        (Value::F64(a), Value::F64(b)) => a.partial_cmp(b),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

impl Filter {
    /// Whether a record passes. An absent field never passes, whatever the operator.
    pub fn matches(&self, record: &Record) -> bool {
        use std::cmp::Ordering::*;
        let Some(value) = record.get(self.field_index) else {
            return false;
        };
        let first = &self.values[0];
        match self.op {
            FilterOp::Eq => compare(value, first) == Some(Equal),
            FilterOp::Ne => matches!(compare(value, first), Some(Less | Greater)),
            FilterOp::In => self.values.iter().any(|v| compare(value, v) == Some(Equal)),
            FilterOp::Lt => compare(value, first) == Some(Less),
            FilterOp::Le => matches!(compare(value, first), Some(Less | Equal)),
            FilterOp::Gt => compare(value, first) == Some(Greater),
            FilterOp::Ge => matches!(compare(value, first), Some(Greater | Equal)),
        }
    }
}

impl View {
    /// Whether the record belongs to this view.
    pub fn accepts(&self, record: &Record) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(record))
    }

    /// The start of the record's bucket, in microseconds since the epoch.
    pub fn bucket_start_micros(&self, event_time_micros: i64) -> i64 {
        let width = self.bucket.micros();
        event_time_micros.div_euclid(width) * width
    }

    /// The columns an answer may group and filter by: the group fields, then the attributes of
    /// the dimensions keyed on them. Index `i` of an answer's group columns refers to this list.
    pub fn served_names(&self) -> Vec<&str> {
        self.group_by
            .iter()
            .map(String::as_str)
            .chain(self.attributes.iter().map(|a| a.name.as_str()))
            .collect()
    }

    /// The name of served column `i` (see [`Self::served_names`]).
    pub fn served_name(&self, i: usize) -> &str {
        match self.group_by.get(i) {
            Some(name) => name,
            None => &self.attributes[i - self.group_by.len()].name,
        }
    }

    /// The type of served column `i`.
    pub fn served_type(&self, i: usize) -> FieldType {
        match self.group_by_types.get(i) {
            Some(t) => *t,
            None => self.attributes[i - self.group_by.len()].attribute_type,
        }
    }

    /// The attribute served as column `i`, if it is one.
    pub fn served_attribute(&self, i: usize) -> Option<&Attribute> {
        i.checked_sub(self.group_by.len())
            .and_then(|a| self.attributes.get(a))
    }

    /// Every column an answer or `serving.<view>` may carry besides the group fields and
    /// attributes: `bucket_start`, each metric's answer columns (a quantile metric's default
    /// levels), the merged sketches (`<metric>_sketch`), the averages, and the parts.
    pub fn answer_names(&self) -> Vec<String> {
        let levels = crate::quantile::QuantileLevel::defaults();
        let mut names = vec!["bucket_start".to_string()];
        for metric in &self.metrics {
            names.extend(metric.answer_columns(&levels));
            if metric.quantile.is_some() || metric.sketch.is_some() {
                names.push(format!("{}_sketch", metric.column));
            }
        }
        names.extend(self.averages().into_iter().map(|a| a.column));
        names.extend(["batch_part".to_string(), "speed_part".to_string()]);
        names
    }

    /// The averages the view answers: one per summed field that it also counts. An optional
    /// field is averaged only with `count(field)`: dividing by `count`, which includes the
    /// records without the field, would bias the average toward zero.
    pub fn averages(&self) -> Vec<Average> {
        self.metrics
            .iter()
            .filter(|m| m.kind == MetricKind::Sum)
            .filter_map(|sum| {
                let field = sum.field.as_deref()?;
                let of_field = self
                    .metrics
                    .iter()
                    .find(|m| m.kind == MetricKind::Count && m.field.as_deref() == Some(field));
                let count = match of_field {
                    Some(count) => count.column.clone(),
                    None if sum.field_required
                        && self.metrics.iter().any(|m| m.column == "count") =>
                    {
                        "count".to_string()
                    }
                    None => return None,
                };
                Some(Average {
                    column: format!("avg_{field}"),
                    sum: sum.column.clone(),
                    count,
                })
            })
            .collect()
    }

    /// v2: sums of i64 fields are `numeric` (i128 in both layers), and the event-time field
    /// is part of the definition (it decides every record's bucket).
    fn compute_fingerprint(&self, schema: &EventSchema) -> String {
        let digest = Sha256::digest(self.canonical_text(schema).as_bytes());
        digest[..5].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Everything that affects the view's stored rows, as text: what the fingerprint hashes.
    fn canonical_text(&self, schema: &EventSchema) -> String {
        let mut canonical = String::from("braid-view-v2\n");
        let _ = writeln!(canonical, "event_time={}", schema.event_time_field().name);
        let _ = writeln!(canonical, "bucket={}", self.bucket.seconds());
        if let Some(filter) = &self.filter {
            let _ = writeln!(
                canonical,
                "filter={}:{:?}:{:?}",
                filter.field, filter.op, filter.values
            );
        }
        for (name, field_type) in self.group_by.iter().zip(&self.group_by_types) {
            let _ = writeln!(canonical, "group={name}:{}", field_type.name());
        }
        for metric in &self.metrics {
            let _ = write!(
                canonical,
                "metric={}:{}",
                metric.column,
                metric.field_type.map_or("", FieldType::name)
            );
            // Only decayed metrics have a half-life: other views keep their fingerprints.
            if let Some(half_life) = metric.half_life {
                let _ = write!(canonical, ":half_life={}", half_life.seconds());
            }
            if let Some(quantile) = metric.quantile {
                let _ = write!(
                    canonical,
                    ":quantile={}/{}",
                    quantile.precision, quantile.max_buckets
                );
            }
            if let Some(sample) = metric.sample {
                let _ = write!(
                    canonical,
                    ":sample={}/{}",
                    sample.k(),
                    sample.max_record_bytes()
                );
            }
            if let Some(sketch) = metric.sketch {
                let [log2m, regwidth, expthresh, sparseon] = sketch.arguments();
                let _ = write!(canonical, ":sketch={log2m}/{regwidth}");
                // Sketches stored FULL from the first value (expthresh 0, sparseon 0: Braid's
                // only form before the extension's default forms) keep their fingerprints;
                // other forms name theirs, as the extension will not union sketches whose
                // forms' parameters differ.
                if [expthresh, sparseon] != [0, 0] {
                    let _ = write!(canonical, "/{expthresh}/{sparseon}");
                }
            }
            canonical.push('\n');
        }
        canonical
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MetricKind::ALL` drives the tests of every kind (the plan's, the agreement proptest's,
    /// Spark = Polars): a kind missing from it would be tested nowhere. The match is exhaustive,
    /// so a new kind does not compile here until it is numbered, and then must be in `ALL`.
    #[test]
    fn all_lists_every_kind_once() {
        let number = |kind: MetricKind| match kind {
            MetricKind::Count => 0,
            MetricKind::Sum => 1,
            MetricKind::Min => 2,
            MetricKind::Max => 3,
            MetricKind::Decayed => 4,
            MetricKind::Distinct => 5,
            MetricKind::Quantile => 6,
            MetricKind::Sample => 7,
        };
        let mut numbers: Vec<usize> = MetricKind::ALL.iter().map(|k| number(*k)).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..=7).collect::<Vec<usize>>());
    }

    #[test]
    fn an_optional_field_is_averaged_only_over_the_records_that_have_it() {
        let text = r#"
[schema]
event_time = "ts"
fields = [
  { name = "ts", type = "timestamp" },
  { name = "kept", type = "i64" },
  { name = "maybe", type = "i64", required = false },
  { name = "other", type = "f64", required = false },
]
[[views]]
name = "v"
bucket = "1m"
metrics = ["count", "sum(kept)", "sum(maybe)", "count(maybe)", "sum(other)"]
"#;
        let config = crate::BraidConfig::load_from(Some(("t.toml", text)), []).unwrap();
        let view = &config.views[0];
        assert_eq!(
            view.averages(),
            vec![
                Average {
                    column: "avg_kept".into(),
                    sum: "sum_kept".into(),
                    count: "count".into()
                },
                Average {
                    column: "avg_maybe".into(),
                    sum: "sum_maybe".into(),
                    count: "count_maybe".into()
                },
            ],
            "no avg_other: dividing by every record would bias it"
        );
        let counted = view
            .metrics
            .iter()
            .find(|m| m.column == "count_maybe")
            .unwrap();
        assert_eq!(counted.kind, MetricKind::Count);
        assert_eq!(counted.field.as_deref(), Some("maybe"));
    }
    use crate::event_schema::FieldDef;

    fn schema() -> EventSchema {
        let field = |name: &str, field_type, required| FieldDef {
            name: name.into(),
            field_type,
            required,
            path: None,
        };
        EventSchema {
            fields: vec![
                field("ts", FieldType::Timestamp, true),
                field("kind", FieldType::String, true),
                field("country", FieldType::String, false),
                field("cents", FieldType::I64, false),
                field("score", FieldType::F64, false),
            ],
            event_time_index: 0,
            max_record_bytes: 1000,
            max_string_bytes: 512,
            event_time_min_micros: 0,
            event_time_max_micros: i64::MAX,
            wire: Default::default(),
        }
    }

    fn view(text: &str) -> Result<View, ViewError> {
        toml::from_str::<ViewConfig>(text)
            .unwrap()
            .validate(&schema())
    }

    const GOOD: &str = r#"
        name = "sales"
        filter = { field = "kind", op = "in", value = ["buy", "refund"] }
        group_by = ["country"]
        bucket = "1m"
        metrics = ["count", "sum(cents)", "min(cents)", "max(score)"]
    "#;

    #[test]
    fn a_good_view_validates_with_columns() {
        let v = view(GOOD).unwrap();
        let columns: Vec<_> = v.metrics.iter().map(|m| m.column.as_str()).collect();
        assert_eq!(columns, ["count", "sum_cents", "min_cents", "max_score"]);
        assert_eq!(v.group_by_indexes, [2]);
        assert_eq!(v.fingerprint.len(), 10);
        assert_eq!(v.bucket_start_micros(61_500_000), 60_000_000);
        assert_eq!(v.bucket_start_micros(-1), -60_000_000);
    }

    #[test]
    fn distinct_metrics_name_what_is_wrong_and_put_their_precision_in_the_fingerprint() {
        let with = |metric: &str| view(&GOOD.replace("\"max(score)\"]", &format!("{metric:?}]")));
        let default = with("distinct(country)").unwrap();
        let metric = &default.metrics[3];
        assert_eq!(metric.column, "distinct_country");
        assert_eq!(metric.sketch, Some(SketchParams::default()));
        // Arguments left out take the extension's defaults, as in hll_add_agg(h, 14).
        assert_eq!(
            with("distinct(country, 14)").unwrap().metrics[3].sketch,
            Some(SketchParams::new(14, 5).unwrap())
        );
        assert!(with("distinct(country, 4, 2, -1, 0)").is_ok());
        let precise = with("distinct(country, 14, 6)").unwrap();
        assert_eq!(
            precise.metrics[3].sketch,
            Some(SketchParams::new(14, 6).unwrap())
        );
        assert_ne!(
            default.fingerprint, precise.fingerprint,
            "another precision is another view"
        );
        // The extension's storage parameters: its defaults when left out.
        let spelled = with("distinct(country, 11, 5, -1, 1)").unwrap();
        assert_eq!(spelled.metrics[3].sketch, Some(SketchParams::default()));
        assert_eq!(spelled.fingerprint, default.fingerprint);
        let three = with("distinct(country, 11, 5, 64)").unwrap();
        assert_eq!(
            three.metrics[3].sketch,
            Some(SketchParams::default().with_storage(64, 1).unwrap())
        );
        assert_ne!(
            three.fingerprint, default.fingerprint,
            "other forms are another view"
        );
        // FULL from the first value (Braid's only form before) keeps the fingerprint it had:
        // its canonical text is the one `distinct(country)` had then.
        let full = with("distinct(country, 11, 5, 0, 0)").unwrap();
        let text = full.canonical_text(&schema());
        assert!(
            text.ends_with("metric=distinct_country:string:sketch=11/5\n"),
            "{text}"
        );
        let text = default.canonical_text(&schema());
        assert!(
            text.ends_with("metric=distinct_country:string:sketch=11/5/-1/1\n"),
            "{text}"
        );
        assert_ne!(full.fingerprint, default.fingerprint);
        assert_eq!(
            with("distinct( cents )").unwrap().metrics[3].column,
            "distinct_cents"
        );
        for (metric, expected) in [
            (
                "distinct(score)",
                "field `score` is f64; distinct counts take string and i64 fields",
            ),
            ("distinct(ts)", "field `ts` is timestamp"),
            ("distinct(nope)", "field `nope` is not in the schema"),
            ("distinct()", "write distinct(FIELD)"),
            (
                "distinct",
                "is not one of count, count(field), sum(field), min(field), max(field), distinct(field)",
            ),
            ("distinct(country, x, 5)", "write distinct(FIELD)"),
            ("distinct(country, 1e3)", "write distinct(FIELD)"),
            ("distinct(country, 11, )", "write distinct(FIELD)"),
            ("distinct(country, 3, 5)", "LOG2M 3 is outside 4..=17"),
            ("distinct(country, 300, 5)", "LOG2M 300 is outside 4..=17"),
            ("distinct(country, -1)", "LOG2M -1 is outside 4..=17"),
            (
                "distinct(country, 99999999999999999999)",
                "LOG2M 99999999999999999999 is out of range",
            ),
            (
                "distinct(country, 11, 5, -99999999999999999999)",
                "EXPTHRESH -99999999999999999999 is out of range",
            ),
            (
                "distinct(country, 4, 2)",
                "SPARSEON 1 cannot be used at LOG2M 4 and REGWIDTH 2",
            ),
            ("distinct(country, 11, 8)", "REGWIDTH 8 is outside 1..=7"),
            (
                "distinct(country, 11, 5, 3)",
                "EXPTHRESH 3 is not -1 (auto)",
            ),
            ("distinct(country, 11, 5, 16384)", "EXPTHRESH 16384 is not"),
            (
                "distinct(country, 11, 5, -1, 2)",
                "SPARSEON 2 is not 0 or 1",
            ),
            ("distinct(country, 11, 5, -1, x)", "write distinct(FIELD"),
            ("distinct(country, 11, 5, -1, 1, 0)", "write distinct(FIELD"),
        ] {
            let error = with(metric).unwrap_err().to_string();
            assert!(
                error.contains(expected) && error.contains("view `sales`"),
                "{metric}: {error}"
            );
        }
    }

    #[test]
    fn decayed_metrics_validate_with_their_half_life_in_the_fingerprint() {
        let decayed = GOOD.replace(
            "\"max(score)\"]",
            "\"max(score)\", \"decayed(count, 10m)\", \"decayed( sum(cents) , 1h)\"]",
        );
        let v = view(&decayed).unwrap();
        let last: Vec<_> = v.metrics[4..]
            .iter()
            .map(|m| {
                (
                    m.column.as_str(),
                    m.half_life.map(|h| h.seconds()),
                    m.field.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            last,
            [
                ("decayed_count", Some(600), None),
                ("decayed_sum_cents", Some(3600), Some("cents"))
            ]
        );
        assert_ne!(
            v.fingerprint,
            view(&decayed.replace("10m)", "20m)")).unwrap().fingerprint,
            "the half-life is part of the definition"
        );
        for (metric, complaint) in [
            ("decayed(count)", "write decayed(count, HALF_LIFE)"),
            ("decayed(count, soon)", "half-life"),
            ("decayed(count, 1s)", "more than 256 half-lives"),
            ("decayed(sum(score), 1m)", "decayed sums take i64 fields"),
            ("decayed(sum(nope), 1m)", "`nope` is not in the schema"),
            ("decayed(max(cents), 1m)", "write decayed(count, HALF_LIFE)"),
        ] {
            let error = view(
                &GOOD
                    .replace("\"max(score)\"]", &format!("\"{metric}\"]"))
                    .replace("\"1m\"", "\"1h\""),
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains(complaint), "{metric}: {error}");
        }
    }

    #[test]
    fn answer_columns_that_clash_or_overflow_postgresqls_names_are_refused() {
        let with = |fields: &[(&str, FieldType)], group_by: &str, metrics: &str| {
            let mut schema = schema();
            schema
                .fields
                .extend(fields.iter().map(|(name, field_type)| FieldDef {
                    name: (*name).into(),
                    field_type: *field_type,
                    required: false,
                    path: None,
                }));
            toml::from_str::<ViewConfig>(&format!(
                "name = \"v\"\ngroup_by = [{group_by}]\nbucket = \"1m\"\nmetrics = [{metrics}]"
            ))
            .unwrap()
            .validate(&schema)
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        // A group field named like a quantile level.
        let error = with(
            &[
                ("ms", FieldType::I64),
                ("quantile_ms_p50", FieldType::String),
            ],
            "\"quantile_ms_p50\"",
            "\"quantile(ms)\"",
        )
        .unwrap_err();
        assert!(
            error.contains("`quantile_ms_p50` is named twice"),
            "{error}"
        );
        // A field long enough that `quantile_<field>_p99` passes 63 bytes.
        let long = "d".repeat(50);
        let error = with(
            &[(&long, FieldType::I64)],
            "",
            &format!("\"quantile({long})\""),
        )
        .unwrap_err();
        assert!(
            error.contains("longer than PostgreSQL's 63-byte names"),
            "{error}"
        );
        // A distinct count's sketch column beside a field of that name.
        let error = with(
            &[
                ("user", FieldType::String),
                ("distinct_user_sketch", FieldType::String),
            ],
            "\"distinct_user_sketch\"",
            "\"distinct(user)\"",
        )
        .unwrap_err();
        assert!(
            error.contains("`distinct_user_sketch` is named twice"),
            "{error}"
        );
        assert!(
            with(
                &[("ms", FieldType::I64)],
                "\"country\"",
                "\"quantile(ms)\", \"sample(3)\""
            )
            .is_ok()
        );
    }

    #[test]
    fn a_record_weighs_two_to_the_half_lives_since_its_bucket_started() {
        let half_life = 600_000_000;
        assert_eq!(Metric::decay_weight(half_life, 5_000_000, 5_000_000), 1.0);
        assert_eq!(Metric::decay_weight(half_life, 605_000_000, 5_000_000), 2.0);
        assert!(
            (Metric::decay_weight(half_life, 305_000_000, 5_000_000) - 2f64.sqrt()).abs() < 1e-15
        );
    }

    #[test]
    fn fingerprint_changes_with_the_definition_only() {
        let a = view(GOOD).unwrap().fingerprint;
        assert_eq!(a, view(GOOD).unwrap().fingerprint);
        assert_ne!(
            a,
            view(&GOOD.replace("\"1m\"", "\"2m\"")).unwrap().fingerprint
        );
        assert_ne!(
            a,
            view(&GOOD.replace("\"refund\"", "\"return\""))
                .unwrap()
                .fingerprint
        );
        assert_ne!(
            a,
            view(&GOOD.replace("min(cents)", "max(cents)"))
                .unwrap()
                .fingerprint
        );
    }

    #[test]
    fn errors_name_the_view_and_the_field() {
        let cases = [
            (GOOD.replace("\"sales\"", "\"Sales\""), "the name must be"),
            (
                GOOD.replace("[\"country\"]", "[\"city\"]"),
                "group-by field `city` is not in the schema",
            ),
            (
                GOOD.replace("[\"country\"]", "[\"score\"]"),
                "group-by field `score` is f64",
            ),
            (
                GOOD.replace("[\"country\"]", "[\"country\", \"country\"]"),
                "listed twice",
            ),
            (
                GOOD.replace("\"1m\"", "\"1w\""),
                "bucket: `1w` is not a duration",
            ),
            (
                GOOD.replace("sum(cents)", "sum(kind)"),
                "field `kind` is string, which sum cannot use",
            ),
            (
                GOOD.replace("sum(cents)", "avg(cents)"),
                "avg is derived when reading",
            ),
            (
                GOOD.replace("sum(cents)", "median(cents)"),
                "is not one of count",
            ),
            (
                GOOD.replace("sum(cents)", "sum(nope)"),
                "metric field `nope` is not in the schema",
            ),
            (
                GOOD.replace("\"kind\", op", "\"kindx\", op"),
                "filter field `kindx` is not in the schema",
            ),
            (
                GOOD.replace("[\"buy\", \"refund\"]", "[1]"),
                "does not match field `kind` of type string",
            ),
            (
                GOOD.replace("op = \"in\"", "op = \"eq\""),
                "only op `in` takes an array",
            ),
            (
                GOOD.replace("op = \"in\"", "op = \"lt\"")
                    .replace("[\"buy\", \"refund\"]", "\"b\""),
                "cannot be compared",
            ),
            (
                GOOD.replace(
                    "[\"count\", \"sum(cents)\", \"min(cents)\", \"max(score)\"]",
                    "[]",
                ),
                "at least one metric",
            ),
        ];
        for (text, expected) in cases {
            let err = view(&text).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "expected `{expected}` in `{err}`"
            );
            assert!(err.to_string().starts_with("view `"), "{err}");
        }
    }

    #[test]
    fn filters_follow_sql_null_semantics() {
        let record = |kind: &str, cents: Option<i64>| Record {
            values: vec![
                Some(Value::Timestamp(0)),
                Some(Value::String(kind.into())),
                None,
                cents.map(Value::I64),
                None,
            ],
            event_time_micros: 0,
        };
        let v = view(GOOD).unwrap();
        assert!(v.accepts(&record("buy", None)));
        assert!(v.accepts(&record("refund", None)));
        assert!(!v.accepts(&record("view", None)));
        let gt = view(&GOOD.replace(
            "\"kind\", op = \"in\", value = [\"buy\", \"refund\"]",
            "\"cents\", op = \"gt\", value = 100",
        ))
        .unwrap();
        assert!(gt.accepts(&record("x", Some(101))));
        assert!(!gt.accepts(&record("x", Some(100))));
        assert!(!gt.accepts(&record("x", None)));
        let ne = view(&GOOD.replace(
            "\"kind\", op = \"in\", value = [\"buy\", \"refund\"]",
            "\"cents\", op = \"ne\", value = 5",
        ))
        .unwrap();
        assert!(ne.accepts(&record("x", Some(4))));
        assert!(!ne.accepts(&record("x", Some(5))));
        assert!(
            !ne.accepts(&record("x", None)),
            "an absent field never passes"
        );
    }
}
