//! The sketches of a view's distinct metrics, folded over the streamed records instead of
//! grouped by Polars.
//!
//! Polars' streaming engine lowers "the distinct values of each group" to a group-by per
//! (group, value): about one entry per record, 1.4 GiB at 10 M records. Here the records
//! stream through once (only the key columns and each value's hash), and each group folds its
//! hashes into its sketch as the speed layer does ([`schemas::sketch::Sketch`]): a small
//! group keeps its few distinct hashes (8 bytes each, the EXPLICIT form), a large one its
//! registers (one byte each), so memory follows the groups, not the records. Spark's distinct
//! values become sketches here too ([`sketch_columns_of_values`]).

use std::sync::{Arc, Mutex, PoisonError};

use hashbrown::HashMap;
use polars::prelude::*;
use schemas::EventSchema;
use schemas::event_schema::FieldType;
use schemas::plan::{Fold, MetricPlan, SketchType};
use schemas::quantile::{QuantileParams, QuantileSketch};
use schemas::sample::{SampleParams, SampleSketch};
use schemas::sketch::{Sketch, SketchParams, hash_i64, hash_text};
use schemas::view::View;

/// One key column of a batch, typed so that building a key reads it without conversions:
/// views group by string, i64 and bool fields only (config validation), and by the bucket.
enum KeyColumn<'a> {
    Text(&'a StringChunked),
    Int(&'a Int64Chunked),
    Bool(&'a BooleanChunked),
}

impl<'a> KeyColumn<'a> {
    fn of(column: &'a Column) -> PolarsResult<Self> {
        let series = column.as_materialized_series();
        Ok(match series.dtype() {
            DataType::String => KeyColumn::Text(series.str()?),
            DataType::Int64 => KeyColumn::Int(series.i64()?),
            DataType::Boolean => KeyColumn::Bool(series.bool()?),
            other => {
                polars_bail!(ComputeError: "group-by column `{}` is {other}; only string, i64 and bool fields can be grouped by", series.name())
            }
        })
    }

    /// Appends the value at `row`: a tag (null or not), then a length where values vary in
    /// length, so that no two different keys have the same bytes.
    fn push(&self, key: &mut Vec<u8>, row: usize) {
        fn tagged(key: &mut Vec<u8>, bytes: Option<&[u8]>) {
            match bytes {
                None => key.push(0),
                Some(bytes) => {
                    key.push(1);
                    key.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                    key.extend_from_slice(bytes);
                }
            }
        }
        match self {
            KeyColumn::Text(values) => tagged(key, values.get(row).map(str::as_bytes)),
            KeyColumn::Int(values) => tagged(
                key,
                values
                    .get(row)
                    .map(i64::to_le_bytes)
                    .as_ref()
                    .map(|b| &b[..]),
            ),
            KeyColumn::Bool(values) => tagged(
                key,
                values
                    .get(row)
                    .map(|b| [u8::from(b)])
                    .as_ref()
                    .map(|b| &b[..]),
            ),
        }
    }
}

/// The key bytes of `row`: every key column's value in turn, into `key` (emptied first).
fn key_of(columns: &[KeyColumn<'_>], row: usize, key: &mut Vec<u8>) {
    key.clear();
    for column in columns {
        column.push(key, row);
    }
}

/// What a metric folded here keeps per group.
#[derive(Debug, Clone, Copy)]
enum SketchKind {
    /// A distinct count: the values' hashes into a HyperLogLog sketch.
    Hll(SketchParams),
    /// Quantiles: the values (as f64) into a quantile sketch.
    Quantile(QuantileParams),
    /// A sample: each record offered by its position, with its fields.
    Sample(SampleParams),
}

/// One group's sketch of one metric.
#[derive(Debug, Clone)]
enum GroupSketch {
    Hll(Sketch),
    Quantile(QuantileSketch),
    Sample(SampleSketch),
}

impl SketchKind {
    fn empty(self) -> GroupSketch {
        match self {
            SketchKind::Hll(params) => GroupSketch::Hll(Sketch::new(params)),
            SketchKind::Quantile(params) => GroupSketch::Quantile(QuantileSketch::new(params)),
            SketchKind::Sample(params) => GroupSketch::Sample(SampleSketch::new(params)),
        }
    }

    /// The streamed column of a metric's field: hashes, or values as f64.
    fn input(self, field: &str) -> Expr {
        match self {
            SketchKind::Hll(_) => hashes(col(field)),
            SketchKind::Quantile(_) => col(field).cast(DataType::Float64),
            SketchKind::Sample(_) => col(schemas::arrow::PARTITION),
        }
    }
}

impl GroupSketch {
    /// The stored form: the `hll` bytes, or a quantile sketch's `bigint[]` in PostgreSQL's
    /// binary array format (what binary COPY sends); `None` when no record had the field.
    fn stored(&self) -> Option<Vec<u8>> {
        match self {
            GroupSketch::Hll(sketch) => (!sketch.is_empty()).then(|| sketch.to_bytes()),
            GroupSketch::Quantile(sketch) => (sketch.count() > 0).then(|| sketch.to_pg_binary()),
            GroupSketch::Sample(sample) => (!sample.is_empty()).then(|| sample.to_pg_binary()),
        }
    }
}

/// Each group's sketches, one per sketch metric, by the group's key bytes (hashbrown's
/// default hasher: fast, and seeded per process, as keys come from any producer).
struct GroupSketches {
    key_names: Vec<PlSmallStr>,
    kinds: Vec<SketchKind>,
    groups: HashMap<Vec<u8>, Vec<GroupSketch>>,
    /// The event schema, whose fields a sample keeps (streamed as `__sample_field_{i}`, with
    /// `__sample_offset`, when a metric samples).
    schema: EventSchema,
}

const SAMPLE_OFFSET: &str = "__sample_offset";

fn sample_field(index: usize) -> PlSmallStr {
    format!("__sample_field_{index}").into()
}

/// The fields of the record at `row` of a streamed batch, as [`schemas::sample::fields_of`]
/// builds them from a record.
fn sample_fields(
    schema: &EventSchema,
    batch: &DataFrame,
    row: usize,
) -> PolarsResult<serde_json::Map<String, serde_json::Value>> {
    sample_fields_named(schema, batch, row, sample_field)
}

/// [`sample_fields`] from columns named by `column_of(field index)`.
fn sample_fields_named(
    schema: &EventSchema,
    batch: &DataFrame,
    row: usize,
    column_of: impl Fn(usize) -> PlSmallStr,
) -> PolarsResult<serde_json::Map<String, serde_json::Value>> {
    let mut fields = serde_json::Map::new();
    for (index, field) in schema.fields.iter().enumerate() {
        let column = batch.column(&column_of(index))?;
        let json = match field.field_type {
            FieldType::String => column
                .str()?
                .get(row)
                .map(|t| serde_json::Value::String(t.to_string())),
            FieldType::I64 | FieldType::Timestamp => {
                column.i64()?.get(row).map(|n| serde_json::json!(n))
            }
            FieldType::F64 => column.f64()?.get(row).map(|n| serde_json::json!(n)),
            FieldType::Bool => column.bool()?.get(row).map(serde_json::Value::Bool),
        };
        if let Some(json) = json {
            fields.insert(field.name.clone(), json);
        }
    }
    Ok(fields)
}

impl GroupSketches {
    fn hash_column(metric: usize) -> PlSmallStr {
        format!("__hashes_{metric}").into()
    }

    fn key_columns<'a>(&self, frame: &'a DataFrame) -> PolarsResult<Vec<KeyColumn<'a>>> {
        self.key_names
            .iter()
            .map(|name| KeyColumn::of(frame.column(name)?))
            .collect()
    }

    /// Folds one streamed batch: key columns and one input column per metric.
    fn add(&mut self, mut batch: DataFrame) -> PolarsResult<()> {
        batch.rechunk_mut();
        let keys = self.key_columns(&batch)?;
        let inputs: Vec<&Column> = (0..self.kinds.len())
            .map(|m| batch.column(&Self::hash_column(m)))
            .collect::<PolarsResult<_>>()?;
        let mut key = Vec::with_capacity(64);
        for row in 0..batch.height() {
            key_of(&keys, row, &mut key);
            let sketches = match self.groups.get_mut(key.as_slice()) {
                Some(sketches) => sketches,
                None => self
                    .groups
                    .entry(key.clone())
                    .or_insert_with(|| self.kinds.iter().map(|k| k.empty()).collect()),
            };
            for (sketch, column) in sketches.iter_mut().zip(&inputs) {
                match sketch {
                    GroupSketch::Hll(sketch) => {
                        if let Some(hash) = column.u64()?.get(row) {
                            sketch.add_hash(hash);
                        }
                    }
                    GroupSketch::Quantile(sketch) => {
                        if let Some(value) = column.f64()?.get(row) {
                            // Validation passes finite values only, as in the speed layer.
                            let _ = sketch.add(value);
                        }
                    }
                    GroupSketch::Sample(sample) => {
                        let partition = column.i32()?.get(row);
                        let offset = batch.column(SAMPLE_OFFSET)?.i64()?.get(row);
                        if let (Some(partition), Some(offset)) = (partition, offset)
                            && sample.would_keep(partition, offset)
                        {
                            let fields = sample_fields(&self.schema, &batch, row)?;
                            // Validation refused NUL in text before the lake stored it.
                            let _ = sample.add(partition, offset, fields);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Each distinct metric's sketch column (named as the metric's column) for the rows of
/// `computed`, whose key columns are `keys`' names: `records` streamed once through `keys`
/// and each metric's value hashes. A group none of whose records had the field gets null.
pub fn sketch_columns(
    records: LazyFrame,
    keys: &[Expr],
    key_names: Vec<PlSmallStr>,
    computed: &DataFrame,
    view: &View,
    schema: &EventSchema,
) -> PolarsResult<Vec<Column>> {
    let metrics: Vec<(&str, SketchKind, &str)> = view
        .metrics
        .iter()
        .filter_map(|m| {
            Some((
                m.field.as_deref().unwrap_or_default(),
                sketch_kind(&MetricPlan::of(m))?,
                m.column.as_str(),
            ))
        })
        .collect();
    let mut select: Vec<Expr> = keys.to_vec();
    for (index, (field, kind, _)) in metrics.iter().enumerate() {
        select.push(kind.input(field).alias(GroupSketches::hash_column(index)));
    }
    if metrics
        .iter()
        .any(|(_, kind, _)| matches!(kind, SketchKind::Sample(_)))
    {
        select.push(col(schemas::arrow::OFFSET).alias(SAMPLE_OFFSET));
        for (index, field) in schema.fields.iter().enumerate() {
            let value = match field.field_type {
                FieldType::Timestamp => col(field.name.as_str()).cast(DataType::Int64),
                _ => col(field.name.as_str()),
            };
            select.push(value.alias(sample_field(index)));
        }
    }
    let folded = Arc::new(Mutex::new(GroupSketches {
        key_names,
        kinds: metrics.iter().map(|(_, kind, _)| *kind).collect(),
        groups: HashMap::new(),
        schema: schema.clone(),
    }));
    let sink = Arc::clone(&folded);
    records
        .select(select)
        .sink_batches(
            PlanCallback::new(move |batch: DataFrame| {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .add(batch)?;
                Ok(false) // never stop early
            }),
            false,
            None,
        )?
        .collect_with_engine(Engine::Streaming)?;
    let folded = folded.lock().unwrap_or_else(PoisonError::into_inner);
    let keys = folded.key_columns(computed)?;
    let mut key = Vec::with_capacity(64);
    let groups: Vec<Option<&Vec<GroupSketch>>> = (0..computed.height())
        .map(|row| {
            key_of(&keys, row, &mut key);
            folded.groups.get(key.as_slice())
        })
        .collect();
    Ok(metrics
        .iter()
        .enumerate()
        .map(|(metric, (_, _, name))| {
            let sketches: BinaryChunked = groups
                .iter()
                .map(|group| (*group)?[metric].stored())
                .collect();
            sketches.with_name((*name).into()).into_column()
        })
        .collect())
}

/// What the batch folds here for a metric; `None` for metrics Polars (or Spark) aggregates.
fn sketch_kind(plan: &MetricPlan) -> Option<SketchKind> {
    match plan.fold {
        Fold::Sketch(SketchType::Hll(params)) => Some(SketchKind::Hll(params)),
        Fold::Sketch(SketchType::Quantile(params)) => Some(SketchKind::Quantile(params)),
        Fold::Sketch(SketchType::Sample(params)) => Some(SketchKind::Sample(params)),
        Fold::Add(_) | Fold::Least | Fold::Greatest => None,
    }
}

/// The hash of each value of a distinct metric's field, as the speed layer hashes it: strings
/// by [`hash_text`], integers by [`hash_i64`] (the only types a distinct metric accepts);
/// null stays null.
fn value_hashes(values: &Series) -> PolarsResult<Vec<Option<u64>>> {
    Ok(match values.dtype() {
        DataType::String => values.str()?.iter().map(|t| t.map(hash_text)).collect(),
        _ => values.i64()?.iter().map(|n| n.map(hash_i64)).collect(),
    })
}

/// Each value's hash ([`value_hashes`]); null stays null.
pub(super) fn hashes(values: Expr) -> Expr {
    values.map(
        move |column| {
            let hashes: UInt64Chunked = value_hashes(column.as_materialized_series())?
                .into_iter()
                .collect();
            Ok(hashes.with_name(column.name().clone()).into_column())
        },
        |_, field| Ok(Field::new(field.name().clone(), DataType::UInt64)),
    )
}

/// Replaces each distinct metric's column, the group's distinct values (Spark's
/// `collect_set`), by the group's sketch in the `hll` extension's storage format, built as the
/// speed layer builds it ([`schemas::sketch`]); null when no record of the group had the field.
/// (Polars' computation folds its sketches: [`sketch_columns`].)
pub(crate) fn sketch_columns_of_values(
    mut frame: DataFrame,
    view: &View,
    schema: &EventSchema,
) -> PolarsResult<DataFrame> {
    for metric in &view.metrics {
        let name = metric.column.as_str();
        let params = match sketch_kind(&MetricPlan::of(metric)) {
            Some(SketchKind::Hll(params)) => params,
            Some(SketchKind::Quantile(params)) => {
                let values = frame.column(name)?.list()?.clone();
                let mut sketches: Vec<Option<Vec<u8>>> = Vec::with_capacity(values.len());
                for group in values.amortized_iter() {
                    let mut sketch = QuantileSketch::new(params);
                    if let Some(group) = group {
                        for value in group.as_ref().f64()?.iter().flatten() {
                            let _ = sketch.add(value); // finite: validated
                        }
                    }
                    sketches.push((sketch.count() > 0).then(|| sketch.to_pg_binary()));
                }
                frame.replace(name, Series::new(name.into(), sketches).into_column())?;
                continue;
            }
            Some(SketchKind::Sample(params)) => {
                let records = frame.column(name)?.list()?.clone();
                let mut samples: Vec<Option<Vec<u8>>> = Vec::with_capacity(records.len());
                for group in records.amortized_iter() {
                    let mut sample = SampleSketch::new(params);
                    if let Some(group) = group {
                        let rows = group.as_ref().struct_()?.clone().unnest();
                        let (p, o) = (rows.column("p")?.i32()?, rows.column("o")?.i64()?);
                        for row in 0..rows.height() {
                            let (Some(partition), Some(offset)) = (p.get(row), o.get(row)) else {
                                continue;
                            };
                            if sample.would_keep(partition, offset) {
                                let fields = sample_fields_named(schema, &rows, row, |i| {
                                    format!("f{i}").into()
                                })?;
                                let _ = sample.add(partition, offset, fields);
                            }
                        }
                    }
                    samples.push((!sample.is_empty()).then(|| sample.to_pg_binary()));
                }
                frame.replace(name, Series::new(name.into(), samples).into_column())?;
                continue;
            }
            None => continue,
        };
        let values = frame.column(name)?.list()?.clone();
        let mut sketches: Vec<Option<Vec<u8>>> = Vec::with_capacity(values.len());
        for group in values.amortized_iter() {
            let mut sketch = Sketch::new(params);
            if let Some(group) = group {
                for hash in value_hashes(group.as_ref())?.into_iter().flatten() {
                    sketch.add_hash(hash);
                }
            }
            sketches.push((!sketch.is_empty()).then(|| sketch.to_bytes()));
        }
        frame.replace(name, Series::new(name.into(), sketches).into_column())?;
    }
    Ok(frame)
}
