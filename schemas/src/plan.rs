//! One plan per view: what each metric stores, how a record folds into it, how two partial
//! values merge, how a merged value is read and what an answer's type is — stated once, from a
//! validated [`View`], and lowered by every backend (the speed layer's in-memory fold, the
//! Polars batch, the Spark SQL generator, the PostgreSQL layout, upsert and merged reads).
//!
//! [`MetricPlan::of`] is the one place that maps a [`MetricKind`] to its rules. Backends match
//! on the plan's own small enums ([`Fold`], [`MergeRule`], [`ReadRule`], [`ColumnType`],
//! [`SketchType`]), never on the kind, so a new kind that reuses existing rules needs no
//! backend change, and a genuinely new rule (a new sketch type, say) makes the compiler point at
//! exactly the lowerings that must learn it.
//!
//! The shape admits the kinds on the roadmap: a quantile sketch or a sample(K) reservoir is a
//! new [`SketchType`] (stored as its own column type, folded per record, merged by its own
//! union — for a reservoir, keep the K lowest priorities — and read by its own estimate);
//! HLL storage forms (EXPLICIT/SPARSE/FULL) are parameters of [`SketchType::Hll`].

use crate::duration::HumanDuration;
use crate::event_schema::FieldType;
use crate::sketch::SketchParams;
use crate::view::{Average, Metric, MetricKind, View};

/// The plan of a view: one [`MetricPlan`] per metric, in declaration order, and the averages
/// it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewPlan {
    /// The metrics' plans, in the view's metric order.
    pub metrics: Vec<MetricPlan>,
    /// The averages read from pairs of the metrics (sum / count).
    pub averages: Vec<Average>,
}

impl ViewPlan {
    /// The plan of a validated view.
    pub fn of(view: &View) -> Self {
        let metrics: Vec<MetricPlan> = view.metrics.iter().map(MetricPlan::of).collect();
        Self {
            metrics,
            averages: view.averages(),
        }
    }

    /// Whether any metric folds into a sketch (the batch folds those apart).
    pub fn has_sketches(&self) -> bool {
        self.metrics
            .iter()
            .any(|m| matches!(m.fold, Fold::Sketch(_)))
    }
}

/// The plan of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPlan {
    /// The stored column's name (a validated identifier), also the answer's column.
    pub column: String,
    /// Which records contribute, and what they contribute from.
    pub input: Input,
    /// How one record folds into the partial value of its group and bucket.
    pub fold: Fold,
    /// How a merged value is read.
    pub read: ReadRule,
    /// The stored column's type (speed and batch tables alike).
    pub stored: ColumnType,
}

/// Which records contribute to a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Every record the view accepts (`count`, `decayed(count, …)`).
    EveryRecord,
    /// Records whose field is present; absent values add nothing.
    Field {
        /// The field's index in the schema.
        index: usize,
        /// Its type.
        field_type: FieldType,
    },
}

/// How one record folds into a partial value. Its [`Fold::merge`] rule combines partial values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fold {
    /// Adds a term per contributing record; partial values add ([`MergeRule::Add`]), and a
    /// group without contributing records is 0.
    Add(Term),
    /// Keeps the least value ([`MergeRule::Least`]); none without values.
    Least,
    /// Keeps the greatest value ([`MergeRule::Greatest`]); none without values.
    Greatest,
    /// Adds each value's hash to a sketch ([`MergeRule::Union`]); none without values.
    Sketch(SketchType),
}

/// What one contributing record adds to an [`Fold::Add`] metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Term {
    /// One (counts).
    One,
    /// The field's value (sums; i64 values in i128, see [`ColumnType::Numeric`]).
    Value,
    /// The record's weight — 1 for [`Input::EveryRecord`], else the field's value — times its
    /// decay from its bucket's start, [`Metric::decay_weight`]: `2^((t − bucket_start) /
    /// half_life)`, in f64.
    Decayed {
        /// The half-life.
        half_life: HumanDuration,
    },
}

/// How two partial values of a metric combine, wherever they meet: the speed layer's fold and
/// upsert, the batch ⊕ speed merge of the readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    /// They add; 0 is the identity.
    Add,
    /// The lesser; a missing value is the identity.
    Least,
    /// The greater; a missing value is the identity.
    Greatest,
    /// The union of two sketches of this type; a missing sketch is the identity.
    Union(SketchType),
}

