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
use schemas::sample::{SampleParams, SampleSketch, position_hash, rendered_size};
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
    Sample(SampleCandidates),
}

/// A group's sample while the records stream: the K lowest positions offered so far, in rank
/// order, each with its fields packed into one allocation ([`PackedFields`]; they become JSON
/// only at the end, [`SampleCandidates::finish`]). Every group of a view keeps its candidates
/// until the scan ends, so their size is the batch's memory per group: packed, a candidate
/// takes 5 bytes plus each text's length, 9 bytes per number and 1 per boolean or absent
/// value, in one allocation, where typed values took 32 bytes per field plus an allocation per
/// text (the demo's page views: 28 MiB of candidates became 8.6 MiB, heaptrack, 600,000
/// records).
#[derive(Debug, Clone)]
struct SampleCandidates {
    params: SampleParams,
    kept: Vec<Candidate>,
}

/// A record among the K lowest positions offered.
#[derive(Debug, Clone)]
struct Candidate {
    rank: CandidateRank,
    fields: CandidateFields,
}

/// Where a candidate sorts, as the sample orders its records: the position's hash
/// ([`position_hash`]), then the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CandidateRank {
    hash: i64,
    partition: i32,
    offset: i64,
}

impl CandidateRank {
    fn of(partition: i32, offset: i64) -> Self {
        Self {
            hash: position_hash(partition, offset),
            partition,
            offset,
        }
    }
}

/// A candidate's fields: its values, or, for a record whose text alone exceeds the sample's
/// bound, only the size the sample records for it (so a candidate never holds more than about
/// the bound).
#[derive(Debug, Clone)]
enum CandidateFields {
    Values(PackedFields),
    Omitted(usize),
}

/// A record's field values in one allocation, in the event schema's field order: per field a
/// tag byte, then a text's length (u32) and bytes, an integer's or a float's 8 bytes, or
/// nothing (absent, false, true).
#[derive(Debug, Clone)]
struct PackedFields(Box<[u8]>);

impl PackedFields {
    const ABSENT: u8 = 0;
    const TEXT: u8 = 1;
    const INT: u8 = 2;
    const FLOAT: u8 = 3;
    const FALSE: u8 = 4;
    const TRUE: u8 = 5;

    /// Packs `values`; texts are at most the sample's bound (a candidate above it is
    /// [`CandidateFields::Omitted`]), so their lengths fit a u32.
    fn pack(values: &[Option<FieldValue>], packed: &mut Vec<u8>) -> Self {
        packed.clear();
        for value in values {
            match value {
                None => packed.push(Self::ABSENT),
                Some(FieldValue::Text(text)) => {
                    let length = u32::try_from(text.len()).expect("a sampled text fits a u32");
                    packed.push(Self::TEXT);
                    packed.extend_from_slice(&length.to_le_bytes());
                    packed.extend_from_slice(text.as_bytes());
                }
                Some(FieldValue::Int(n)) => {
                    packed.push(Self::INT);
                    packed.extend_from_slice(&n.to_le_bytes());
                }
                Some(FieldValue::Float(n)) => {
                    packed.push(Self::FLOAT);
                    packed.extend_from_slice(&n.to_bits().to_le_bytes());
                }
                Some(FieldValue::Bool(b)) => packed.push(if *b { Self::TRUE } else { Self::FALSE }),
            }
        }
        Self(packed.as_slice().into())
    }

    /// The values [`PackedFields::pack`] packed (only ever bytes it wrote: a short read or an
    /// unknown tag is a bug, and panics).
    fn unpack(&self) -> Vec<Option<FieldValue>> {
        fn eight(rest: &mut &[u8]) -> [u8; 8] {
            let (head, tail) = rest.split_first_chunk::<8>().expect("8 packed bytes");
            *rest = tail;
            *head
        }
        let mut values = Vec::new();
        let mut rest: &[u8] = &self.0;
        while let Some((&tag, tail)) = rest.split_first() {
            rest = tail;
            values.push(match tag {
                Self::ABSENT => None,
                Self::TEXT => {
                    let (length, tail) = rest.split_first_chunk::<4>().expect("a packed length");
                    let (text, tail) = tail.split_at(u32::from_le_bytes(*length) as usize);
                    rest = tail;
                    Some(FieldValue::Text(
                        std::str::from_utf8(text)
                            .expect("packed from a String")
                            .to_string(),
                    ))
                }
                Self::INT => Some(FieldValue::Int(i64::from_le_bytes(eight(&mut rest)))),
                Self::FLOAT => Some(FieldValue::Float(f64::from_bits(u64::from_le_bytes(
                    eight(&mut rest),
                )))),
                Self::FALSE => Some(FieldValue::Bool(false)),
                Self::TRUE => Some(FieldValue::Bool(true)),
                other => unreachable!("packed fields hold no tag {other}"),
            });
        }
        values
    }
}

