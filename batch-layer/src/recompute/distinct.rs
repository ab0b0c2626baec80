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
use schemas::plan::{Fold, MetricPlan, SketchType};
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

/// Each group's sketches, one per distinct metric, by the group's key bytes (hashbrown's
/// default hasher: fast, and seeded per process, as keys come from any producer).
struct GroupSketches {
    key_names: Vec<PlSmallStr>,
    params: Vec<SketchParams>,
    groups: HashMap<Vec<u8>, Vec<Sketch>>,
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

    /// Folds one streamed batch: key columns and one hash column per metric.
    fn add(&mut self, mut batch: DataFrame) -> PolarsResult<()> {
        batch.rechunk_mut();
        let keys = self.key_columns(&batch)?;
        let hashes: Vec<&UInt64Chunked> = (0..self.params.len())
            .map(|m| batch.column(&Self::hash_column(m))?.u64())
            .collect::<PolarsResult<_>>()?;
        let mut key = Vec::with_capacity(64);
        for row in 0..batch.height() {
            key_of(&keys, row, &mut key);
            let sketches = match self.groups.get_mut(key.as_slice()) {
                Some(sketches) => sketches,
                None => self
                    .groups
                    .entry(key.clone())
                    .or_insert_with(|| self.params.iter().map(|p| Sketch::new(*p)).collect()),
            };
            for (sketch, column) in sketches.iter_mut().zip(&hashes) {
                if let Some(hash) = column.get(row) {
                    sketch.add_hash(hash);
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
) -> PolarsResult<Vec<Column>> {
    let metrics: Vec<(&str, SketchParams, &str)> = view
        .metrics
        .iter()
        .filter_map(|m| {
            Some((
                m.field.as_deref()?,
                hll_params(&MetricPlan::of(m))?,
                m.column.as_str(),
            ))
        })
        .collect();
    let mut select: Vec<Expr> = keys.to_vec();
    for (index, (field, _, _)) in metrics.iter().enumerate() {
        select.push(hashes(col(*field)).alias(GroupSketches::hash_column(index)));
    }
    let folded = Arc::new(Mutex::new(GroupSketches {
        key_names,
        params: metrics.iter().map(|(_, params, _)| *params).collect(),
        groups: HashMap::new(),
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
    let groups: Vec<Option<&Vec<Sketch>>> = (0..computed.height())
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
                .map(|group| {
                    let sketch = &(*group)?[metric];
                    (!sketch.is_empty()).then(|| sketch.to_bytes())
                })
                .collect();
            sketches.with_name((*name).into()).into_column()
        })
        .collect())
}

/// The parameters of a metric the batch folds into a HyperLogLog sketch here; `None` for
/// metrics Polars (or Spark) aggregates.
fn hll_params(plan: &MetricPlan) -> Option<SketchParams> {
    match plan.fold {
        Fold::Sketch(SketchType::Hll(params)) => Some(params),
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
) -> PolarsResult<DataFrame> {
    for metric in &view.metrics {
        let Some(params) = hll_params(&MetricPlan::of(metric)) else {
            continue;
        };
        let name = metric.column.as_str();
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
