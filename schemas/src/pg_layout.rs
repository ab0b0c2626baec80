//! PostgreSQL layouts derived from view definitions.
//!
//! Every view gets a speed table and a batch table in the `braid_internal` schema, named from the
//! view's name and fingerprint, so rows of a changed definition never mix with old ones, and
//! a merged SQL view `serving.<name>` for the API and BI tools. Identifiers come only from
//! validated configuration ([`crate::event_schema::is_identifier`]); values are always bound.

use crate::event_schema::FieldType;
use crate::plan::ViewPlan;
use crate::view::View;

/// The schema holding metadata, speed and batch tables.
pub const META_SCHEMA: &str = "braid_internal";
/// The schema holding the merged views read by the API and BI tools.
pub const SERVING_SCHEMA: &str = "serving";

/// The largest entry a PostgreSQL btree index takes on 8 kB pages (`BTMaxItemSize`).
pub const BTREE_ENTRY_LIMIT: usize = 2704;
/// The largest `schema.max_group_value_bytes`: one string group column with its bucket and
/// epoch must fit in [`BTREE_ENTRY_LIMIT`].
pub const MAX_INDEXABLE_STRING_BYTES: usize = 2600;

/// The largest key index entry a view's tables can need, in bytes: every string group value at
/// its limit with its length header, 8 bytes per other group column, the bucket and the epoch
/// (or run id), and the entry's header and null bitmap.
pub fn largest_key_entry_bytes(group_types: &[FieldType], max_string_bytes: usize) -> usize {
    const ENTRY_HEADER: usize = 16;
    const TEXT_HEADER: usize = 4;
    let groups: usize = group_types
        .iter()
        .map(|t| match t {
            FieldType::String => max_string_bytes + TEXT_HEADER,
            _ => 8,
        })
        .sum();
    ENTRY_HEADER + groups + 8 + 8
}

/// How partial values of one metric combine and are read — the PostgreSQL lowering of the
/// view's plan ([`crate::plan`]) for every reader and writer: the speed layer's upsert, the
/// serving SQL views and the API.
pub mod merge {
    use crate::plan::{ColumnType, MergeRule, MetricPlan, ReadRule, SketchType};
    use crate::view::{Average, MAX_DECAY_HALF_LIVES, Metric};

    /// The aggregate that merges the rows of `metric` into one and reads it, named as the
    /// column: counts and sums add (counts stay `bigint`; sums of i64 fields stay `numeric`),
    /// min and max combine. Decayed scores add once each row is decayed from its bucket's
    /// start to `now` (an SQL expression of type timestamptz: `now()` or a placeholder); see
    /// [`decay_factor`]. Sketches union and read as their estimate.
    pub fn aggregate(metric: &Metric, now: &str) -> String {
        let plan = MetricPlan::of(metric);
        let c = &metric.column;
        match plan.read {
            ReadRule::DecayedToNow { .. } => format!(
                "sum({} * {}) AS {c}",
                zero_below(c, DECAYED_READ_FLOOR),
                decay_factor(metric, now)
            ),
            ReadRule::Estimate(SketchType::Hll(_)) => format!("{} AS {c}", distinct_count(c)),
            // The merged sketch: its quantiles are read by `quantile`, one column per level.
            ReadRule::Estimate(SketchType::Quantile(_)) => {
                format!("serving.quantile_union_agg({c}) AS {c}")
            }
            // The merged sample, its records as JSON.
            ReadRule::Estimate(SketchType::Sample(_)) => {
                format!("serving.sample_union_agg({c}) AS {c}")
            }
            ReadRule::Plain => format!("{} AS {c}", merged(&plan, c)),
        }
    }

    /// The `q`-quantile (`q` a `double precision` expression, e.g. a placeholder) of a quantile
    /// metric's merged sketch, as `column`. PostgreSQL computes one union per metric however
    /// many levels read it (identical aggregate calls share their state).
    pub fn quantile(metric: &Metric, q: &str, column: &str) -> String {
        format!(
            "serving.quantile(serving.quantile_union_agg({}), ({q})::double precision) AS {column}",
            metric.column
        )
    }

