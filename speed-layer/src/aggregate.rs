//! The in-memory micro-batch: aggregate deltas per view, group key and bucket, plus the
//! positions and dead letters they cover.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use schemas::EventSchema;
use schemas::pg::DeadLetter;
use schemas::plan::{ColumnType, Fold, MergeRule, MetricPlan, SketchType, Term, ViewPlan};
use schemas::position::{Offset, Partition, Positions};
use schemas::quantile::{QuantileParams, QuantileSketch};
use schemas::sample::{SampleParams, SampleSketch};
use schemas::sketch::{Sketch, SketchParams};
use schemas::view::{Metric, View};
use schemas::{Record, Value};

/// One group-by value. Absent optional fields group under `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// A string field.
    String(String),
    /// An i64 field.
    I64(i64),
    /// A bool field.
    Bool(bool),
}

/// A group key and a bucket start (microseconds since the epoch).
pub type GroupBucket = (Vec<Option<KeyValue>>, i64);

/// A group-by value borrowed from a record, to look a group up without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyRef<'a> {
    String(&'a str),
    I64(i64),
    Bool(bool),
}

impl KeyValue {
    fn as_ref(&self) -> KeyRef<'_> {
        match self {
            KeyValue::String(s) => KeyRef::String(s),
            KeyValue::I64(v) => KeyRef::I64(*v),
            KeyValue::Bool(b) => KeyRef::Bool(*b),
        }
    }
}

fn hash_group<'a>(parts: impl Iterator<Item = Option<KeyRef<'a>>>, bucket: i64) -> u64 {
    let mut hasher = FxBuildHasher.build_hasher();
    for part in parts {
        part.hash(&mut hasher);
    }
    bucket.hash(&mut hasher);
    hasher.finish()
}

/// Metric values per (group key, bucket), looked up by borrowed key parts so that a record
/// for an existing group allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    table: HashTable<(GroupBucket, Vec<MetricValue>)>,
}

impl Groups {
    /// Distinct (group key, bucket) pairs.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Removes every group, keeping the allocation.
    pub fn clear(&mut self) {
        self.table.clear();
    }

    /// The earliest and latest bucket start of the groups, if there are any.
    pub fn bucket_range(&self) -> Option<schemas::pg::view_changes::BucketRange> {
        let mut buckets = self.table.iter().map(|((_, bucket), _)| *bucket);
        let first = buckets.next()?;
        let (first_micros, last_micros) =
            buckets.fold((first, first), |(lo, hi), b| (lo.min(b), hi.max(b)));
        Some(schemas::pg::view_changes::BucketRange {
            first_micros,
            last_micros,
        })
    }

    /// Every group with its metric values.
    pub fn iter(&self) -> impl Iterator<Item = &(GroupBucket, Vec<MetricValue>)> {
        self.table.iter()
    }

    /// Every group, ordered by key and bucket. Flushes write rows in this order, so two
    /// processes upserting the same hot keys lock the rows in the same order and never deadlock.
    pub fn in_key_order(&self) -> Vec<&(GroupBucket, Vec<MetricValue>)> {
        let mut sorted: Vec<_> = self.table.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        sorted
    }

    /// The values of one group and bucket.
    pub fn get(&self, key: &[Option<KeyValue>], bucket: i64) -> Option<&Vec<MetricValue>> {
        let hash = hash_group(key.iter().map(|k| k.as_ref().map(KeyValue::as_ref)), bucket);
        self.table
            .find(hash, |((k, b), _)| *b == bucket && k.as_slice() == key)
            .map(|(_, values)| values)
    }

