//! The batch computation of a view with Polars: a lazy scan of a pinned version's Parquet
//! files, only the records below the cut, the view's filter, group-by and bucket, and the
//! mergeable metrics. The same definitions as the speed layer, from the schemas crate.

use std::collections::BTreeMap;

use polars::prelude::*;
use schemas::arrow::{OFFSET, PARTITION};
use schemas::plan::{ColumnType, Fold, Input, Term, ViewPlan};
use schemas::view::{Filter, FilterOp, View};
use schemas::{EventSchema, FieldType, Value};

use super::distinct;
use crate::lake::PinnedFiles;
use schemas::position::{Offset, Partition, Positions};

/// The bucket-start column of a computed view (microseconds since the epoch).
pub const BUCKET_START: &str = "bucket_start";

/// Runs a query on Polars' streaming engine: the scan is read in morsels and aggregated as it
/// goes, so memory follows the number of groups rather than the number of records, and reading
/// overlaps computing.
pub fn collect_streaming(frame: LazyFrame) -> PolarsResult<DataFrame> {
    frame
        .collect_with_engine(Engine::Streaming)
        .map(|result| result.unwrap_single())
}

/// A lazy scan of exactly the topic's records with `_offset < cut[_partition]`, less the positions the
/// speed layer dead-lettered as `refused_by_database` (`refused`: partition → offsets), so that
/// both layers leave out the same records. Partitions missing from the cut are left out: the
/// speed layer had no position for them, so they are all its own.
pub fn records_below_cut(
    pinned: &PinnedFiles,
    cut: &Positions,
    refused: &BTreeMap<Partition, Vec<Offset>>,
) -> PolarsResult<Option<LazyFrame>> {
    if pinned.is_empty() || cut.is_empty() {
        return Ok(None);
    }
    let scan = pinned.scan()?;
    let below = cut
        .iter()
        .map(|(&partition, &offset)| {
            col(PARTITION)
                .eq(lit(partition))
                .and(col(OFFSET).lt(lit(offset)))
        })
        .reduce(Expr::or)
        .expect("the cut is not empty");
    let keep = match not_refused(refused) {
        Some(not_refused) => below.and(not_refused),
        None => below,
    };
    Ok(Some(scan.filter(keep)))
}

/// A predicate true for every position but the refused ones; `None` when none were refused.
fn not_refused(refused: &BTreeMap<Partition, Vec<Offset>>) -> Option<Expr> {
    refused
        .iter()
        .flat_map(|(&partition, offsets)| {
            offsets.iter().map(move |&offset| {
                col(PARTITION)
                    .neq(lit(partition))
                    .or(col(OFFSET).neq(lit(offset)))
            })
        })
        .reduce(Expr::and)
}

/// The records of a table version less the positions the speed layer refused (see
/// [`records_below_cut`]).
pub fn records_except_refused(
    pinned: &PinnedFiles,
    refused: &BTreeMap<Partition, Vec<Offset>>,
) -> PolarsResult<LazyFrame> {
    let scan = pinned.scan()?;
    Ok(match not_refused(refused) {
        Some(keep) => scan.filter(keep),
        None => scan,
    })
}

fn literal(value: &Value) -> Expr {
    match value {
        Value::String(s) => lit(s.as_str()),
        Value::I64(v) | Value::Timestamp(v) => lit(*v),
        Value::F64(v) => lit(*v),
        Value::Bool(v) => lit(*v),
    }
}

/// The filter as a Polars predicate, with the same null semantics as the speed layer: an
/// absent field never passes.
fn predicate(filter: &Filter, schema: &EventSchema) -> Expr {
    let field_type = schema.fields[filter.field_index].field_type;
    let column = match field_type {
        FieldType::Timestamp => col(filter.field.as_str()).cast(DataType::Int64),
        _ => col(filter.field.as_str()),
    };
    let first = literal(&filter.values[0]);
    let test = match filter.op {
        FilterOp::Eq => column.clone().eq(first),
        FilterOp::Ne => column.clone().neq(first),
        FilterOp::Lt => column.clone().lt(first),
        FilterOp::Le => column.clone().lt_eq(first),
        FilterOp::Gt => column.clone().gt(first),
        FilterOp::Ge => column.clone().gt_eq(first),
        FilterOp::In => filter
            .values
            .iter()
            .map(|v| column.clone().eq(literal(v)))
            .reduce(Expr::or)
            .expect("in has values"),
    };
    column.is_not_null().and(test.fill_null(lit(false)))
}

