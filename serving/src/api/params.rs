//! Query parameters: the table that both the parser and the OpenAPI document are built from,
//! and their validation against a view. Every error names the parameter.

use chrono::{DateTime, Utc};
use merged_read::{Filter, FilterValues, OrderTerm};
use schemas::duration::HumanDuration;
use schemas::event_schema::FieldType;
use schemas::pg_layout::merge;
use schemas::quantile::QuantileLevel;
use schemas::view::View;

use super::error::ApiError;
use super::request_input::query_pairs;

/// The endpoints that take view query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// GET /v1/views/{view}: merged rows per key and time bucket.
    Series,
    /// GET /v1/views/{view}/rolling: totals per key over a window ending now.
    Rolling,
    /// GET /v1/views/{view}/top: the top keys by a metric over a window ending now.
    Top,
    /// GET /v1/views/{view}/sample: the merged sample of the rows in a range.
    Sample,
}

/// One query parameter, as documented.
#[derive(Debug)]
pub struct ParamSpec {
    /// Its name.
    pub name: &'static str,
    /// The endpoints that accept it.
    pub endpoints: &'static [Endpoint],
    /// The endpoints that require it.
    pub required_on: &'static [Endpoint],
    /// OpenAPI type and format.
    pub schema: (&'static str, Option<&'static str>),
    /// What it does.
    pub description: &'static str,
    /// The server's limit it is held to, which /openapi.json states.
    pub bound: Bound,
}

/// The server's limit a parameter is held to ([`Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// None.
    Unbounded,
    /// A count from [`COUNT_MIN`] to [`Limits::max_limit`] ([`Params::count`]).
    Count,
    /// A duration of at most [`Limits::max_range_seconds`] ([`Params::bucket_multiple`]).
    Span,
    /// The start of a range of at most [`Limits::max_range_seconds`].
    RangeStart,
}

use Endpoint::{Rolling, Sample, Series, Top};

/// Every query parameter of the view endpoints. `filter.<field>` parameters come in addition,
/// one per group field of the view.
pub const PARAMETERS: &[ParamSpec] = &[
    ParamSpec {
        name: "from",
        endpoints: &[Series, Sample],
        required_on: &[],
        schema: ("string", Some("date-time")),
        description: "Start of the range (RFC 3339, inclusive), rounded down to the granularity. Default: 24 hours before `to`.",
        bound: Bound::RangeStart,
    },
    ParamSpec {
        name: "to",
        endpoints: &[Series, Sample],
        required_on: &[],
        schema: ("string", Some("date-time")),
        description: "End of the range (RFC 3339, exclusive), rounded up to the granularity. Default: now.",
        bound: Bound::Unbounded,
    },
    ParamSpec {
        name: "granularity",
        endpoints: &[Series],
        required_on: &[],
        schema: ("string", None),
        description: "Bucket width of the answer, e.g. `1m`, `1h`: the view's bucket (the default) or a multiple of it; buckets are rolled up exactly.",
        bound: Bound::Span,
    },
    ParamSpec {
        name: "window",
        endpoints: &[Rolling, Top],
        required_on: &[Rolling, Top],
        schema: ("string", None),
        description: "Length of the window ending now, e.g. `5m`: a multiple of the view's bucket. It ends at the end of the current bucket.",
        bound: Bound::Span,
    },
    ParamSpec {
        name: "group_by",
        endpoints: &[Series, Rolling, Top],
        required_on: &[],
        schema: ("string", None),
        description: "Comma-separated subset of the view's group fields to keep; the others are summed over. Default: all of them. Empty: one total.",
        bound: Bound::Unbounded,
    },
    ParamSpec {
        name: "order",
        endpoints: &[Series, Rolling],
        required_on: &[],
        schema: ("string", None),
        description: "Comma-separated output columns, each optionally followed by `:asc` or `:desc`, e.g. `count:desc`. Default: group fields, then bucket_start.",
        bound: Bound::Unbounded,
    },
    ParamSpec {
        name: "limit",
        endpoints: &[Series, Rolling],
        required_on: &[],
        schema: ("integer", None),
        description: "Most rows to return (at most serving.max_limit, the default). `truncated` says when more matched.",
        bound: Bound::Count,
    },
    ParamSpec {
        name: "metric",
        endpoints: &[Top],
        required_on: &[Top],
        schema: ("string", None),
        description: "The metric column to rank keys by, e.g. `count`, `sum_price_cents`, `distinct_user_id` (an estimate from merged sketches) or `decayed_count` (decayed to the request's time, given in `decayed_to`).",
        bound: Bound::Unbounded,
    },
    ParamSpec {
        name: "at",
        endpoints: &[Series, Rolling, Top],
        required_on: &[],
        schema: ("string", Some("date-time")),
        description: "The time decayed metrics (`decayed_…`) are decayed to (RFC 3339), e.g. to compare trends at two moments. Default: now. The answer says it in `decayed_to`.",
        bound: Bound::Unbounded,
    },
    ParamSpec {
        name: "parts",
        endpoints: &[Series],
        required_on: &[],
        schema: ("boolean", None),
        description: "`true` adds to each row `batch_part` and `speed_part`: whether the active batch run and the speed layer contributed rows to it (the console shades its chart by them). Default: false.",
        bound: Bound::Unbounded,
    },
    ParamSpec {
        name: "q",
        endpoints: &[Series, Rolling, Top],
        required_on: &[],
        schema: ("string", None),
        description: "Comma-separated quantile levels each quantile metric answers, one column each: `q=0.5,0.99` gives `quantile_latency_ms_p50` and `quantile_latency_ms_p99` (decimals from 0 to 1, at most 6 digits after the point, at most 20 levels). Default: 0.5,0.9,0.99. Each is within the metric's relative accuracy of the exact quantile (the value at rank ⌊q·(n−1)⌋ of the n values), except for values of a magnitude below 2^-1024 (at 1 %; 2^-16 at the finest accuracy) of the largest of their sign in the rollup, which read as that bound. A level named by `order` or `metric` is answered too.",
        bound: Bound::Unbounded,
    },
    ParamSpec {
        name: "k",
        endpoints: &[Top],
        required_on: &[],
        schema: ("integer", None),
        description: "How many keys to return (default 10, at most serving.max_limit).",
        bound: Bound::Count,
    },
];