    /// Whether `metric` is a sample, answered only where a reader asks for samples (its
    /// records can be large: GET /v1/views/{view}/sample, `serving.<view>`).
    pub fn is_sample(metric: &Metric) -> bool {
        matches!(
            MetricPlan::of(metric).read,
            ReadRule::Estimate(SketchType::Sample(_))
        )
    }

    /// Whether `metric` answers quantiles (one column per level asked, [`quantile`]).
    pub fn answers_quantiles(metric: &Metric) -> bool {
        matches!(
            MetricPlan::of(metric).read,
            ReadRule::Estimate(SketchType::Quantile(_))
        )
    }

    /// The rows of `column` merged by the plan's rule, as stored.
    fn merged(plan: &MetricPlan, column: &str) -> String {
        match plan.merge() {
            // sum(bigint) is numeric: counts stay bigint.
            MergeRule::Add if plan.stored == ColumnType::BigInt => {
                format!("sum({column})::bigint")
            }
            MergeRule::Add => format!("sum({column})"),
            MergeRule::Least => format!("min({column})"),
            MergeRule::Greatest => format!("max({column})"),
            MergeRule::Union(sketch) => sketch_union(sketch, column),
        }
    }

    /// The union of a column's sketches (strict: rows without a sketch are skipped; NULL
    /// when none has one).
    fn sketch_union(sketch: SketchType, column: &str) -> String {
        match sketch {
            SketchType::Hll(_) => format!("hll_union_agg({column})"),
            SketchType::Quantile(_) => format!("serving.quantile_union_agg({column})"),
            SketchType::Sample(_) => format!("serving.sample_union_agg({column})"),
        }
    }

    /// The merged sketch of a metric whose answer is an estimate read from it (distinct
    /// counts, quantiles; `None` for the others, and for samples, whose answer is the merged
    /// sample itself), so that BI tools can roll the estimate up exactly over any set of rows.
    pub fn merged_sketch(metric: &Metric) -> Option<String> {
        match MetricPlan::of(metric).merge() {
            MergeRule::Union(SketchType::Sample(_)) => None,
            MergeRule::Union(sketch) => Some(sketch_union(sketch, &metric.column)),
            MergeRule::Add | MergeRule::Least | MergeRule::Greatest => None,
        }
    }

    /// The factor that decays a row of a decayed metric from its `bucket_start` to `now`:
    /// `2^((bucket_start − now) / half_life)`, at most 1 (a bucket after `now`, from events
    /// stamped in the future, counts as of its start) and at least 2^-600
    /// ([`MAX_DECAY_HALF_LIVES`]: PostgreSQL raises an error on underflow).
    pub fn decay_factor(metric: &Metric, now: &str) -> String {
        let half_life = match MetricPlan::of(metric).read {
            ReadRule::DecayedToNow { half_life } => half_life.seconds(),
            ReadRule::Plain | ReadRule::Estimate(_) => 1,
        };
        format!(
            "power(2::double precision, greatest(-{MAX_DECAY_HALF_LIVES}::double precision, least(0::double precision,              extract(epoch FROM (bucket_start - {now}))::double precision / {half_life})))"
        )
    }

    /// Below this magnitude a stored decayed score reads as 0 before it is decayed: times the
    /// smallest factor (2^-600 ≈ 2.4e-181) it stays above 1e-281, so the product never
    /// underflows (PostgreSQL raises an error where a product of non-zero floats rounds to
    /// zero). The layers never store such a score: a non-zero one is a sum of terms w · 2^x with
    /// w a non-zero integer and x ≥ 0, so it is at least 2^-52; the rule guards rows stored by
    /// older versions and keeps every reader of every stored value working.
    pub const DECAYED_READ_FLOOR: &str = "1e-100";

