//! Hostile input, property-tested: for adversarial but well-formed payloads, the one validator
//! that the speed layer and the sink both call, the sink's Arrow batch, a Parquet file of it and
//! the batch layer's Polars reading of that file all agree, value by value, and the speed
//! layer's fold equals the batch layer's computation per view, key and bucket.

use std::collections::BTreeMap;

use deltalake::parquet::arrow::ArrowWriter;
use polars::prelude::*;
use proptest::prelude::*;
use schemas::plan::{ColumnType, Fold, Input, MergeRule, Term, ViewPlan};
use schemas::view::{View, ViewConfig, example_metrics};
use schemas::{BraidConfig, Record, Rejection, Value};
use speed_layer::aggregate::{KeyValue, MetricValue, MicroBatch};

use super::columns::BatchBuilder;
use crate::recompute::slices::{EventTimeColumn, time_slices};
use crate::recompute::{BUCKET_START, compute_view};

/// A schema with every field type, optional fields, and views that group and filter, with
/// sketches of other precisions over a string and an i64 field; the views `by_name` and
/// `by_flag` ([`config`]) take every metric the schema admits.
const CONFIG: &str = r#"
[kafka]
topic = "hostile"
[schema]
event_time = "ts"
max_group_value_bytes = 64
fields = [
  { name = "ts", type = "timestamp" },
  { name = "name", type = "string" },
  { name = "tag", type = "string", required = false },
  { name = "n", type = "i64", required = false },
  { name = "x", type = "f64", required = false },
  { name = "at", type = "timestamp", required = false },
  { name = "flag", type = "bool", required = false },
]
[[views]]
name = "by_tag_flag"
filter = { field = "n", op = "ge", value = -5 }
group_by = ["tag", "flag"]
bucket = "1d"
metrics = ["count", "sum(n)", "distinct(name, 6, 4)", "distinct(n, 6, 4)"]
[[views]]
name = "by_n_flag"
group_by = ["n", "flag"]
bucket = "1m"
metrics = ["count", "distinct(tag)"]
"#;

/// The test config, with first two views of every metric of every kind over every field it
/// takes ([`example_metrics`]), so that a new metric kind is compared here without new test
/// code: `by_name` (hourly, by a string that is mostly unique) and `by_flag` (by a bool, in
/// 100-year buckets, so that most groups fold several records; without the decayed scores,
/// whose half-life of an hour does not admit such a bucket). The metrics whose value depends on
/// the order records are added in (f64 values that add: sums of f64 fields, decayed scores) are
/// compared to a tolerance ([`order_dependent`], [`magnitudes`]).
fn config() -> BraidConfig {
    let mut config = BraidConfig::load_from(Some(("hostile.toml", CONFIG)), [])
        .expect("the test config is valid");
    let view = |name: &str, group_by: &str, bucket: &str, metrics: Vec<String>| ViewConfig {
        name: name.into(),
        filter: None,
        group_by: vec![group_by.into()],
        bucket: bucket.into(),
        metrics,
    };
    let every = example_metrics(&config.schema);
    let by_name = view("by_name", "name", "1h", every.clone())
        .validate(&config.schema)
        .expect("the examples validate");
    let centennial: Vec<String> = every
        .into_iter()
        .filter(|m| {
            view("by_flag", "flag", "36500d", vec![m.clone()])
                .validate(&config.schema)
                .is_ok()
        })
        .collect();
    let by_flag = view("by_flag", "flag", "36500d", centennial)
        .validate(&config.schema)
        .expect("the examples validate");
    config.views.splice(0..0, [by_name, by_flag]);
    config
}

/// Per metric of `view`: whether its value depends on the order records are added in (by its
/// plan: f64 values that add, i.e. sums of f64 fields and decayed scores).
fn order_dependent(view: &View) -> Vec<bool> {
    ViewPlan::of(view)
        .metrics
        .iter()
        .map(|m| m.merge() == MergeRule::Add && m.stored == ColumnType::Double)
        .collect()
}