/// One field's value of a sampled record, in the event schema's field order.
#[derive(Debug, Clone)]
enum FieldValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl SampleCandidates {
    fn new(params: SampleParams) -> Self {
        Self {
            params,
            kept: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Offers the record at a position; `fill` writes its values into `scratch.values` (whose
    /// strings it may reuse) when it ranks. A record with NUL in a text value is passed over,
    /// as [`SampleSketch::add`] refuses it (the lake never holds one: validation refuses NUL);
    /// a second offer of a kept position changes nothing (a sample keeps the first).
    fn offer(
        &mut self,
        schema: &EventSchema,
        partition: i32,
        offset: i64,
        scratch: &mut OfferScratch,
        fill: impl FnOnce(&mut Vec<Option<FieldValue>>),
    ) {
        let rank = CandidateRank::of(partition, offset);
        let k = self.params.k() as usize;
        let full = self.kept.len() >= k;
        if full && self.kept.last().is_none_or(|largest| rank >= largest.rank) {
            return;
        }
        let Err(at) = self.kept.binary_search_by_key(&rank, |kept| kept.rank) else {
            return;
        };
        let OfferScratch { values, packed } = scratch;
        fill(values);
        let mut text_bytes = 0usize;
        for value in values.iter().flatten() {
            if let FieldValue::Text(text) = value {
                if text.contains('\0') {
                    return;
                }
                text_bytes = text_bytes.saturating_add(text.len());
            }
        }
        // The rendered size is at least the text's bytes: above the bound, the sample keeps
        // only the size, so only the size is kept here.
        let fields = if text_bytes > self.params.max_record_bytes() as usize {
            CandidateFields::Omitted(rendered_size(&json_fields(schema, values)))
        } else {
            CandidateFields::Values(PackedFields::pack(values, packed))
        };
        if full {
            self.kept.pop();
        }
        self.kept.insert(at, Candidate { rank, fields });
    }

    /// The sample with its records' fields: the K lowest positions offered, each with the
    /// fields [`schemas::sample::fields_of`] gives its record.
    fn finish(&self, schema: &EventSchema) -> SampleSketch {
        let mut sample = SampleSketch::new(self.params);
        for candidate in &self.kept {
            let CandidateRank {
                partition, offset, ..
            } = candidate.rank;
            match &candidate.fields {
                CandidateFields::Values(packed) => {
                    // Never NUL: `offer` passed such records over.
                    let _ = sample.add(partition, offset, json_fields(schema, &packed.unpack()));
                }
                CandidateFields::Omitted(size) => sample.add_omitted(partition, offset, *size),
            }
        }
        sample
    }
}

/// The JSON object of a record's fields, as [`schemas::sample::fields_of`] builds it: absent
/// fields left out.
fn json_fields(
    schema: &EventSchema,
    values: &[Option<FieldValue>],
) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = serde_json::Map::new();
    for (field, value) in schema.fields.iter().zip(values) {
        let json = match value {
            None => continue,
            Some(FieldValue::Text(t)) => serde_json::Value::String(t.clone()),
            Some(FieldValue::Int(n)) => serde_json::json!(n),
            Some(FieldValue::Float(n)) => serde_json::json!(n),
            Some(FieldValue::Bool(b)) => serde_json::Value::Bool(*b),
        };
        fields.insert(field.name.clone(), json);
    }
    fields
}

impl SketchKind {
    fn empty(self) -> GroupSketch {
        match self {
            SketchKind::Hll(params) => GroupSketch::Hll(Sketch::new(params)),
            SketchKind::Quantile(params) => GroupSketch::Quantile(QuantileSketch::new(params)),
            SketchKind::Sample(params) => GroupSketch::Sample(SampleCandidates::new(params)),
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
    /// The stored form: the `hll` bytes, a quantile sketch's `bigint[]` in PostgreSQL's binary
    /// array format, or a sample's `jsonb` in its binary form (what binary COPY sends); `None`
    /// when no record had the field.
    fn stored(&self, schema: &EventSchema) -> Option<Vec<u8>> {
        match self {
            GroupSketch::Hll(sketch) => (!sketch.is_empty()).then(|| sketch.to_bytes()),
            GroupSketch::Quantile(sketch) => (sketch.count() > 0).then(|| sketch.to_pg_binary()),
            GroupSketch::Sample(sample) => {
                (!sample.is_empty()).then(|| sample.finish(schema).to_pg_binary())
            }
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
    /// A sampled record's values while it is offered, reused from record to record.
    scratch: OfferScratch,
}

/// What [`SampleCandidates::offer`] reuses from one record to the next: the offered record's
/// values and the bytes it packs them into.
#[derive(Debug, Default)]
struct OfferScratch {
    values: Vec<Option<FieldValue>>,
    packed: Vec<u8>,
}

const SAMPLE_OFFSET: &str = "__sample_offset";

fn sample_field(index: usize) -> PlSmallStr {
    format!("__sample_field_{index}").into()
}

/// A batch's column of one event-schema field, typed once per batch.
enum FieldColumn<'a> {
    Text(&'a StringChunked),
    Int(&'a Int64Chunked),
    Float(&'a Float64Chunked),
    Bool(&'a BooleanChunked),
}

/// The columns of the event schema's fields in `batch`, named by `column_of(field index)`.
fn field_columns<'a>(
    schema: &EventSchema,
    batch: &'a DataFrame,
    column_of: impl Fn(usize) -> PlSmallStr,
) -> PolarsResult<Vec<FieldColumn<'a>>> {
    schema
        .fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let column = batch.column(&column_of(index))?;
            Ok(match field.field_type {
                FieldType::String => FieldColumn::Text(column.str()?),
                FieldType::I64 | FieldType::Timestamp => FieldColumn::Int(column.i64()?),
                FieldType::F64 => FieldColumn::Float(column.f64()?),
                FieldType::Bool => FieldColumn::Bool(column.bool()?),
            })
        })
        .collect()
}

/// The field values of the record at `row`.
fn field_values(columns: &[FieldColumn<'_>], row: usize) -> Vec<Option<FieldValue>> {
    let mut values = Vec::new();
    field_values_into(columns, row, &mut values);
    values
}

/// [`field_values`] into `values`, reusing the strings it holds.
fn field_values_into(
    columns: &[FieldColumn<'_>],
    row: usize,
    values: &mut Vec<Option<FieldValue>>,
) {
    values.resize(columns.len(), None);
    for (column, value) in columns.iter().zip(values.iter_mut()) {
        match column {
            FieldColumn::Text(texts) => match (texts.get(row), value) {
                (Some(text), Some(FieldValue::Text(kept))) => {
                    kept.clear();
                    kept.push_str(text);
                }
                (text, value) => *value = text.map(|t| FieldValue::Text(t.to_string())),
            },
            FieldColumn::Int(ints) => *value = ints.get(row).map(FieldValue::Int),
            FieldColumn::Float(floats) => *value = floats.get(row).map(FieldValue::Float),
            FieldColumn::Bool(bools) => *value = bools.get(row).map(FieldValue::Bool),
        }
    }
}

/// A streamed batch's input column of one sketch metric, typed once per batch.
enum InputColumn<'a> {
    Hashes(&'a UInt64Chunked),
    Values(&'a Float64Chunked),
    Partitions(&'a Int32Chunked),
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
        let inputs: Vec<InputColumn<'_>> = self
            .kinds
            .iter()
            .enumerate()
            .map(|(m, kind)| {
                let column = batch.column(&Self::hash_column(m))?;
                Ok(match kind {
                    SketchKind::Hll(_) => InputColumn::Hashes(column.u64()?),
                    SketchKind::Quantile(_) => InputColumn::Values(column.f64()?),
                    SketchKind::Sample(_) => InputColumn::Partitions(column.i32()?),
                })
            })
            .collect::<PolarsResult<_>>()?;
        let sampling = self
            .kinds
            .iter()
            .any(|kind| matches!(kind, SketchKind::Sample(_)));
        let (offsets, fields) = if sampling {
            (
                Some(batch.column(SAMPLE_OFFSET)?.i64()?),
                field_columns(&self.schema, &batch, sample_field)?,
            )
        } else {
            (None, Vec::new())
        };
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
            for (sketch, input) in sketches.iter_mut().zip(&inputs) {
                match (sketch, input) {
                    (GroupSketch::Hll(sketch), InputColumn::Hashes(hashes)) => {
                        if let Some(hash) = hashes.get(row) {
                            sketch.add_hash(hash);
                        }
                    }
                    (GroupSketch::Quantile(sketch), InputColumn::Values(values)) => {
                        if let Some(value) = values.get(row) {
                            // Validation passes finite values only, as in the speed layer.
                            let _ = sketch.add(value);
                        }
                    }
                    (GroupSketch::Sample(sample), InputColumn::Partitions(partitions)) => {
                        let offset = offsets.and_then(|offsets| offsets.get(row));
                        if let (Some(partition), Some(offset)) = (partitions.get(row), offset) {
                            sample.offer(
                                &self.schema,
                                partition,
                                offset,
                                &mut self.scratch,
                                |values| field_values_into(&fields, row, values),
                            );
                        }
                    }
                    _ => {
                        polars_bail!(ComputeError: "a sketch metric's input column does not match its kind")
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
        scratch: OfferScratch::default(),
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
    let mut guard = folded.lock().unwrap_or_else(PoisonError::into_inner);
    let folded = &mut *guard;
    let keys = folded.key_columns(computed)?;
    let mut key = Vec::with_capacity(64);
    let mut columns: Vec<BinaryChunkedBuilder> = metrics
        .iter()
        .map(|(_, _, name)| BinaryChunkedBuilder::new((*name).into(), computed.height()))
        .collect();
    // Each group's sketches leave the fold as their stored forms are made (groups are unique
    // in `computed`), so the fold and its stored forms are not held whole at once.
    for row in 0..computed.height() {
        key_of(&keys, row, &mut key);
        let group = folded.groups.remove(key.as_slice());
        for (metric, column) in columns.iter_mut().enumerate() {
            column.append_option(
                group
                    .as_ref()
                    .and_then(|sketches| sketches[metric].stored(&folded.schema)),
            );
        }
    }
    Ok(columns
        .into_iter()
        .map(|column| column.finish().into_column())
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
                        let columns = field_columns(schema, &rows, |i| format!("f{i}").into())?;
                        for row in 0..rows.height() {
                            let (Some(partition), Some(offset)) = (p.get(row), o.get(row)) else {
                                continue;
                            };
                            if sample.would_keep(partition, offset) {
                                let fields = json_fields(schema, &field_values(&columns, row));
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

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::event_schema::FieldDef;

    fn schema() -> EventSchema {
        let field = |name: &str, field_type| FieldDef {
            name: name.into(),
            field_type,
            required: false,
            path: None,
        };
        EventSchema {
            fields: vec![
                field("ts", FieldType::Timestamp),
                field("user", FieldType::String),
                field("qty", FieldType::I64),
                field("price", FieldType::F64),
                field("member", FieldType::Bool),
            ],
            event_time_index: 0,
            max_record_bytes: 1 << 20,
            max_string_bytes: 1 << 10,
            event_time_min_micros: 0,
            event_time_max_micros: i64::MAX,
            wire: Default::default(),
        }
    }

    /// A record's values, some absent, from its position and a version (a second offer of
    /// the same position carries other values); some text long, some with NUL.
    fn values(partition: i32, offset: i64, version: i64) -> Vec<Option<FieldValue>> {
        let user = match offset % 13 {
            0 => format!("u-{partition}-{offset}-{version}-").repeat(40), // above a small bound
            1 => format!("nul\0{offset}"),
            // The text alone exactly at the small bound (64 bytes), and one byte over.
            2 => format!("{offset:0>64}"),
            3 => format!("{offset:0>65}"),
            _ => format!("u-{partition}-{offset}-{version}"),
        };
        vec![
            Some(FieldValue::Int(offset * 1_000)),
            (offset % 7 != 0).then_some(FieldValue::Text(user)),
            Some(FieldValue::Int(i64::MIN + offset + version)),
            (offset % 3 != 0).then_some(FieldValue::Float(offset as f64 / 3.0 * 1e300)),
            (offset % 5 != 0).then_some(FieldValue::Bool(offset % 2 == 0)),
        ]
    }

    /// Offers the same records to the candidates and, with their fields, to a sample (the
    /// speed layer's way, which refuses a record with NUL), and compares the two.
    fn offer_both(k: i64, max_record_bytes: i64, offers: &[(i32, i64, i64)]) {
        let schema = schema();
        let params = SampleParams::new(k)
            .unwrap()
            .with_max_record_bytes(max_record_bytes)
            .unwrap();
        let mut candidates = SampleCandidates::new(params);
        let mut every = SampleSketch::new(params);
        let mut scratch = OfferScratch::default();
        for &(partition, offset, version) in offers {
            candidates.offer(&schema, partition, offset, &mut scratch, |into| {
                *into = values(partition, offset, version)
            });
            let _ = every.add(
                partition,
                offset,
                json_fields(&schema, &values(partition, offset, version)),
            );
            assert!(
                candidates.kept.len() <= k as usize,
                "K = {k}: {} candidates",
                candidates.kept.len()
            );
        }
        let sample = candidates.finish(&schema);
        assert_eq!(sample.to_json(), every.to_json(), "K = {k}");
        assert_eq!(
            candidates.is_empty(),
            every.is_empty(),
            "K = {k}: a stored sample exactly when the sample has records"
        );
    }

    /// Packing keeps every value bit for bit: float extremes, -0.0, NaN payloads and
    /// subnormals, i64 extremes, empty and multi-byte text, booleans and absent values.
    #[test]
    fn packed_fields_unpack_to_the_same_bits() {
        let texts = ["", "é", "日本語 🎉", "a\u{7f}b", &"x".repeat(70_000)];
        let floats = [
            0.0,
            -0.0,
            f64::MIN_POSITIVE / 4.0,
            -f64::MIN_POSITIVE / 3.0,
            1e308,
            -1e308,
            f64::MAX,
            f64::MIN,
            f64::from_bits(0x7ff8_0000_0000_1234),
            f64::INFINITY,
        ];
        let mut values: Vec<Option<FieldValue>> = vec![None];
        values.extend(texts.iter().map(|t| Some(FieldValue::Text(t.to_string()))));
        values.extend(floats.iter().map(|&f| Some(FieldValue::Float(f))));
        values.extend([i64::MIN, -1, 0, i64::MAX].map(|n| Some(FieldValue::Int(n))));
        values.extend([true, false].map(|b| Some(FieldValue::Bool(b))));
        values.push(None);
        let mut buffer = Vec::new();
        let unpacked = PackedFields::pack(&values, &mut buffer).unpack();
        assert_eq!(unpacked.len(), values.len());
        for (before, after) in values.iter().zip(&unpacked) {
            match (before, after) {
                (None, None) => {}
                (Some(FieldValue::Text(a)), Some(FieldValue::Text(b))) => assert_eq!(a, b),
                (Some(FieldValue::Int(a)), Some(FieldValue::Int(b))) => assert_eq!(a, b),
                (Some(FieldValue::Float(a)), Some(FieldValue::Float(b))) => {
                    assert_eq!(a.to_bits(), b.to_bits())
                }
                (Some(FieldValue::Bool(a)), Some(FieldValue::Bool(b))) => assert_eq!(a, b),
                other => panic!("packed {:?}, unpacked {:?}", other.0, other.1),
            }
        }
    }

    /// The batch's candidates keep the same records, with the same fields (omitted ones by
    /// their size), as a sample offered every record with its fields, whatever K, whatever
    /// the order and however often a position is offered again.
    #[test]
    fn candidates_keep_what_a_sample_of_every_record_keeps() {
        let mut offers: Vec<(i32, i64, i64)> = (0..5_000i64)
            .map(|i| ((i % 3) as i32, i * 7 + i / 11, 0))
            .collect();
        for k in [1, 5, 64, 1_000] {
            offer_both(k, 1 << 10, &offers);
            offer_both(k, 64, &offers);
        }
        // Highest hash first: every record ranks when offered, and most are displaced.
        offers.sort_by_key(|&(p, o, _)| std::cmp::Reverse(position_hash(p, o)));
        offer_both(5, 1 << 10, &offers);
        // Every position offered three times, with other values each time: the first stays.
        let repeated: Vec<(i32, i64, i64)> = offers
            .iter()
            .flat_map(|&(p, o, _)| [(p, o, 0), (p, o, 1), (p, o, 2)])
            .collect();
        offer_both(5, 1 << 10, &repeated);
        offer_both(64, 64, &repeated);
    }
}