    fn values_mut(
        &mut self,
        parts: &[Option<KeyRef<'_>>],
        bucket: i64,
        initial: impl FnOnce() -> Vec<MetricValue>,
    ) -> &mut Vec<MetricValue> {
        let hash = hash_group(parts.iter().copied(), bucket);
        let matches = |((k, b), _): &(GroupBucket, Vec<MetricValue>)| {
            *b == bucket
                && k.len() == parts.len()
                && k.iter()
                    .zip(parts)
                    .all(|(owned, part)| owned.as_ref().map(KeyValue::as_ref) == *part)
        };
        let rehash = |((k, b), _): &(GroupBucket, Vec<MetricValue>)| {
            hash_group(k.iter().map(|p| p.as_ref().map(KeyValue::as_ref)), *b)
        };
        let entry = self.table.entry(hash, matches, rehash).or_insert_with(|| {
            let key = parts
                .iter()
                .map(|part| {
                    part.map(|p| match p {
                        KeyRef::String(s) => KeyValue::String(s.to_string()),
                        KeyRef::I64(v) => KeyValue::I64(v),
                        KeyRef::Bool(b) => KeyValue::Bool(b),
                    })
                })
                .collect();
            ((key, bucket), initial())
        });
        &mut entry.into_mut().1
    }
}

/// The running value of one metric. Sums start at zero; min and max at "no value".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// count, or min/max of an i64 or timestamp field (microseconds).
    Int(Option<i64>),
    /// sum of an i64 field: i128, like the batch layer's, stored as `numeric`, so it never
    /// overflows (2^63 records of any i64 value still fit).
    WideSum(i128),
    /// sum/min/max of an f64 field; decayed scores.
    Float(Option<f64>),
    /// A distinct count's sketch: its index in [`ViewDeltas::sketches`], `None` until a
    /// record has the field.
    Sketch(Option<u32>),
}

/// The initial value of a metric: 0 for metrics that add, "no value" for the others.
pub fn initial(plan: &MetricPlan) -> MetricValue {
    let adds = plan.merge() == MergeRule::Add;
    match plan.stored {
        ColumnType::BigInt | ColumnType::Timestamp => MetricValue::Int(adds.then_some(0)),
        ColumnType::Numeric => MetricValue::WideSum(0),
        ColumnType::Double => MetricValue::Float(adds.then_some(0.0)),
        ColumnType::Sketch(_) => MetricValue::Sketch(None),
    }
}

fn combine_option<T: Copy>(a: Option<T>, b: Option<T>, pick: impl Fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl MetricValue {
    /// Counts one more record.
    fn add_one(&mut self) {
        if let MetricValue::Int(Some(count)) = self {
            *count += 1;
        }
    }

    /// Folds one field value into the metric by `rule`.
    fn add_value(&mut self, rule: MergeRule, value: &Value) {
        let incoming = match value {
            Value::I64(v) | Value::Timestamp(v) => MetricValue::Int(Some(*v)),
            Value::F64(v) => MetricValue::Float(Some(*v)),
            _ => return, // strings and bools are only counted or sketched
        };
        self.merge(rule, incoming);
    }

    /// Combines two partial values by the metric's merge rule: sums add, min and max combine.
    /// (Sketches live apart, in [`ViewDeltas::sketches`].)
    pub fn merge(&mut self, rule: MergeRule, other: MetricValue) {
        *self = match (*self, other) {
            (MetricValue::WideSum(a), MetricValue::WideSum(b)) => MetricValue::WideSum(a + b),
            (MetricValue::WideSum(a), MetricValue::Int(b)) => {
                MetricValue::WideSum(a + i128::from(b.unwrap_or(0)))
            }
            (MetricValue::Int(a), MetricValue::Int(b)) => MetricValue::Int(match rule {
                MergeRule::Add => combine_option(a, b, i64::wrapping_add),
                MergeRule::Least => combine_option(a, b, i64::min),
                MergeRule::Greatest => combine_option(a, b, i64::max),
                MergeRule::Union(_) => a,
            }),
            (MetricValue::Float(a), MetricValue::Float(b)) => MetricValue::Float(match rule {
                MergeRule::Add => combine_option(a, b, |x, y| x + y),
                MergeRule::Least => combine_option(a, b, f64::min),
                MergeRule::Greatest => combine_option(a, b, f64::max),
                MergeRule::Union(_) => a,
            }),
            (mine, _) => mine,
        };
    }
}

/// The deltas of one view.
#[derive(Debug, Clone)]
pub struct ViewDeltas {
    /// The view.
    pub view: View,
    /// What a record does to each metric, lowered from the plan once.
    steps: Vec<Step>,
    /// The metrics' values before any record: a new group's.
    initial: Vec<MetricValue>,
    /// Metric values per group key and bucket, in the view's metric order.
    pub groups: Groups,
    /// The sketches of distinct and quantile metrics, indexed by [`MetricValue::Sketch`].
    pub sketches: Vec<SketchState>,
    /// The event schema (a sample keeps its records' fields by name).
    schema: Arc<EventSchema>,
}

/// A sketch being folded in a micro-batch.
#[derive(Debug, Clone, PartialEq)]
pub enum SketchState {
    /// A distinct count's HyperLogLog sketch.
    Hll(Sketch),
    /// A quantile sketch.
    Quantile(QuantileSketch),
    /// A sample.
    Sample(SampleSketch),
}

impl SketchState {
    /// The stored form the upsert binds.
    pub fn stored(&self) -> StoredSketch {
        match self {
            SketchState::Hll(sketch) => StoredSketch::Bytes(sketch.to_bytes()),
            SketchState::Quantile(sketch) => StoredSketch::Array(sketch.to_array()),
            SketchState::Sample(sample) => StoredSketch::Json(sample.to_json()),
        }
    }
}

/// A sketch as the upsert binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredSketch {
    /// The `hll` extension's storage bytes.
    Bytes(Vec<u8>),
    /// A quantile sketch's canonical array.
    Array(Vec<i64>),
    /// A sample's JSON.
    Json(serde_json::Value),
}

