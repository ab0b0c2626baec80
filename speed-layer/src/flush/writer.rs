//! A view's prepared statements: the upsert of a micro-batch's rows and, for views with sketches
//! the writer merges itself, the read and update of the stored rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemas::FieldType;
use schemas::pg_layout::{ViewLayout, merge};
use schemas::plan::{ColumnType, SketchType, ViewPlan};
use schemas::quantile::QuantileSketch;
use schemas::sample::SampleSketch;
use schemas::view::View;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use crate::aggregate::{GroupBucket, KeyValue, MetricValue, SketchState, StoredSketch, ViewDeltas};
use crate::error::SpeedError;

/// The prepared statements of one view: its upsert and, for a view with metrics the writer
/// merges itself ([`merge::merged_by_the_writer`]), the statements that read and update the
/// stored rows ([`Premerge`]).
#[derive(Debug, Clone)]
pub struct ViewWriter {
    pub(super) view: String,
    sql: String,
    premerge: Option<Premerge>,
    metric_types: Vec<ColumnType>,
    group_types: Vec<FieldType>,
}

/// For a view with quantile or sample metrics: the stored rows of a flush's keys are read and
/// locked (`select_sql`), merged with the micro-batch in Rust, and written back with the merged
/// sketches (`update_sql`); only the rows not stored yet go through the upsert, whose SQL union
/// then only runs for a row another process inserted meanwhile. PostgreSQL's PL/pgSQL unions
/// cost 120-135 µs a row, 25 times an insert (docs/benchmarks.md, "Round three").
///
/// The rows are locked in two runs (the stored ones, then the new ones), so two processes
/// flushing the same view could each hold a row the other waits for. A transaction-level
/// advisory lock per view (`lock_sql`) orders them: such flushes of one view take turns, as
/// they would on their hot rows anyway.
#[derive(Debug, Clone)]
struct Premerge {
    /// Takes the view's advisory lock until the transaction ends. The two-key form: a key space
    /// apart from the one-key locks of batch runs and leaders.
    lock_sql: String,
    /// `SELECT u.i, t.ctid, t.<merged columns>`, each row locked `FOR UPDATE`, over the keys
    /// without a NULL part.
    select_sql: String,
    /// `UPDATE … SET …` of stored rows by tuple id (bound last): merged columns replaced, the
    /// others folded in SQL.
    update_sql: String,
    /// The merged metrics: their index in the view's metrics and their sketch type.
    metrics: Vec<(usize, SketchType)>,
}

/// One row to bind: its key, bucket and values, and for a row merged with its stored row, the
/// merged sketches in [`Premerge::metrics`] order (`None`: neither side has one).
struct BindRow<'a> {
    row: &'a (GroupBucket, Vec<MetricValue>),
    merged: Option<Vec<Option<StoredSketch>>>,
}