    /// Below this magnitude a sum reads as 0 before it is divided by its count (at most 2^63), so
    /// the quotient is at least 1e-319 and never underflows. Validation refuses f64 values
    /// below 1e-200 ([`crate::record::F64_MAGNITUDE_FLOOR`]), so a stored sum is 0 or at least
    /// 2^-717: the rule only guards rows stored before that rule existed.
    pub const AVERAGE_READ_FLOOR: &str = "1e-300";

    /// [`AVERAGE_READ_FLOOR`] as a number, for readers that divide themselves
    /// (`merged_read`'s averages); a test holds the two equal.
    pub const AVERAGE_READ_FLOOR_VALUE: f64 = 1e-300;

    /// `expression` (double precision), or 0 where its magnitude is below `floor`.
    pub fn zero_below(expression: &str, floor: &str) -> String {
        format!(
            "(CASE WHEN abs({expression}) < {floor}::double precision THEN 0::double precision ELSE {expression} END)"
        )
    }

    /// The estimated distinct count of the union of a column's sketches; 0 when no record had
    /// the field. `hll_union_agg` unions sketches exactly (the larger of each register).
    pub fn distinct_count(column: &str) -> String {
        format!("coalesce(hll_cardinality(hll_union_agg({column})), 0)::double precision")
    }

    /// The type of a metric's merged value: what [`aggregate`] answers ([`MetricPlan::answer`];
    /// `stored` is the stored column's type).
    pub fn answer_type(metric: &Metric, stored: &'static str) -> &'static str {
        let plan = MetricPlan::of(metric);
        match plan.read {
            ReadRule::Estimate(_) => plan.answer().pg_type(),
            ReadRule::Plain | ReadRule::DecayedToNow { .. } => stored,
        }
    }

    /// The upsert assignment that folds a new partial value (`EXCLUDED`) into a stored row `t`.
    pub fn upsert(metric: &Metric) -> String {
        fold_into_stored(metric, &format!("EXCLUDED.{}", metric.column))
    }

    /// The assignment that folds `incoming` (an SQL expression of the column's type) into a
    /// stored row `t`, by the metric's merge rule.
    pub fn fold_into_stored(metric: &Metric, incoming: &str) -> String {
        let c = &metric.column;
        match MetricPlan::of(metric).merge() {
            MergeRule::Add => format!("{c} = t.{c} + {incoming}"),
            // The unions are strict: a side without sketch (no record had the field) keeps the
            // other.
            MergeRule::Union(sketch) => {
                let union = match sketch {
                    SketchType::Hll(_) => "hll_union",
                    SketchType::Quantile(_) => "serving.quantile_union",
                    SketchType::Sample(_) => "serving.sample_union",
                };
                format!(
                    "{c} = CASE WHEN t.{c} IS NULL THEN {incoming} WHEN {incoming} IS NULL THEN t.{c} \
                     ELSE {union}(t.{c}, {incoming}) END"
                )
            }
            MergeRule::Least => format!("{c} = LEAST(t.{c}, {incoming})"),
            MergeRule::Greatest => format!("{c} = GREATEST(t.{c}, {incoming})"),
        }
    }

    /// Whether the speed layer merges a stored row's value of `metric` with its own in Rust
    /// before writing it, rather than in SQL: the quantile and sample unions, which PostgreSQL
    /// runs in PL/pgSQL at 120-135 µs a row (25 times an insert; docs/benchmarks.md, "Round
    /// three"). `hll_union` is the extension's C function and stays in SQL.
    pub fn merged_by_the_writer(metric: &Metric) -> bool {
        matches!(
            MetricPlan::of(metric).merge(),
            MergeRule::Union(SketchType::Quantile(_) | SketchType::Sample(_))
        )
    }

    /// Two partial values of `metric` (SQL expressions; either is NULL where its side has no
    /// row) merged into one, as [`aggregate`] merges rows: for metrics read as stored whose
    /// values merge pairwise (counts, sums, minima and maxima). `None` for decayed scores and
    /// sketches, which are merged by [`aggregate`] only.
    pub fn combine(metric: &Metric, a: &str, b: &str) -> Option<String> {
        let plan = MetricPlan::of(metric);
        match plan.read {
            ReadRule::Plain => {}
            ReadRule::DecayedToNow { .. } | ReadRule::Estimate(_) => return None,
        }
        match plan.merge() {
            MergeRule::Add => Some(format!("coalesce({a} + {b}, {a}, {b})")),
            MergeRule::Least => Some(format!("LEAST({a}, {b})")),
            MergeRule::Greatest => Some(format!("GREATEST({a}, {b})")),
            MergeRule::Union(_) => None,
        }
    }

    /// The average of one merged row: its sum over its count of the records that have the
    /// field, null when there are none.
    pub fn row_average(average: &Average) -> String {
        format!(
            "{sum} / NULLIF({count}, 0) AS {column}",
            sum = zero_below(
                &format!("{}::double precision", average.sum),
                AVERAGE_READ_FLOOR
            ),
            count = average.count,
            column = average.column,
        )
    }

    /// The merged average: the merged sum over the merged count of the records that have the
    /// field, null when there are none.
    pub fn average(average: &Average) -> String {
        format!(
            "{sum} / NULLIF(sum({count}), 0) AS {column}",
            sum = zero_below(
                &format!("sum({})::double precision", average.sum),
                AVERAGE_READ_FLOOR
            ),
            count = average.count,
            column = average.column,
        )
    }
}

/// The PostgreSQL type of a field.
pub fn pg_type(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String => "text",
        FieldType::I64 => "bigint",
        FieldType::F64 => "double precision",
        FieldType::Bool => "boolean",
        FieldType::Timestamp => "timestamptz",
    }
}