impl ViewDeltas {
    fn new(view: View, schema: Arc<EventSchema>) -> Self {
        let plan = ViewPlan::of(&view);
        Self {
            steps: plan.metrics.iter().map(Step::of).collect(),
            initial: plan.metrics.iter().map(initial).collect(),
            view,
            schema,
            groups: Groups::default(),
            sketches: Vec::new(),
        }
    }

    /// Folds a valid record at (partition, offset) in, if the view's filter accepts it.
    pub fn add(&mut self, partition: Partition, offset: Offset, record: &Record) {
        if !self.view.accepts(record) {
            return;
        }
        let mut parts: [Option<KeyRef<'_>>; 8] = [None; 8];
        let mut spill = Vec::new();
        let parts: &[Option<KeyRef<'_>>] = {
            let key = self
                .view
                .group_by_indexes
                .iter()
                .map(|&index| match record.get(index) {
                    Some(Value::String(s)) => Some(KeyRef::String(s)),
                    Some(Value::I64(v)) => Some(KeyRef::I64(*v)),
                    Some(Value::Bool(b)) => Some(KeyRef::Bool(*b)),
                    _ => None,
                });
            if self.view.group_by_indexes.len() <= parts.len() {
                for (slot, part) in parts.iter_mut().zip(key) {
                    *slot = part;
                }
                &parts[..self.view.group_by_indexes.len()]
            } else {
                spill.extend(key);
                &spill
            }
        };
        let bucket = self.view.bucket_start_micros(record.event_time_micros);
        let initial = &self.initial;
        let values = self.groups.values_mut(parts, bucket, || initial.clone());
        for (value, step) in values.iter_mut().zip(&self.steps) {
            match *step {
                Step::CountRecord => value.add_one(),
                Step::CountField(index) => {
                    if record.get(index).is_some() {
                        value.add_one();
                    }
                }
                Step::Value(index, rule) => {
                    if let Some(field) = record.get(index) {
                        value.add_value(rule, field);
                    }
                }
                Step::Decayed {
                    field,
                    half_life_micros,
                } => {
                    // The record's weight times its decay from the bucket's start.
                    let weight = match field.map(|index| record.get(index)) {
                        None => 1.0,
                        Some(Some(Value::I64(v))) => *v as f64,
                        Some(_) => continue, // an absent field adds nothing
                    };
                    if let MetricValue::Float(Some(sum)) = value {
                        *sum += weight
                            * Metric::decay_weight(
                                half_life_micros,
                                record.event_time_micros,
                                bucket,
                            );
                    }
                }
                Step::Hll(index, params) => {
                    let hash = record.get(index).and_then(schemas::sketch::hash_value);
                    if let (Some(hash), MetricValue::Sketch(slot)) = (hash, &mut *value) {
                        let index = *slot.get_or_insert_with(|| {
                            self.sketches.push(SketchState::Hll(Sketch::new(params)));
                            (self.sketches.len() - 1) as u32
                        });
                        if let SketchState::Hll(sketch) = &mut self.sketches[index as usize] {
                            sketch.add_hash(hash);
                        }
                    }
                }
                Step::Sample(params) => {
                    if let MetricValue::Sketch(slot) = value {
                        let index = *slot.get_or_insert_with(|| {
                            self.sketches
                                .push(SketchState::Sample(SampleSketch::new(params)));
                            (self.sketches.len() - 1) as u32
                        });
                        if let SketchState::Sample(sample) = &mut self.sketches[index as usize]
                            && sample.would_keep(partition, offset)
                        {
                            // Validation refuses NUL in text, which is all `add` refuses.
                            let fields = schemas::sample::fields_of(&self.schema, record);
                            let _ = sample.add(partition, offset, fields);
                        }
                    }
                }
                Step::Quantile(index, params) => {
                    let number = match record.get(index) {
                        Some(Value::I64(v)) => *v as f64,
                        Some(Value::F64(v)) => *v,
                        _ => continue, // an absent field adds nothing
                    };
                    if let MetricValue::Sketch(slot) = value {
                        let index = *slot.get_or_insert_with(|| {
                            self.sketches
                                .push(SketchState::Quantile(QuantileSketch::new(params)));
                            (self.sketches.len() - 1) as u32
                        });
                        if let SketchState::Quantile(sketch) = &mut self.sketches[index as usize] {
                            // Validation passes finite values only; a non-finite one would be
                            // refused here alike in both layers.
                            let _ = sketch.add(number);
                        }
                    }
                }
            }
        }
    }
}

/// What one record does to one metric: the speed layer's lowering of the metric's plan
/// ([`MetricPlan`]), built once per view, so that folding a record is one match per metric.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// `count`: one per record.
    CountRecord,
    /// `count(field)`: one per record that has the field.
    CountField(usize),
    /// The field's value, merged by the rule (sums, min, max); an absent field adds nothing.
    Value(usize, MergeRule),
    /// The record's weight (1, or the field's i64 value) times its decay from its bucket's start.
    Decayed {
        /// The weighing field, if any.
        field: Option<usize>,
        /// The half-life in µs.
        half_life_micros: i64,
    },
    /// The field's hash, added to the group's HyperLogLog sketch.
    Hll(usize, SketchParams),
    /// The field's value (i64 as f64), added to the group's quantile sketch.
    Quantile(usize, QuantileParams),
    /// The record, offered to the group's sample by its position.
    Sample(SampleParams),
}