/// The records the view counts: `records` less those its filter leaves out.
pub(super) fn view_records(records: LazyFrame, view: &View, schema: &EventSchema) -> LazyFrame {
    match &view.filter {
        Some(filter) => records.filter(predicate(filter, schema)),
        None => records,
    }
}

/// The start of the bucket of width `width` (µs) holding `micros`: the floor to the width,
/// like the speed layer's div_euclid. ((t % w) + w) % w is the non-negative remainder whatever
/// the sign convention of `%`.
pub(super) fn bucket_of(micros: Expr, width: i64) -> Expr {
    micros.clone() - ((micros % lit(width)) + lit(width)) % lit(width)
}

/// The view's rows: group columns, `bucket_start` (µs) and one column per metric, named as in
/// the PostgreSQL layout. Counts and sums start at zero; min and max of no values are null.
pub fn compute_view(
    records: LazyFrame,
    view: &View,
    schema: &EventSchema,
) -> PolarsResult<DataFrame> {
    let event_time = schema.event_time_field().name.as_str();
    let frame = view_records(records, view, schema);
    let micros = col(event_time).cast(DataType::Int64);
    let bucket = bucket_of(micros.clone(), view.bucket.micros());
    // A record's decay from its bucket's start, as [`schemas::view::Metric::decay_weight`]
    // computes it: 2^((t − bucket_start) / half_life), in f64.
    let decay = |half_life: i64| {
        lit(2.0f64).pow(
            ((micros.clone() - bucket.clone()).cast(DataType::Float64)) / lit(half_life as f64),
        )
    };
    let mut keys: Vec<Expr> = view.group_by.iter().map(|g| col(g.as_str())).collect();
    keys.push(bucket.clone().alias(BUCKET_START));
    // Sketches are folded apart ([`super::distinct`]); the rest aggregate here.
    let plan = ViewPlan::of(view);
    let aggregates: Vec<Expr> = plan
        .metrics
        .iter()
        .filter_map(|metric| {
            let (field, field_type) = match metric.input {
                Input::EveryRecord => (None, None),
                Input::Field {
                    index, field_type, ..
                } => (Some(schema.fields[index].name.as_str()), Some(field_type)),
            };
            let name = field.unwrap_or_default();
            let value = match (metric.stored, field_type) {
                (_, Some(FieldType::Timestamp)) => col(name).cast(DataType::Int64),
                // i64 sums in i128, like the speed layer's: never overflow, never wrap.
                (ColumnType::Numeric, _) => col(name).cast(DataType::Int128),
                _ => col(name),
            };
            let aggregate = match metric.fold {
                // `count`: every record; `count(f)`: records whose field is present.
                Fold::Add(Term::One) => match field {
                    None => len().cast(DataType::Int64),
                    Some(_) => col(name).count().cast(DataType::Int64),
                },
                Fold::Add(Term::Value) => value.sum(),
                Fold::Least => value.min(),
                Fold::Greatest => value.max(),
                Fold::Add(Term::Decayed { half_life }) => {
                    let weight = match field {
                        None => lit(1.0f64),
                        Some(_) => col(name).cast(DataType::Float64),
                    };
                    // Absent fields are null and add nothing; a bucket of none sums to 0.
                    (weight * decay(half_life.micros())).sum()
                }
                Fold::Sketch(_) => return None,
            };
            Some(aggregate.alias(metric.column.as_str()))
        })
        .collect();
    // Sorted by key and bucket, so that the loaded rows of one key sit together on disk and a
    // query for one key reads a few pages rather than one page per row.
    let mut key_names: Vec<PlSmallStr> = view.group_by.iter().map(|g| g.as_str().into()).collect();
    key_names.push(BUCKET_START.into());
    let mut computed =
        collect_streaming(frame.clone().group_by(keys.clone()).agg(aggregates).sort(
            key_names.clone(),
            SortMultipleOptions::default().with_nulls_last(true),
        ))?;
    if plan.has_sketches() {
        let sketches =
            distinct::sketch_columns(frame, &keys, key_names.clone(), &computed, view, schema)?;
        computed.hstack_mut(&sketches)?;
        let columns = key_names
            .into_iter()
            .chain(view.metrics.iter().map(|m| m.column.as_str().into()));
        computed = computed.select(columns)?;
    }
    Ok(computed)
}