/// A column of a derived table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column name (a validated identifier).
    pub name: String,
    /// The PostgreSQL type.
    pub pg_type: &'static str,
}

/// The tables and views of one view definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewLayout {
    /// `braid_internal.speed_<name>_<fingerprint>`: aggregate deltas keyed by group, bucket and epoch.
    pub speed_table: String,
    /// `braid_internal.batch_<name>_<fingerprint>`: batch rows keyed by run id, group and bucket.
    pub batch_table: String,
    /// `serving.<name>`: the merged rows.
    pub serving_view: String,
    /// The group-by columns.
    pub group_columns: Vec<Column>,
    /// The metric columns.
    pub metric_columns: Vec<Column>,
}

impl ViewLayout {
    /// Derives the layout of a validated view.
    pub fn of(view: &View) -> Self {
        let group_columns = view
            .group_by
            .iter()
            .zip(&view.group_by_types)
            .map(|(name, field_type)| Column {
                name: name.clone(),
                pg_type: pg_type(*field_type),
            })
            .collect();
        let metric_columns = ViewPlan::of(view)
            .metrics
            .into_iter()
            .map(|m| Column {
                pg_type: m.stored.pg_type(),
                name: m.column,
            })
            .collect();
        Self {
            speed_table: format!("{META_SCHEMA}.speed_{}_{}", view.name, view.fingerprint),
            batch_table: format!("{META_SCHEMA}.batch_{}_{}", view.name, view.fingerprint),
            serving_view: format!("{SERVING_SCHEMA}.{}", view.name),
            group_columns,
            metric_columns,
        }
    }