impl Step {
    fn of(plan: &MetricPlan) -> Self {
        let field = plan.field_index();
        let read = || field.expect("validation gives every metric but counts a field");
        match plan.fold {
            Fold::Add(Term::One) => field.map_or(Step::CountRecord, Step::CountField),
            Fold::Add(Term::Value) | Fold::Least | Fold::Greatest => {
                Step::Value(read(), plan.merge())
            }
            Fold::Add(Term::Decayed { half_life }) => Step::Decayed {
                field,
                half_life_micros: half_life.micros(),
            },
            Fold::Sketch(SketchType::Hll(params)) => Step::Hll(read(), params),
            Fold::Sketch(SketchType::Quantile(params)) => Step::Quantile(read(), params),
            Fold::Sketch(SketchType::Sample(params)) => Step::Sample(params),
        }
    }
}

/// Everything one flush writes.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    /// Deltas per view, in configuration order.
    pub views: Vec<ViewDeltas>,
    /// The next offset of every partition this batch consumed from.
    pub next_offsets: Positions,
    /// Refused records.
    pub dead_letters: Vec<DeadLetter>,
    /// Valid records folded in.
    pub valid_records: u64,
    /// The newest event time among the valid records, in microseconds since the epoch.
    pub newest_event_micros: Option<i64>,
    /// The event schema of the records.
    schema: Arc<EventSchema>,
}