/// A mergeable sketch: its stored form, its union and its estimate are each backend's to lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SketchType {
    /// A HyperLogLog sketch in the `hll` extension's storage format ([`crate::sketch`]);
    /// its estimate is the cardinality.
    Hll(SketchParams),
    /// A quantile sketch ([`crate::quantile`]) as `bigint[]`, unioned by Braid's SQL functions;
    /// its estimate is a quantile the reader asks for.
    Quantile(crate::quantile::QuantileParams),
    /// A sample ([`crate::sample`]) as `jsonb`, unioned by Braid's SQL functions; read as its
    /// records.
    Sample(crate::sample::SampleParams),
}

impl SketchType {
    /// The PostgreSQL extension that stores, unions and reads sketches of this type, if one
    /// does (Braid's own sketches need only its migrations' functions).
    pub fn pg_extension(self) -> Option<&'static str> {
        match self {
            SketchType::Hll(_) => Some("hll"),
            SketchType::Quantile(_) | SketchType::Sample(_) => None,
        }
    }

    /// The PostgreSQL type of a stored sketch.
    pub fn pg_type(self) -> &'static str {
        match self {
            SketchType::Hll(_) => "hll",
            SketchType::Quantile(_) => "bigint[]",
            SketchType::Sample(_) => "jsonb",
        }
    }
}

/// How a merged value is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadRule {
    /// As stored.
    Plain,
    /// Each row's score decayed from its bucket's start to the time asked (now):
    /// `2^((bucket_start − now) / half_life)`, within [`crate::view::MAX_DECAY_HALF_LIVES`].
    DecayedToNow {
        /// The half-life.
        half_life: HumanDuration,
    },
    /// The sketch's estimate (a distinct count for [`SketchType::Hll`]), 0 without a sketch.
    Estimate(SketchType),
}

/// The type of a stored column or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A 64-bit integer (counts; min and max of i64 fields).
    BigInt,
    /// An exact integer beyond i64: sums of i64 fields, accumulated as i128 in both layers so
    /// that they never overflow and never wrap.
    Numeric,
    /// A 64-bit float.
    Double,
    /// A time, in µs since the epoch in the layers.
    Timestamp,
    /// A sketch's bytes.
    Sketch(SketchType),
}

impl ColumnType {
    /// The PostgreSQL type.
    pub fn pg_type(self) -> &'static str {
        match self {
            ColumnType::BigInt => "bigint",
            ColumnType::Numeric => "numeric",
            ColumnType::Double => "double precision",
            ColumnType::Timestamp => "timestamptz",
            ColumnType::Sketch(sketch) => sketch.pg_type(),
        }
    }

    /// Whether values are numbers (a threshold applies to them).
    pub fn is_number(self) -> bool {
        match self {
            ColumnType::BigInt | ColumnType::Numeric | ColumnType::Double => true,
            ColumnType::Timestamp | ColumnType::Sketch(_) => false,
        }
    }

    /// The type of a field's values as a metric keeps them (min and max).
    fn of_field(field_type: FieldType) -> Self {
        match field_type {
            FieldType::F64 => ColumnType::Double,
            FieldType::Timestamp => ColumnType::Timestamp,
            // Validation admits only ordered fields (i64, f64, timestamp) to min and max.
            FieldType::I64 | FieldType::String | FieldType::Bool => ColumnType::BigInt,
        }
    }
}

impl Fold {
    /// How partial values of this fold combine.
    pub fn merge(self) -> MergeRule {
        match self {
            Fold::Add(_) => MergeRule::Add,
            Fold::Least => MergeRule::Least,
            Fold::Greatest => MergeRule::Greatest,
            Fold::Sketch(sketch) => MergeRule::Union(sketch),
        }
    }
}

impl MetricPlan {
    /// The plan of a validated metric: the one mapping from a kind to its rules.
    pub fn of(metric: &Metric) -> Self {
        let input = match (metric.field_index, metric.field_type) {
            (Some(index), Some(field_type)) => Input::Field { index, field_type },
            _ => Input::EveryRecord,
        };
        let field_type = metric.field_type;
        let (fold, read, stored) = match metric.kind {
            MetricKind::Count => (Fold::Add(Term::One), ReadRule::Plain, ColumnType::BigInt),
            MetricKind::Sum => (
                Fold::Add(Term::Value),
                ReadRule::Plain,
                match field_type {
                    Some(FieldType::F64) => ColumnType::Double,
                    _ => ColumnType::Numeric,
                },
            ),
            MetricKind::Min | MetricKind::Max => (
                if metric.kind == MetricKind::Min {
                    Fold::Least
                } else {
                    Fold::Greatest
                },
                ReadRule::Plain,
                field_type.map_or(ColumnType::BigInt, ColumnType::of_field),
            ),
            MetricKind::Decayed => {
                let half_life = metric
                    .half_life
                    .expect("a validated decayed metric has a half-life");
                (
                    Fold::Add(Term::Decayed { half_life }),
                    ReadRule::DecayedToNow { half_life },
                    ColumnType::Double,
                )
            }
            MetricKind::Distinct | MetricKind::Quantile | MetricKind::Sample => {
                let sketch = match metric.kind {
                    MetricKind::Quantile => SketchType::Quantile(
                        metric
                            .quantile
                            .expect("a validated quantile metric has its settings"),
                    ),
                    MetricKind::Sample => SketchType::Sample(
                        metric
                            .sample
                            .expect("a validated sample metric has its settings"),
                    ),
                    _ => SketchType::Hll(
                        metric
                            .sketch
                            .expect("a validated distinct metric has sketch parameters"),
                    ),
                };
                (
                    Fold::Sketch(sketch),
                    ReadRule::Estimate(sketch),
                    ColumnType::Sketch(sketch),
                )
            }
        };
        Self {
            column: metric.column.clone(),
            input,
            fold,
            read,
            stored,
        }
    }