/// Per key and bucket of `view`, per order-dependent metric: the sum of the magnitudes of the
/// terms its records add (|value|, or |weight| · 2^((t − bucket_start) / half_life)), folded
/// here, so that two sums of the same terms in different orders are compared to their rounding
/// bound. Other metrics are 0.
fn magnitudes(view: &View, records: &[Record]) -> BTreeMap<(Vec<Option<String>>, i64), Vec<f64>> {
    let plan = ViewPlan::of(view);
    let width = view.bucket.micros();
    let mut out: BTreeMap<(Vec<Option<String>>, i64), Vec<f64>> = BTreeMap::new();
    for record in records.iter().filter(|r| view.accepts(r)) {
        let key: Vec<Option<String>> = view
            .group_by_indexes
            .iter()
            .map(|&i| match record.get(i) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::I64(v)) => Some(v.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                _ => None,
            })
            .collect();
        let t = record.event_time_micros;
        let bucket = t.div_euclid(width) * width;
        let sums = out
            .entry((key, bucket))
            .or_insert_with(|| vec![0.0; plan.metrics.len()]);
        for (sum, metric) in sums.iter_mut().zip(&plan.metrics) {
            let weight = match metric.input {
                Input::EveryRecord => 1.0,
                Input::Field { index, .. } => match record.get(index) {
                    Some(Value::I64(v)) => (*v as f64).abs(),
                    Some(Value::F64(v)) => v.abs(),
                    _ => continue,
                },
            };
            *sum += match metric.fold {
                Fold::Add(Term::Value) => weight,
                Fold::Add(Term::Decayed { half_life }) => {
                    weight * ((t - bucket) as f64 / half_life.micros() as f64).exp2()
                }
                Fold::Add(Term::One) | Fold::Least | Fold::Greatest | Fold::Sketch(_) => 0.0,
            };
        }
    }
    out
}

/// Replaces the order-dependent values of `speed` and `lake` by a mark once they are within
/// the rounding bound of their terms' magnitudes (1e-12 of it; the bound of two orders of at
/// most 24 additions is below 1e-14), so that the rest compares exactly.
fn within_rounding(
    view: &View,
    records: &[Record],
    speed: &mut Rows,
    lake: &mut Rows,
) -> Result<(), TestCaseError> {
    let tolerant = order_dependent(view);
    let magnitudes = magnitudes(view, records);
    for (key, values) in speed.iter_mut() {
        let Some(other) = lake.get_mut(key) else {
            continue;
        };
        for (i, tolerant) in tolerant.iter().enumerate() {
            if !tolerant {
                continue;
            }
            let parse = |v: &Option<String>| v.as_deref().map(|t| t.parse::<f64>().unwrap());
            let (a, b) = (parse(&values[i]), parse(&other[i]));
            let bound = 1e-12 * magnitudes.get(key).map_or(0.0, |m| m[i]);
            prop_assert!(
                matches!((a, b), (Some(a), Some(b)) if (a - b).abs() <= bound),
                "view {}, {key:?}, {}: speed {a:?}, batch {b:?}, bound {bound:e}",
                view.name,
                view.metrics[i].column
            );
            values[i] = Some("within rounding".into());
            other[i] = Some("within rounding".into());
        }
    }
    Ok(())
}