impl MicroBatch {
    /// An empty batch for these views of records of `schema`.
    pub fn new(views: &[View], schema: &EventSchema) -> Self {
        Self::of_views(views.iter().cloned(), Arc::new(schema.clone()))
    }

    /// An empty batch for the same views as `other`.
    pub fn empty_like(other: &MicroBatch) -> Self {
        Self::of_views(
            other.views.iter().map(|deltas| deltas.view.clone()),
            Arc::clone(&other.schema),
        )
    }

    fn of_views(views: impl Iterator<Item = View>, schema: Arc<EventSchema>) -> Self {
        Self {
            views: views
                .map(|view| ViewDeltas::new(view, Arc::clone(&schema)))
                .collect(),
            next_offsets: BTreeMap::new(),
            dead_letters: Vec::new(),
            valid_records: 0,
            newest_event_micros: None,
            schema,
        }
    }

    /// Folds a valid record at (partition, offset) into every view.
    pub fn add_record(&mut self, partition: Partition, offset: Offset, record: &Record) {
        for view in &mut self.views {
            view.add(partition, offset, record);
        }
        self.valid_records += 1;
        self.newest_event_micros = self.newest_event_micros.max(Some(record.event_time_micros));
        self.next_offsets.insert(partition, offset + 1);
    }

    /// Keeps a refused record at (partition, offset).
    pub fn add_dead_letter(&mut self, letter: DeadLetter) {
        self.next_offsets
            .insert(letter.partition, letter.offset + 1);
        self.dead_letters.push(letter);
    }

    /// Records held (valid and refused).
    pub fn len(&self) -> u64 {
        self.valid_records + self.dead_letters.len() as u64
    }