    /// How partial values combine.
    pub fn merge(&self) -> MergeRule {
        self.fold.merge()
    }

    /// The type of an answer's value: what the merged read gives.
    pub fn answer(&self) -> ColumnType {
        match self.read {
            ReadRule::Plain | ReadRule::DecayedToNow { .. } => self.stored,
            // A sample answers its records.
            ReadRule::Estimate(sample @ SketchType::Sample(_)) => ColumnType::Sketch(sample),
            ReadRule::Estimate(_) => ColumnType::Double,
        }
    }

    /// The field it reads, if any.
    pub fn field_index(&self) -> Option<usize> {
        match self.input {
            Input::EveryRecord => None,
            Input::Field { index, .. } => Some(index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BraidConfig;
    use crate::view::ViewConfig;

    /// A schema of every field type a metric takes, and a view with every metric kind.
    const CONFIG: &str = r#"
[schema]
event_time = "ts"
fields = [
  { name = "ts", type = "timestamp" },
  { name = "page", type = "string" },
  { name = "cents", type = "i64", required = false },
  { name = "score", type = "f64" },
  { name = "seen", type = "timestamp", required = false },
]
[[views]]
name = "every"
group_by = ["page"]
bucket = "1m"
metrics = ["count", "count(cents)", "sum(cents)", "sum(score)", "min(cents)", "max(score)",
  "min(seen)", "max(seen)", "decayed(count, 10m)", "decayed(sum(cents), 1h)", "distinct(page)",
  "distinct(cents, 6, 4)"]
"#;

    fn config() -> BraidConfig {
        BraidConfig::load_from(Some(("plan.toml", CONFIG)), []).unwrap()
    }

    fn every_kind() -> View {
        config().views.remove(0)
    }

    #[test]
    fn every_metric_kind_has_its_stored_type_fold_merge_read_and_answer() {
        let view = every_kind();
        let plan = ViewPlan::of(&view);
        let field = |index, field_type| Input::Field { index, field_type };
        let cents = field(2, FieldType::I64);
        let score = field(3, FieldType::F64);
        let seen = field(4, FieldType::Timestamp);
        let page = field(1, FieldType::String);
        let ten_minutes = HumanDuration::parse("10m").unwrap();
        let hour = HumanDuration::parse("1h").unwrap();
        let default = SketchType::Hll(SketchParams::default());
        let coarse = SketchType::Hll(SketchParams::new(6, 4).unwrap());
        use ColumnType::*;
        // A decayed score adds in f64 and reads decayed; a sketch unions and reads its estimate.
        let decayed = |column, input, half_life| {
            let fold = Fold::Add(Term::Decayed { half_life });
            let read = ReadRule::DecayedToNow { half_life };
            (
                column,
                input,
                fold,
                read,
                Double,
                "double precision",
                Double,
            )
        };
        let sketch = |column, input, sketch| {
            let (fold, read) = (Fold::Sketch(sketch), ReadRule::Estimate(sketch));
            (column, input, fold, read, Sketch(sketch), "hll", Double)
        };
        let expected = [
            (
                "count",
                Input::EveryRecord,
                Fold::Add(Term::One),
                ReadRule::Plain,
                BigInt,
                "bigint",
                BigInt,
            ),
            (
                "count_cents",
                cents,
                Fold::Add(Term::One),
                ReadRule::Plain,
                BigInt,
                "bigint",
                BigInt,
            ),
            (
                "sum_cents",
                cents,
                Fold::Add(Term::Value),
                ReadRule::Plain,
                Numeric,
                "numeric",
                Numeric,
            ),
            (
                "sum_score",
                score,
                Fold::Add(Term::Value),
                ReadRule::Plain,
                Double,
                "double precision",
                Double,
            ),
            (
                "min_cents",
                cents,
                Fold::Least,
                ReadRule::Plain,
                BigInt,
                "bigint",
                BigInt,
            ),
            (
                "max_score",
                score,
                Fold::Greatest,
                ReadRule::Plain,
                Double,
                "double precision",
                Double,
            ),
            (
                "min_seen",
                seen,
                Fold::Least,
                ReadRule::Plain,
                Timestamp,
                "timestamptz",
                Timestamp,
            ),
            (
                "max_seen",
                seen,
                Fold::Greatest,
                ReadRule::Plain,
                Timestamp,
                "timestamptz",
                Timestamp,
            ),
            decayed("decayed_count", Input::EveryRecord, ten_minutes),
            decayed("decayed_sum_cents", cents, hour),
            sketch("distinct_page", page, default),
            sketch("distinct_cents", cents, coarse),
        ];
        assert_eq!(plan.metrics.len(), expected.len());
        for (metric, (column, input, fold, read, stored, pg_type, answer)) in
            plan.metrics.iter().zip(expected)
        {
            assert_eq!(metric.column, column);
            assert_eq!(metric.input, input, "{column}");
            assert_eq!(metric.fold, fold, "{column}");
            assert_eq!(metric.read, read, "{column}");
            assert_eq!(metric.stored, stored, "{column}");
            assert_eq!(metric.stored.pg_type(), pg_type, "{column}");
            assert_eq!(metric.answer(), answer, "{column}");
        }
        let merges: Vec<MergeRule> = plan.metrics.iter().map(MetricPlan::merge).collect();
        use MergeRule::*;
        assert_eq!(
            merges,
            [
                Add,
                Add,
                Add,
                Add,
                Least,
                Greatest,
                Least,
                Greatest,
                Add,
                Add,
                Union(default),
                Union(coarse)
            ]
        );
        assert!(plan.has_sketches());
        // Only timestamps and sketches are not numbers; a sketch answers its estimate, a number.
        let not_numbers: Vec<&str> = plan
            .metrics
            .iter()
            .filter(|m| !m.stored.is_number())
            .map(|m| m.column.as_str())
            .collect();
        assert_eq!(
            not_numbers,
            ["min_seen", "max_seen", "distinct_page", "distinct_cents"]
        );
        assert!(
            plan.metrics
                .iter()
                .filter(|m| !m.answer().is_number())
                .all(|m| m.stored == Timestamp)
        );
    }

    #[test]
    fn every_kind_plans_over_every_field_it_takes() {
        let schema = config().schema;
        let texts = crate::view::example_metrics(&schema);
        let view = ViewConfig {
            name: "examples".into(),
            filter: None,
            group_by: Vec::new(),
            bucket: "1h".into(),
            metrics: texts.clone(),
        }
        .validate(&schema)
        .unwrap();
        for kind in MetricKind::ALL {
            assert!(
                view.metrics.iter().any(|m| m.kind == kind),
                "{kind:?} has an example: {texts:?}"
            );
        }
        let plan = ViewPlan::of(&view);
        for (metric, planned) in view.metrics.iter().zip(&plan.metrics) {
            assert_eq!(
                planned.field_index(),
                metric.field_index,
                "{}",
                metric.column
            );
        }
        assert!(texts.contains(&"min(seen)".to_string()), "{texts:?}");
        assert!(
            !texts.contains(&"sum(page)".to_string()),
            "only fields a kind takes: {texts:?}"
        );
    }

    #[test]
    fn averages_divide_a_sum_by_the_count_of_the_records_it_added() {
        let plan = ViewPlan::of(&every_kind());
        assert_eq!(
            plan.averages,
            [
                Average {
                    column: "avg_cents".into(),
                    sum: "sum_cents".into(),
                    count: "count_cents".into(),
                },
                Average {
                    column: "avg_score".into(),
                    sum: "sum_score".into(),
                    count: "count".into(),
                },
            ],
            "a decayed sum is not averaged"
        );
    }

    #[test]
    fn the_layout_stores_each_metric_as_its_plan_says() {
        let view = every_kind();
        let layout = crate::pg_layout::ViewLayout::of(&view);
        let plan = ViewPlan::of(&view);
        for (column, metric) in layout.metric_columns.iter().zip(&plan.metrics) {
            assert_eq!(column.name, metric.column);
            assert_eq!(column.pg_type, metric.stored.pg_type());
        }
    }
}