/// The most quantile levels one request asks for (`q`).
pub const MAX_LEVELS: usize = 20;

/// The smallest count (`limit`, `k`) taken; the largest is [`Limits::max_limit`].
pub const COUNT_MIN: i64 = 1;

/// The prefix of filter parameters: `filter.country=DE&filter.country=FR`.
pub const FILTER_PREFIX: &str = "filter.";

/// Server-side caps on what a query may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest `limit` or `k`.
    pub max_limit: u32,
    /// The widest range or window, in seconds.
    pub max_range_seconds: i64,
}

/// The raw parameters of one request, consumed as they are validated.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a query string and refuses parameters `endpoint` does not know, or repeated ones.
    pub fn parse(raw: Option<&str>, endpoint: Endpoint, view: &View) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = query_pairs(raw)?
            .into_iter()
            .map(|pair| (pair.name, pair.value))
            .collect();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if let Some(field) = name.strip_prefix(FILTER_PREFIX) {
                let served = served_names(view);
                if !served.iter().any(|g| g == field) {
                    return Err(ApiError::bad(
                        name,
                        format!(
                            "`{field}` is not a group field or attribute of view `{}`; filters apply to {}",
                            view.name,
                            list_or_none(&served)
                        ),
                    ));
                }
                if view.served_type(served.iter().position(|g| g == field).expect("just found"))
                    == FieldType::F64
                {
                    return Err(ApiError::bad(
                        name,
                        format!(
                            "`{field}` is an f64 attribute; answers group by it but do not filter on it"
                        ),
                    ));
                }
                continue;
            }
            let Some(spec) = PARAMETERS.iter().find(|p| p.name == name) else {
                return Err(ApiError::bad(
                    name,
                    format!(
                        "unknown parameter `{name}`; this endpoint takes {} and filter.<group field>",
                        known(endpoint).join(", ")
                    ),
                ));
            };
            if !spec.endpoints.contains(&endpoint) {
                return Err(ApiError::bad(
                    name,
                    format!(
                        "`{name}` does not apply to this endpoint; it takes {}",
                        known(endpoint).join(", ")
                    ),
                ));
            }
            if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::bad(name, format!("`{name}` is given twice")));
            }
        }
        if let Some(missing) = PARAMETERS
            .iter()
            .find(|p| p.required_on.contains(&endpoint) && !pairs.iter().any(|(k, _)| k == p.name))
        {
            return Err(ApiError::bad(
                missing.name,
                format!("`{}` is required: {}", missing.name, missing.description),
            ));
        }
        Ok(Self { pairs })
    }

    /// The value of a single-valued parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A `true`/`false` parameter; absent is false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::bad(
                name,
                format!("`{other}` is not `true` or `false`"),
            )),
        }
    }

    /// `from`/`to` style timestamp.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get(name)
            .map(|text| {
                DateTime::parse_from_rfc3339(text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError::bad(
                            name,
                            format!(
                                "`{text}` is not an RFC 3339 time ({e}); e.g. 2026-11-25T10:00:00Z"
                            ),
                        )
                    })
            })
            .transpose()
    }

    /// A duration that must be a positive multiple of the view's bucket and within the cap.
    pub fn bucket_multiple(
        &self,
        name: &str,
        view: &View,
        limits: &Limits,
    ) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let seconds = HumanDuration::parse(text)
            .map_err(|e| ApiError::bad(name, format!("`{text}`: {e}")))?
            .seconds();
        let bucket = view.bucket.seconds();
        if seconds % bucket != 0 {
            return Err(ApiError::bad(
                name,
                format!(
                    "`{text}` is not a multiple of view `{}`'s bucket {}",
                    view.name, view.bucket
                ),
            ));
        }
        if seconds > limits.max_range_seconds {
            return Err(ApiError::bad(
                name,
                format!(
                    "`{text}` is longer than the server allows ({} days, serving.max_range_days)",
                    limits.max_range_seconds / 86_400
                ),
            ));
        }
        Ok(Some(seconds))
    }

    /// A positive integer no larger than the cap.
    pub fn count(&self, name: &str, default: i64, limits: &Limits) -> Result<i64, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        let value: i64 = text
            .parse()
            .map_err(|_| ApiError::bad(name, format!("`{text}` is not a whole number")))?;
        if value < COUNT_MIN || value > i64::from(limits.max_limit) {
            return Err(ApiError::bad(
                name,
                format!(
                    "{value} is out of range: {COUNT_MIN} to {} (serving.max_limit)",
                    limits.max_limit
                ),
            ));
        }
        Ok(value)
    }

    /// The quantile levels of `q` (the defaults when absent), and any other level a column of
    /// `order` or `metric` names (`order=quantile_latency_ms_p95:desc` answers p95 too);
    /// refused for a view without a quantile metric, past [`MAX_LEVELS`] levels or with a level
    /// twice.
    pub fn quantiles(&self, view: &View) -> Result<Vec<QuantileLevel>, ApiError> {
        let mut levels = self.asked_quantiles(view)?;
        let named = self
            .get("order")
            .unwrap_or_default()
            .split(',')
            .map(|term| term.split(':').next().unwrap_or_default())
            .chain(self.get("metric"));
        for column in named {
            if let Some(level) = schemas::alert::metric_levels(view, column).pop()
                && !levels.iter().any(|l| l.suffix() == level.suffix())
            {
                levels.push(level);
            }
        }
        Ok(levels)
    }

    /// The levels of `q`, or the defaults.
    fn asked_quantiles(&self, view: &View) -> Result<Vec<QuantileLevel>, ApiError> {
        let Some(text) = self.get("q") else {
            return Ok(QuantileLevel::defaults());
        };
        if !view.metrics.iter().any(merge::answers_quantiles) {
            return Err(ApiError::bad(
                "q",
                format!("view `{}` has no quantile metric", view.name),
            ));
        }
        let mut levels: Vec<QuantileLevel> = Vec::new();
        for part in text.split(',') {
            let level =
                QuantileLevel::parse(part).map_err(|e| ApiError::bad("q", e.to_string()))?;
            if levels.iter().any(|l| l.suffix() == level.suffix()) {
                return Err(ApiError::bad("q", format!("level {part} is given twice")));
            }
            levels.push(level);
        }
        if levels.len() > MAX_LEVELS {
            return Err(ApiError::bad(
                "q",
                format!(
                    "{} levels: at most {MAX_LEVELS} are answered at once",
                    levels.len()
                ),
            ));
        }
        Ok(levels)
    }

    /// The kept group fields.
    pub fn group_by(&self, view: &View) -> Result<Vec<usize>, ApiError> {
        let Some(text) = self.get("group_by") else {
            return Ok((0..view.group_by.len()).collect());
        };
        let mut kept = Vec::new();
        let served = served_names(view);
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let index = served.iter().position(|g| g == name).ok_or_else(|| {
                ApiError::bad(
                    "group_by",
                    format!(
                        "`{name}` is not a group field or attribute of view `{}`; it has {}",
                        view.name,
                        list_or_none(&served)
                    ),
                )
            })?;
            if kept.contains(&index) {
                return Err(ApiError::bad(
                    "group_by",
                    format!("`{name}` is listed twice"),
                ));
            }
            kept.push(index);
        }
        Ok(kept)
    }

    /// The filters, typed like their fields.
    pub fn filters(&self, view: &View) -> Result<Vec<Filter>, ApiError> {
        let mut filters: Vec<Filter> = Vec::new();
        for (name, text) in &self.pairs {
            let Some(field) = name.strip_prefix(FILTER_PREFIX) else {
                continue;
            };
            let index = view
                .served_names()
                .iter()
                .position(|g| *g == field)
                .expect("checked by parse");
            let bad = |expected: &str| {
                ApiError::bad(
                    name,
                    format!("`{text}` is not {expected}: `{field}` is {expected}"),
                )
            };
            let entry = match filters.iter_mut().find(|f| f.field == index) {
                Some(filter) => &mut filter.values,
                None => {
                    let empty = match view.served_type(index) {
                        FieldType::I64 => FilterValues::Int(Vec::new()),
                        FieldType::Bool => FilterValues::Bool(Vec::new()),
                        _ => FilterValues::Text(Vec::new()),
                    };
                    filters.push(Filter {
                        field: index,
                        values: empty,
                    });
                    &mut filters.last_mut().expect("just pushed").values
                }
            };
            match entry {
                FilterValues::Text(values) => values.push(text.clone()),
                FilterValues::Int(values) => {
                    values.push(text.parse().map_err(|_| bad("an integer"))?)
                }
                FilterValues::Bool(values) => {
                    values.push(text.parse().map_err(|_| bad("`true` or `false`"))?)
                }
            }
        }
        Ok(filters)
    }

    /// The ordering, checked against the output columns.
    pub fn order(
        &self,
        columns: &[String],
        default: Vec<OrderTerm>,
    ) -> Result<Vec<OrderTerm>, ApiError> {
        let Some(text) = self.get("order") else {
            return Ok(default);
        };
        let mut order = Vec::new();
        for item in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let (column, direction) = item.split_once(':').unwrap_or((item, "asc"));
            let descending = match direction {
                "asc" => false,
                "desc" => true,
                other => {
                    return Err(ApiError::bad(
                        "order",
                        format!("direction `{other}` of `{column}` must be `asc` or `desc`"),
                    ));
                }
            };
            if !columns.iter().any(|c| c == column) {
                return Err(ApiError::bad(
                    "order",
                    format!(
                        "`{column}` is not an output column; these are {}",
                        columns.join(", ")
                    ),
                ));
            }
            order.push(OrderTerm {
                column: column.to_string(),
                descending,
            });
        }
        Ok(order)
    }
}

/// The names of the parameters `endpoint` takes.
fn known(endpoint: Endpoint) -> Vec<&'static str> {
    PARAMETERS
        .iter()
        .filter(|p| p.endpoints.contains(&endpoint))
        .map(|p| p.name)
        .collect()
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none (the view has no group fields)".into()
    } else {
        names.join(", ")
    }
}

/// The group fields and attributes of `view`, owned (for messages).
fn served_names(view: &View) -> Vec<String> {
    view.served_names()
        .into_iter()
        .map(str::to_string)
        .collect()
}