/// JSON text for a string field: adversarial escapes and characters, long strings.
fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => Just(r#""a\u0000b""#.to_string()),
        1 => Just(r#""\u0000""#.to_string()),
        1 => Just(r#""\ud800""#.to_string()),
        1 => Just(r#""\udc00\ud800""#.to_string()),
        1 => Just(r#""\ud83d\ude00""#.to_string()),
        1 => Just(r#""tab\tnl\ncr\r\u0001\u001f\u007f""#.to_string()),
        1 => Just(r#""quote\" comma, back\\slash""#.to_string()),
        1 => Just(r#""""#.to_string()),
        1 => (60usize..70).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        1 => (30usize..34).prop_map(|n| format!("\"{}\"", "é".repeat(n))),
        1 => Just("\"a\u{0}raw NUL\"".to_string()),
        1 => Just("7".to_string()),
        1 => Just("null".to_string()),
    ]
}

fn json_i64() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => any::<i64>().prop_map(|v| v.to_string()),
        1 => Just(i64::MAX.to_string()),
        1 => Just(i64::MIN.to_string()),
        1 => Just((i64::MAX - 1).to_string()),
        1 => (-10i64..10).prop_map(|v| v.to_string()),
        1 => Just(u64::MAX.to_string()),
        1 => Just("9223372036854775808".to_string()),
        1 => Just("1.0".to_string()),
        1 => Just("1e3".to_string()),
        1 => Just("-0".to_string()),
        1 => Just("\"12\"".to_string()),
        1 => Just("null".to_string()),
    ]
}

fn json_f64() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => any::<f64>()
            .prop_filter("JSON numbers are finite", |v| v.is_finite())
            .prop_map(|v| serde_json::to_string(&v).unwrap()),
        1 => Just("1e308".to_string()),
        1 => Just("-1.7976931348623157e308".to_string()),
        1 => Just("1e200".to_string()),
        1 => Just("9.99e199".to_string()),
        1 => Just("5e-324".to_string()),
        1 => any::<u64>()
            .prop_map(|bits| f64::from_bits(bits & 0x800f_ffff_ffff_ffff))
            .prop_map(|v| serde_json::to_string(&v).unwrap()),
        1 => Just("2.2250738585072014e-308".to_string()),
        1 => Just("9.999999999999999e-201".to_string()),
        1 => Just("1e-200".to_string()),
        1 => Just("-1e-200".to_string()),
        1 => Just("-0.0".to_string()),
        1 => Just("0".to_string()),
        1 => Just("1e400".to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("Infinity".to_string()),
        1 => Just("-Infinity".to_string()),
        1 => Just("null".to_string()),
    ]
}

/// Times as RFC 3339 text or epoch milliseconds, at and past every bound.
fn json_time() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => (946_684_800_000i64..4_102_444_800_000).prop_map(|ms| ms.to_string()),
        1 => Just(r#""2026-01-01T00:00:00Z""#.to_string()),
        1 => Just(r#""2026-06-30T23:59:60Z""#.to_string()),
        1 => Just(r#""2026-01-01T00:00:00.999999999+14:00""#.to_string()),
        1 => Just(r#""1999-12-31T23:59:59.999999Z""#.to_string()),
        1 => Just(r#""2100-01-01T00:00:00Z""#.to_string()),
        1 => Just(r#""0000-01-01T00:00:00Z""#.to_string()),
        1 => Just(r#""0001-01-01T00:00:00Z""#.to_string()),
        1 => Just(r#""9999-12-31T23:59:59.999999Z""#.to_string()),
        1 => Just(r#""9999-12-31T23:59:59.999999-23:59""#.to_string()),
        1 => Just("-62135596800001".to_string()),
        1 => Just("-62135596800000".to_string()),
        1 => Just("253402300799999".to_string()),
        1 => Just("253402300800000".to_string()),
        1 => Just(i64::MAX.to_string()),
        1 => Just(i64::MIN.to_string()),
        1 => Just(r#""2026-01-01T00:00:00Z\u0000""#.to_string()),
        1 => Just(r#""2026-01-01 00:00:00""#.to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("true".to_string()),
    ]
}

fn json_bool() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("0".to_string()),
        Just("null".to_string()),
    ]
}

/// One payload: the declared fields (each maybe absent), maybe a repeated key, an unknown field
/// nested up to past serde_json's recursion limit, in an order of their own; or not an object.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let fields = (
        prop::option::weighted(0.97, json_time()),
        prop::option::weighted(0.95, json_string()),
        prop::option::of(json_string()),
        prop::option::of(json_i64()),
        prop::option::of(json_f64()),
        prop::option::of(json_time()),
        prop::option::of(json_bool()),
    );
    let extras = (
        prop::option::of(json_string()),
        prop::option::of(0usize..140),
        any::<prop::sample::Index>(),
    );
    let object = (fields, extras).prop_map(
        |((ts, name, tag, n, x, at, flag), (again, depth, at_index))| {
            let mut members: Vec<String> = [
                ("ts", ts),
                ("name", name),
                ("tag", tag),
                ("n", n),
                ("x", x),
                ("at", at),
                ("flag", flag),
            ]
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| format!("\"{key}\":{v}")))
            .collect();
            if let Some(depth) = depth {
                members.push(format!(
                    "\"deep\":{}1{}",
                    "[".repeat(depth),
                    "]".repeat(depth)
                ));
            }
            if let Some(again) = again {
                // A repeated key, escaped: the last value of "name" counts.
                let position = at_index.index(members.len() + 1);
                members.insert(position, format!("\"na\\u006de\":{again}"));
            }
            format!("{{{}}}", members.join(",")).into_bytes()
        },
    );
    prop_oneof![
        8 => object,
        1 => prop_oneof![
            Just(b"[1,2]".to_vec()),
            Just(b"\"text\"".to_vec()),
            Just(b"{} {}".to_vec()),
            Just(b"\xff\xfe{}".to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
    ]
}

/// Writes the sink's Arrow batch of `records` to a Parquet file and reads it back with the batch
/// layer's scan, as a batch run reads the lake.
fn through_the_lake(
    config: &BraidConfig,
    records: &[Record],
    offsets: &[i64],
    dir: &std::path::Path,
) -> (LazyFrame, DataFrame) {
    let mut builder = BatchBuilder::new(&config.schema);
    for (record, offset) in records.iter().zip(offsets) {
        builder.append(record, "hostile", 0, *offset, 0, None);
    }
    let batch = builder
        .finish()
        .expect("a validated record always fits the table");
    let path = dir.join("part-0.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            ..Default::default()
        },
        ..Default::default()
    };
    let scan =
        LazyFrame::scan_parquet(PlRefPath::from(path.to_string_lossy().as_ref()), args).unwrap();
    let read = scan
        .clone()
        .sort(["_offset"], SortMultipleOptions::default())
        .collect()
        .unwrap();
    (scan, read)
}

/// The value the lake gives back for field `index` of row `row`, as the validator's type.
fn lake_value(frame: &DataFrame, config: &BraidConfig, index: usize, row: usize) -> Option<Value> {
    use schemas::FieldType;
    let field = &config.schema.fields[index];
    let value = frame.column(field.name.as_str()).unwrap().get(row).unwrap();
    if value.is_null() {
        return None;
    }
    Some(match field.field_type {
        FieldType::String => Value::String(value.get_str().unwrap().to_string()),
        FieldType::I64 => Value::I64(value.extract::<i64>().unwrap()),
        FieldType::F64 => Value::F64(value.extract::<f64>().unwrap()),
        FieldType::Bool => Value::Bool(matches!(value, AnyValue::Boolean(true))),
        FieldType::Timestamp => match value {
            AnyValue::Datetime(micros, TimeUnit::Microseconds, _)
            | AnyValue::DatetimeOwned(micros, TimeUnit::Microseconds, _) => {
                Value::Timestamp(micros)
            }
            other => panic!("field {} reads back as {other:?}", field.name),
        },
    })
}

/// The same value, with floats compared by their bits (-0.0 and NaN included).
fn same(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(Value::F64(x)), Some(Value::F64(y))) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

type Rows = BTreeMap<(Vec<Option<String>>, i64), Vec<Option<String>>>;

fn key_text(value: &Option<KeyValue>) -> Option<String> {
    value.as_ref().map(|v| match v {
        KeyValue::String(s) => s.clone(),
        KeyValue::I64(i) => i.to_string(),
        KeyValue::Bool(b) => b.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn metric_text(
    value: &MetricValue,
    sketches: &[speed_layer::aggregate::SketchState],
) -> Option<String> {
    match value {
        // As the batch writes them for binary COPY.
        MetricValue::Sketch(index) => index.map(|i| match &sketches[i as usize] {
            speed_layer::aggregate::SketchState::Hll(sketch) => hex(&sketch.to_bytes()),
            speed_layer::aggregate::SketchState::Quantile(sketch) => hex(&sketch.to_pg_binary()),
            speed_layer::aggregate::SketchState::Sample(sample) => hex(&sample.to_pg_binary()),
        }),
        MetricValue::Int(v) => v.map(|v| v.to_string()),
        MetricValue::WideSum(v) => Some(v.to_string()),
        MetricValue::Float(v) => v.map(|v| format!("{:?}", v)),
    }
}

fn any_text(value: AnyValue<'_>) -> Option<String> {
    match value {
        AnyValue::Null => None,
        AnyValue::String(s) => Some(s.to_string()),
        AnyValue::StringOwned(s) => Some(s.to_string()),
        AnyValue::Boolean(b) => Some(b.to_string()),
        AnyValue::Float64(f) => Some(format!("{:?}", f)),
        AnyValue::Int128(v) => Some(v.to_string()),
        AnyValue::Binary(b) => Some(hex(b)),
        AnyValue::BinaryOwned(b) => Some(hex(&b)),
        other => Some(other.extract::<i64>().expect("an integer").to_string()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_validator_the_lake_and_both_computations_agree(
        payloads in prop::collection::vec(payload(), 1..24)
    ) {
        let config = config();
        let mut records = Vec::new();
        // Each valid record's offset, the same in the speed layer's fold and in the lake (a
        // sample keeps records by their position).
        let mut offsets = Vec::new();
        let mut batch = MicroBatch::new(&config.views, &config.schema);
        for (offset, payload) in payloads.iter().enumerate() {
            // The speed layer and the sink both call this one function of the bytes and the config.
            match config.schema.validate(payload) {
                Ok(record) => {
                    batch.add_record(0, offset as i64, &record);
                    records.push(record);
                    offsets.push(offset as i64);
                }
                Err(rejection) => {
                    prop_assert!(Rejection::CODES.contains(&rejection.code()), "{rejection:?}");
                    let reason = rejection.to_string();
                    prop_assert!(!reason.contains('\0'), "a reason must be storable: {reason:?}");
                    prop_assert!(reason.chars().count() < 400, "a reason is bounded: {reason}");
                }
            }
        }
        prop_assume!(!records.is_empty());
        for record in &records {
            for value in record.values.iter().flatten() {
                match value {
                    Value::String(s) => prop_assert!(!s.contains('\0') && s.len() <= 64, "{s:?}"),
                    Value::F64(x) => prop_assert!(
                        *x == 0.0 || (x.abs() >= 1e-200 && x.abs() < 1e200),
                        "{x:e}"
                    ),
                    Value::Timestamp(t) => prop_assert!(
                        (schemas::record::STORABLE_TIME_MIN_MICROS
                            ..schemas::record::STORABLE_TIME_MAX_MICROS)
                            .contains(t),
                        "{t}"
                    ),
                    _ => {}
                }
            }
        }

        // The lake holds exactly the validated values.
        let dir = std::env::temp_dir().join(format!(
            "braid-agreement-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (scan, read) = through_the_lake(&config, &records, &offsets, &dir);
        prop_assert_eq!(read.height(), records.len());
        for (row, record) in records.iter().enumerate() {
            for index in 0..config.schema.fields.len() {
                let back = lake_value(&read, &config, index, row);
                prop_assert!(
                    same(&back, &record.values[index]),
                    "field {} of record {row}: validated {:?}, the lake gives {:?}",
                    config.schema.fields[index].name, record.values[index], back
                );
            }
        }

        // The speed layer's fold equals the batch layer's computation, per key and bucket.
        for (view, deltas) in config.views.iter().zip(&batch.views) {
            let mut speed: Rows = deltas
                .groups
                .iter()
                .map(|((key, bucket), values)| {
                    ((key.iter().map(key_text).collect(), *bucket), values.iter().map(|v| metric_text(v, &deltas.sketches)).collect())
                })
                .collect();
            let computed = compute_view(scan.clone(), view, &config.schema).unwrap();
            // The same view computed in time slices of a few records each, as a batch of a
            // long history does, must give the same rows.
            let max_records = (records.len() as u64 / 3).max(1);
            let slices = time_slices(scan.clone(), view, &config.schema, max_records).unwrap();
            let event_time = EventTimeColumn::of(&scan, &config.schema).unwrap();
            let mut sliced = Vec::new();
            for slice in &slices {
                sliced.push(compute_view(slice.of(scan.clone(), &event_time), view, &config.schema).unwrap());
            }
            let mut sliced_rows: Rows = BTreeMap::new();
            for frame in &sliced {
                for (key, values) in rows_of(frame, view) {
                    prop_assert!(sliced_rows.insert(key, values).is_none(), "a group in two slices of view {}", view.name);
                }
            }
            let mut lake = rows_of(&computed, view);
            within_rounding(view, &records, &mut speed.clone(), &mut sliced_rows)?;
            within_rounding(view, &records, &mut speed, &mut lake)?;
            prop_assert_eq!(&speed, &lake, "view {}", view.name);
            prop_assert_eq!(&speed, &sliced_rows, "view {} in {} time slices", view.name, slices.len());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A computed view's rows by key and bucket, as text.
fn rows_of(computed: &DataFrame, view: &View) -> Rows {
    let mut lake: Rows = BTreeMap::new();
    for row in 0..computed.height() {
        let key = view
            .group_by
            .iter()
            .map(|g| any_text(computed.column(g.as_str()).unwrap().get(row).unwrap()))
            .collect();
        let bucket = computed
            .column(BUCKET_START)
            .unwrap()
            .get(row)
            .unwrap()
            .extract::<i64>()
            .unwrap();
        let values = view
            .metrics
            .iter()
            .map(|m| {
                any_text(
                    computed
                        .column(m.column.as_str())
                        .unwrap()
                        .get(row)
                        .unwrap(),
                )
            })
            .collect();
        lake.insert((key, bucket), values);
    }
    lake
}