    /// The group-by column names.
    pub fn group_names(&self) -> Vec<&str> {
        self.group_columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The metric column names.
    pub fn metric_names(&self) -> Vec<&str> {
        self.metric_columns
            .iter()
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The columns a merge reads from both the speed and the batch table, comma-separated:
    /// groups, `bucket_start`, metrics.
    pub fn stored_columns(&self) -> String {
        self.group_names()
            .into_iter()
            .chain(["bucket_start"])
            .chain(self.metric_names())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn column_definitions(&self) -> String {
        self.group_columns
            .iter()
            .chain(&self.metric_columns)
            .map(|c| format!("{} {}", c.name, c.pg_type))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn group_list(&self) -> String {
        self.group_columns
            .iter()
            .map(|c| format!("{}, ", c.name))
            .collect()
    }

    /// DDL of the speed table. Group columns may be NULL (absent optional fields), so the key
    /// is a unique constraint with NULLS NOT DISTINCT (PostgreSQL 15 or later).
    pub fn create_speed_table_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (epoch bigint NOT NULL, bucket_start timestamptz NOT NULL, {columns}, \
             UNIQUE NULLS NOT DISTINCT ({groups}bucket_start, epoch))",
            table = self.speed_table,
            columns = self.column_definitions(),
            groups = self.group_list(),
        )
    }

    /// DDL of the batch table.
    pub fn create_batch_table_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (run_id bigint NOT NULL, bucket_start timestamptz NOT NULL, {columns}); \
             CREATE INDEX IF NOT EXISTS {index} ON {table} (run_id, {groups}bucket_start)",
            table = self.batch_table,
            index = self
                .batch_table
                .trim_start_matches("braid_internal.")
                .to_string()
                + "_key",
            columns = self.column_definitions(),
            groups = self.group_list(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_schema::{EventSchema, FieldDef};
    use crate::view::ViewConfig;

    #[test]
    fn the_average_floor_is_one_value_in_sql_and_in_rust() {
        assert_eq!(
            merge::AVERAGE_READ_FLOOR.parse::<f64>().unwrap(),
            merge::AVERAGE_READ_FLOOR_VALUE
        );
    }

    #[test]
    fn layout_names_and_types_follow_the_view() {
        let schema = EventSchema {
            fields: vec![
                FieldDef {
                    name: "ts".into(),
                    field_type: FieldType::Timestamp,
                    required: true,
                    path: None,
                },
                FieldDef {
                    name: "country".into(),
                    field_type: FieldType::String,
                    required: false,
                    path: None,
                },
                FieldDef {
                    name: "cents".into(),
                    field_type: FieldType::I64,
                    required: false,
                    path: None,
                },
                FieldDef {
                    name: "score".into(),
                    field_type: FieldType::F64,
                    required: false,
                    path: None,
                },
            ],
            event_time_index: 0,
            max_record_bytes: 10,
            max_string_bytes: 16,
            event_time_min_micros: 0,
            event_time_max_micros: 1,
            wire: Default::default(),
        };
        let view = ViewConfig {
            name: "sales".into(),
            filter: None,
            group_by: vec!["country".into()],
            bucket: "1m".into(),
            metrics: vec![
                "count".into(),
                "sum(cents)".into(),
                "max(score)".into(),
                "min(ts)".into(),
            ],
        }
        .validate(&schema)
        .unwrap();
        let layout = ViewLayout::of(&view);
        assert_eq!(
            layout.speed_table,
            format!("braid_internal.speed_sales_{}", view.fingerprint)
        );
        assert_eq!(layout.serving_view, "serving.sales");
        let types: Vec<_> = layout
            .metric_columns
            .iter()
            .map(|c| (c.name.as_str(), c.pg_type))
            .collect();
        assert_eq!(
            types,
            [
                ("count", "bigint"),
                ("sum_cents", "numeric"),
                ("max_score", "double precision"),
                ("min_ts", "timestamptz")
            ]
        );
        let ddl = layout.create_speed_table_sql();
        assert!(ddl.contains("country text, count bigint"), "{ddl}");
        assert!(
            ddl.ends_with("UNIQUE NULLS NOT DISTINCT (country, bucket_start, epoch))"),
            "{ddl}"
        );
    }
}