    /// Whether there is nothing to flush.
    pub fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        for view in &mut self.views {
            view.groups.clear();
            view.sketches.clear();
        }
        self.next_offsets.clear();
        self.dead_letters.clear();
        self.valid_records = 0;
        self.newest_event_micros = None;
    }

    /// Distinct (view, group, bucket) rows the flush will upsert.
    pub fn row_count(&self) -> usize {
        self.views.iter().map(|v| v.groups.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> schemas::BraidConfig {
        schemas::BraidConfig::load_from(Some(("braid.toml", include_str!("../../braid.toml"))), [])
            .unwrap()
    }

    #[test]
    fn groups_come_out_in_key_and_bucket_order_whatever_the_hash_order() {
        let config = config();
        let mut batch = MicroBatch::new(&config.views, &config.schema);
        for i in 0..300 {
            let event = format!(
                r#"{{"event_id":"e{i}","ts":"2026-01-01T00:{:02}:05Z","event_type":"page_view","user_id":"u","page":"/p{}","country":"US","device":"mobile","duration_ms":1}}"#,
                (i * 7) % 60,
                (i * 37) % 101
            );
            batch.add_record(0, i, &config.schema.validate(event.as_bytes()).unwrap());
        }
        for deltas in batch.views.iter().filter(|d| d.groups.len() > 1) {
            let keys: Vec<&GroupBucket> = deltas
                .groups
                .in_key_order()
                .iter()
                .map(|(k, _)| k)
                .collect();
            assert!(
                keys.windows(2).all(|w| w[0] < w[1]),
                "{}: out of order",
                deltas.view.name
            );
        }
        assert!(
            batch.views.iter().any(|d| d.groups.len() > 100),
            "some view has many groups"
        );
    }

    #[test]
    fn folds_records_per_view_key_and_bucket() {
        let config = config();
        let mut batch = MicroBatch::new(&config.views, &config.schema);
        let events = [
            r#"{"event_id":"a","ts":"2026-01-01T00:00:05Z","event_type":"purchase","user_id":"u","page":"/p","country":"US","device":"mobile","price_cents":500}"#,
            r#"{"event_id":"b","ts":"2026-01-01T00:00:50Z","event_type":"purchase","user_id":"u","page":"/p","country":"US","device":"mobile","price_cents":200}"#,
            r#"{"event_id":"c","ts":"2026-01-01T00:01:01Z","event_type":"purchase","user_id":"u","page":"/p","country":"US","device":"mobile"}"#,
            r#"{"event_id":"d","ts":"2026-01-01T00:00:07Z","event_type":"page_view","user_id":"u","page":"/p","country":"DE","device":"mobile","duration_ms":10}"#,
        ];
        for (offset, event) in events.iter().enumerate() {
            let record = config.schema.validate(event.as_bytes()).unwrap();
            batch.add_record(0, offset as i64, &record);
        }
        assert_eq!(batch.next_offsets, BTreeMap::from([(0, 4)]));
        let purchases = &batch.views[1];
        assert_eq!(purchases.view.name, "purchases_by_country");
        let key = vec![
            Some(KeyValue::String("US".into())),
            Some(KeyValue::String("mobile".into())),
        ];
        let minute0 = 1_767_225_600_000_000;
        assert_eq!(
            *purchases.groups.get(&key, minute0).unwrap(),
            [
                MetricValue::Int(Some(2)),
                MetricValue::WideSum(700),
                MetricValue::Int(Some(200)),
                MetricValue::Int(Some(500)),
                MetricValue::Int(Some(2)),
            ]
        );
        // A purchase without a price counts, sums nothing, leaves min and max unset, and is
        // not counted by count(price_cents).
        assert_eq!(
            *purchases.groups.get(&key, minute0 + 60_000_000).unwrap(),
            [
                MetricValue::Int(Some(1)),
                MetricValue::WideSum(0),
                MetricValue::Int(None),
                MetricValue::Int(None),
                MetricValue::Int(Some(0)),
            ]
        );
        assert_eq!(batch.views[0].groups.len(), 1, "one page view");
        assert_eq!(
            batch.views[2].groups.len(),
            4,
            "events_by_type: three 10s buckets of purchases, one of page views"
        );
        // unique_visitors and trending_pages group every record by page: two rows each.
        assert_eq!(batch.views[3].groups.len(), 2, "unique_visitors");
        assert_eq!(batch.views[4].groups.len(), 2, "trending_pages");
        // page_latency: the one page view.
        assert_eq!(batch.views[5].groups.len(), 1, "page_latency");
        assert_eq!(batch.row_count(), 12);
    }

    #[test]
    fn merge_combines_like_the_database_does() {
        let mut a = MetricValue::Float(None);
        a.merge(MergeRule::Least, MetricValue::Float(Some(2.5)));
        a.merge(MergeRule::Least, MetricValue::Float(Some(1.5)));
        a.merge(MergeRule::Least, MetricValue::Float(None));
        assert_eq!(a, MetricValue::Float(Some(1.5)));
        let mut s = MetricValue::WideSum(i128::from(i64::MAX));
        s.merge(MergeRule::Add, MetricValue::Int(Some(i64::MAX)));
        s.merge(MergeRule::Add, MetricValue::WideSum(2));
        assert_eq!(
            s,
            MetricValue::WideSum(i128::from(i64::MAX) * 2 + 2),
            "i64 sums never wrap"
        );
    }
}