impl ViewWriter {
    /// Builds the statements from the view's layout (identifiers from validated config).
    pub fn new(view: &View) -> Self {
        let layout = ViewLayout::of(view);
        let groups: Vec<&str> = layout.group_names();
        let metrics: Vec<&str> = layout.metric_names();
        let plan = ViewPlan::of(view);
        let mut array_types: Vec<String> = vec!["timestamptz[]".into()];
        array_types.extend(
            layout
                .group_columns
                .iter()
                .map(|c| format!("{}[]", c.pg_type)),
        );
        array_types.extend(plan.metrics.iter().map(|m| match m.stored {
            // hll sketches travel as bytea, which the extension casts to its type; quantile
            // sketches as their array's text (arrays of arrays must be rectangular), cast per
            // row below.
            ColumnType::Sketch(SketchType::Hll(_)) => format!("bytea[]::{}[]", m.stored.pg_type()),
            ColumnType::Sketch(SketchType::Quantile(_)) => "text[]".to_string(),
            ColumnType::Sketch(SketchType::Sample(_)) => "jsonb[]".to_string(),
            ColumnType::BigInt
            | ColumnType::Numeric
            | ColumnType::Double
            | ColumnType::Timestamp => format!("{}[]", m.stored.pg_type()),
        }));
        // Each unnested column by position; quantile sketches cast from their text.
        let cast_from_text: Vec<bool> = std::iter::repeat_n(false, 1 + layout.group_columns.len())
            .chain(
                plan.metrics
                    .iter()
                    .map(|m| matches!(m.stored, ColumnType::Sketch(SketchType::Quantile(_)))),
            )
            .collect();
        let selected: Vec<String> = cast_from_text
            .iter()
            .enumerate()
            .map(|(i, cast)| {
                if *cast {
                    format!("u.c{i}::bigint[]")
                } else {
                    format!("u.c{i}")
                }
            })
            .collect();
        let aliases: Vec<String> = (0..cast_from_text.len()).map(|i| format!("c{i}")).collect();
        let unnest_args: Vec<String> = array_types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}", i + 2))
            .collect();
        let updates: Vec<String> = view.metrics.iter().map(merge::upsert).collect();
        let columns: Vec<&str> = std::iter::once("bucket_start")
            .chain(groups.iter().copied())
            .chain(metrics.iter().copied())
            .collect();
        let conflict: Vec<&str> = groups
            .iter()
            .copied()
            .chain(["bucket_start", "epoch"])
            .collect();
        let table = &layout.speed_table;
        let sql = format!(
            "INSERT INTO {table} AS t (epoch, {columns}) SELECT $1::bigint, {selected} FROM UNNEST({unnest}) AS u({aliases}) \
             ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
            columns = columns.join(", "),
            unnest = unnest_args.join(", "),
            selected = selected.join(", "),
            aliases = aliases.join(", "),
            conflict = conflict.join(", "),
            updates = updates.join(", "),
        );
        let merged: Vec<(usize, SketchType)> = view
            .metrics
            .iter()
            .zip(&plan.metrics)
            .enumerate()
            .filter(|(_, (metric, _))| merge::merged_by_the_writer(metric))
            .filter_map(|(index, (_, plan))| match plan.stored {
                ColumnType::Sketch(sketch) => Some((index, sketch)),
                _ => None,
            })
            .collect();
        // A stored row matches on the key by `=`: the lookup binds only keys without a NULL part.
        let key_match: String = std::iter::once("t.epoch = $1".to_string())
            .chain(std::iter::once("t.bucket_start = u.c0".to_string()))
            .chain(
                groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| format!("t.{g} = u.c{}", i + 1)),
            )
            .collect::<Vec<_>>()
            .join(" AND ");
        let key_count = 1 + groups.len();
        let premerge = (!merged.is_empty()).then(|| Premerge {
            lock_sql: format!(
                "SELECT pg_advisory_xact_lock(hashtext('braid:speed:merged-sketch-rows'), hashtext('{table}'))"
            ),
            // One index probe per key (a lateral subquery), each row locked as it is found in
            // the keys' order: a join let the planner hash every stored row of the epoch, their
            // sketches detoasted, for a few thousand keys (docs/benchmarks.md, "Round three").
            select_sql: format!(
                "SELECT u.i, t.ctid::text, {stored} FROM UNNEST({keys}) WITH ORDINALITY AS u({key_aliases}, i) \
                 CROSS JOIN LATERAL (SELECT t.ctid, {stored} FROM {table} AS t WHERE {key_match} FOR UPDATE) AS t \
                 ORDER BY u.i",
                stored = merged
                    .iter()
                    .map(|(index, _)| format!("t.{}", metrics[*index]))
                    .collect::<Vec<_>>()
                    .join(", "),
                keys = unnest_args[..key_count].join(", "),
                key_aliases = aliases[..key_count].join(", "),
            ),
            // The rows found above, by their tuple ids (stable while they are locked): a TID
            // scan of exactly those (`ctid = ANY`), instead of matching every stored row of the
            // epoch on the key. The key is checked too, inside `IS TRUE` so that the planner
            // cannot join on it (it then hashes the epoch's rows again).
            update_sql: format!(
                "UPDATE {table} AS t SET {assignments} FROM UNNEST({unnest}, ${tids}::text[]::tid[]) AS u({aliases}, tid) \
                 WHERE t.ctid = ANY(${tids}::text[]::tid[]) AND t.ctid = u.tid AND ({key_match}) IS TRUE",
                tids = unnest_args.len() + 2,
                assignments = view
                    .metrics
                    .iter()
                    .enumerate()
                    .map(|(index, metric)| {
                        let incoming = &selected[key_count + index];
                        if merge::merged_by_the_writer(metric) {
                            format!("{} = {incoming}", metric.column)
                        } else {
                            merge::fold_into_stored(metric, incoming)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                unnest = unnest_args.join(", "),
                aliases = aliases.join(", "),
            ),
            metrics: merged,
        });
        Self {
            view: view.name.clone(),
            sql,
            premerge,
            metric_types: plan.metrics.iter().map(|m| m.stored).collect(),
            group_types: view.group_by_types.clone(),
        }
    }

    /// `sql` with the epoch and the rows' keys and buckets bound, and with their values when
    /// `with_values`.
    fn bind<'q, 'r>(
        &self,
        sql: &'q str,
        epoch: i64,
        deltas: &ViewDeltas,
        rows: impl ExactSizeIterator<Item = BindRow<'r>>,
        with_values: bool,
    ) -> Query<'q, Postgres, PgArguments> {
        let count = rows.len();
        let mut buckets: Vec<DateTime<Utc>> = Vec::with_capacity(count);
        let mut groups: Vec<GroupColumn> = self
            .group_types
            .iter()
            .map(|t| GroupColumn::new(*t, count))
            .collect();
        let mut metrics: Vec<MetricColumn> = if with_values {
            self.metric_types
                .iter()
                .map(|t| MetricColumn::new(*t, count))
                .collect()
        } else {
            Vec::new()
        };
        let merged_metrics = self.premerge.as_ref().map_or(&[][..], |p| &p.metrics[..]);
        for BindRow {
            row: ((key, bucket), values),
            mut merged,
        } in rows
        {
            buckets.push(micros_to_time(*bucket));
            for (column, value) in groups.iter_mut().zip(key) {
                column.push(value);
            }
            for (index, (column, value)) in metrics.iter_mut().zip(values).enumerate() {
                // Moved out of the merged row: each is bound once.
                let merged_value = merged.as_mut().and_then(|merged| {
                    merged_metrics
                        .iter()
                        .position(|(m, _)| *m == index)
                        .map(|at| merged[at].take())
                });
                match (merged_value, value) {
                    (Some(merged), _) => column.push_sketch(merged),
                    (None, MetricValue::Sketch(index)) => {
                        column.push_sketch(index.map(|i| deltas.sketches[i as usize].stored()))
                    }
                    (None, value) => column.push(*value),
                }
            }
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(epoch)
            .bind(buckets);
        for column in groups {
            query = match column {
                GroupColumn::Text(v) => query.bind(v),
                GroupColumn::Int(v) => query.bind(v),
                GroupColumn::Bool(v) => query.bind(v),
            };
        }
        for column in metrics {
            query = match column {
                MetricColumn::Int(v) => query.bind(v),
                MetricColumn::Float(v) => query.bind(v),
                MetricColumn::Time(v) => query.bind(v),
                MetricColumn::Numeric(v) => query.bind(v),
                MetricColumn::Sketch(v) => query.bind(v),
                MetricColumn::SketchText(v) => query.bind(v),
                MetricColumn::SketchJson(v) => query.bind(v),
            };
        }
        query
    }

    /// Writes one view's deltas in the flush's transaction.
    pub(super) async fn write(
        &self,
        tx: &mut sqlx::PgConnection,
        epoch: i64,
        deltas: &ViewDeltas,
    ) -> Result<(), SpeedError> {
        let rows = deltas.groups.in_key_order();
        let plain = |row| BindRow { row, merged: None };
        let Some(premerge) = &self.premerge else {
            self.bind(
                &self.sql,
                epoch,
                deltas,
                rows.iter().copied().map(plain),
                true,
            )
            .execute(&mut *tx)
            .await?;
            return Ok(());
        };
        sqlx::query(sqlx::AssertSqlSafe(premerge.lock_sql.as_str()))
            .execute(&mut *tx)
            .await?;
        // The stored rows of this flush's keys, locked in key order, then merged here.
        let lookup: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].0.0.iter().all(Option::is_some))
            .collect();
        let stored = if lookup.is_empty() {
            Vec::new()
        } else {
            self.bind(
                &premerge.select_sql,
                epoch,
                deltas,
                lookup.iter().map(|&i| plain(rows[i])),
                false,
            )
            .fetch_all(&mut *tx)
            .await?
        };
        // Row index → (its stored row's tuple id, the merged sketches).
        let mut merged: BTreeMap<usize, (String, Vec<Option<StoredSketch>>)> = BTreeMap::new();
        for found in &stored {
            let ordinal: i64 = found.try_get(0)?;
            let Some(&i) = usize::try_from(ordinal - 1)
                .ok()
                .and_then(|at| lookup.get(at))
            else {
                continue;
            };
            if let Some(values) = premerge.merge(found, deltas, &rows[i].1)? {
                merged.insert(i, (found.try_get(1)?, values));
            }
        }
        // The rows with no stored row to merge with: upserted below.
        let inserted: Vec<BindRow<'_>> = (0..rows.len())
            .filter(|i| !merged.contains_key(i))
            .map(|i| plain(rows[i]))
            .collect();
        let merged_count = merged.len();
        if merged_count > 0 {
            let mut tuple_ids: Vec<String> = Vec::with_capacity(merged_count);
            let mut updated: Vec<BindRow<'_>> = Vec::with_capacity(merged_count);
            for (i, (tuple_id, values)) in merged {
                tuple_ids.push(tuple_id);
                updated.push(BindRow {
                    row: rows[i],
                    merged: Some(values),
                });
            }
            let done = self
                .bind(
                    &premerge.update_sql,
                    epoch,
                    deltas,
                    updated.into_iter(),
                    true,
                )
                .bind(tuple_ids)
                .execute(&mut *tx)
                .await?;
            // Each row by its tuple id and its key: anything else rolls the flush back.
            if done.rows_affected() != merged_count as u64 {
                return Err(SpeedError::MergedRowsMoved {
                    view: self.view.clone(),
                    expected: merged_count as u64,
                    updated: done.rows_affected(),
                });
            }
        }
        if !inserted.is_empty() {
            self.bind(&self.sql, epoch, deltas, inserted.into_iter(), true)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

impl Premerge {
    /// A stored row's sketches merged with the micro-batch's, in [`Premerge::metrics`] order;
    /// `None` when a stored sketch does not decode or has other settings than the metric's:
    /// the row then goes through the upsert, whose SQL union refuses it as before.
    fn merge(
        &self,
        found: &sqlx::postgres::PgRow,
        deltas: &ViewDeltas,
        values: &[MetricValue],
    ) -> Result<Option<Vec<Option<StoredSketch>>>, sqlx::Error> {
        let mut merged = Vec::with_capacity(self.metrics.len());
        for (at, (index, sketch_type)) in self.metrics.iter().enumerate() {
            let mine = match values.get(*index) {
                Some(MetricValue::Sketch(Some(i))) => deltas.sketches.get(*i as usize),
                _ => None,
            };
            // After the ordinal and the tuple id.
            let column = at + 2;
            let value = match sketch_type {
                SketchType::Quantile(params) => {
                    let stored: Option<Vec<i64>> = found.try_get(column)?;
                    let stored = match stored.map(|array| QuantileSketch::from_array(&array)) {
                        Some(Ok(sketch)) if sketch.params() == *params => Some(sketch),
                        Some(_) => return Ok(None),
                        None => None,
                    };
                    match (stored, mine) {
                        (Some(mut stored), Some(SketchState::Quantile(mine))) => {
                            stored.merge(mine);
                            Some(StoredSketch::Array(stored.to_array()))
                        }
                        (Some(stored), _) => Some(StoredSketch::Array(stored.to_array())),
                        (None, mine) => mine.map(SketchState::stored),
                    }
                }
                SketchType::Sample(params) => {
                    let stored: Option<sqlx::types::Json<serde_json::Value>> =
                        found.try_get(column)?;
                    let stored =
                        match stored.map(|json| SampleSketch::from_owned_json(*params, json.0)) {
                            Some(Ok(sample)) => Some(sample),
                            Some(Err(_)) => return Ok(None),
                            None => None,
                        };
                    match (stored, mine) {
                        (Some(mut stored), Some(SketchState::Sample(mine))) => {
                            stored.merge(mine);
                            Some(StoredSketch::Json(stored.into_json()))
                        }
                        (Some(stored), _) => Some(StoredSketch::Json(stored.into_json())),
                        (None, mine) => mine.map(SketchState::stored),
                    }
                }
                // Not merged by the writer (`merge::merged_by_the_writer`).
                SketchType::Hll(_) => return Ok(None),
            };
            merged.push(value);
        }
        Ok(Some(merged))
    }
}

fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

enum GroupColumn {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
}

impl GroupColumn {
    fn new(field_type: FieldType, rows: usize) -> Self {
        match field_type {
            FieldType::I64 => GroupColumn::Int(Vec::with_capacity(rows)),
            FieldType::Bool => GroupColumn::Bool(Vec::with_capacity(rows)),
            _ => GroupColumn::Text(Vec::with_capacity(rows)),
        }
    }

    fn push(&mut self, value: &Option<KeyValue>) {
        match (self, value) {
            (GroupColumn::Text(v), Some(KeyValue::String(s))) => v.push(Some(s.clone())),
            (GroupColumn::Int(v), Some(KeyValue::I64(i))) => v.push(Some(*i)),
            (GroupColumn::Bool(v), Some(KeyValue::Bool(b))) => v.push(Some(*b)),
            (GroupColumn::Text(v), _) => v.push(None),
            (GroupColumn::Int(v), _) => v.push(None),
            (GroupColumn::Bool(v), _) => v.push(None),
        }
    }
}

enum MetricColumn {
    Int(Vec<Option<i64>>),
    /// `numeric` values as decimal text (sqlx has no i128; PostgreSQL casts the text array).
    Numeric(Vec<Option<String>>),
    Float(Vec<Option<f64>>),
    Time(Vec<Option<DateTime<Utc>>>),
    /// `hll` sketches in the extension's storage format (bound as `bytea`).
    Sketch(Vec<Option<Vec<u8>>>),
    /// Quantile sketches as the text of their `bigint[]` (`{1,6,2048,…}`).
    SketchText(Vec<Option<String>>),
    /// Samples as `jsonb`.
    SketchJson(Vec<Option<sqlx::types::Json<serde_json::Value>>>),
}

impl MetricColumn {
    fn new(stored: ColumnType, rows: usize) -> Self {
        match stored {
            ColumnType::Double => MetricColumn::Float(Vec::with_capacity(rows)),
            ColumnType::Timestamp => MetricColumn::Time(Vec::with_capacity(rows)),
            ColumnType::Numeric => MetricColumn::Numeric(Vec::with_capacity(rows)),
            ColumnType::Sketch(SketchType::Quantile(_)) => {
                MetricColumn::SketchText(Vec::with_capacity(rows))
            }
            ColumnType::Sketch(SketchType::Sample(_)) => {
                MetricColumn::SketchJson(Vec::with_capacity(rows))
            }
            ColumnType::Sketch(_) => MetricColumn::Sketch(Vec::with_capacity(rows)),
            ColumnType::BigInt => MetricColumn::Int(Vec::with_capacity(rows)),
        }
    }

    fn push(&mut self, value: MetricValue) {
        match (self, value) {
            (MetricColumn::Int(v), MetricValue::Int(x)) => v.push(x),
            (MetricColumn::Float(v), MetricValue::Float(x)) => v.push(x),
            (MetricColumn::Time(v), MetricValue::Int(x)) => v.push(x.map(micros_to_time)),
            (MetricColumn::Numeric(v), MetricValue::WideSum(x)) => v.push(Some(x.to_string())),
            (MetricColumn::Numeric(v), _) => v.push(None),
            (MetricColumn::Int(v), _) => v.push(None),
            (MetricColumn::Float(v), _) => v.push(None),
            (MetricColumn::Time(v), _) => v.push(None),
            (MetricColumn::Sketch(v), _) => v.push(None),
            (MetricColumn::SketchText(v), _) => v.push(None),
            (MetricColumn::SketchJson(v), _) => v.push(None),
        }
    }

    fn push_sketch(&mut self, sketch: Option<StoredSketch>) {
        match (self, sketch) {
            (MetricColumn::Sketch(v), Some(StoredSketch::Bytes(bytes))) => v.push(Some(bytes)),
            (MetricColumn::SketchText(v), Some(StoredSketch::Array(array))) => {
                let items: Vec<String> = array.iter().map(i64::to_string).collect();
                v.push(Some(format!("{{{}}}", items.join(","))));
            }
            (MetricColumn::SketchJson(v), Some(StoredSketch::Json(json))) => {
                v.push(Some(sqlx::types::Json(json)))
            }
            // A column of another sketch type (never: the plan types both alike).
            (column, _) => column.push(MetricValue::Sketch(None)),
        }
    }
}
