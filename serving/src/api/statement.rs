//! The parts every answer's statement is built from: placeholders and their values, the
//! answer's typed columns, its ORDER BY terms, the head row that carries provenance, and the
//! column list of the rows. The general statement (`query`) and the one for whole keys
//! (`whole_keys`) both build on them; identifiers come from the validated view.

use chrono::{DateTime, Utc};
use schemas::pg::view_definitions;
use schemas::pg_layout::{ViewLayout, merge, pg_type};
use schemas::view::View;

use super::answer_json::OutputColumn;
use super::params::{FilterValues, Selection};

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// `text`.
    Text(String),
    /// `bigint`.
    Int(i64),
    /// `timestamptz`.
    Time(DateTime<Utc>),
    /// `text[]`.
    Texts(Vec<String>),
    /// `bigint[]`.
    Ints(Vec<i64>),
    /// `boolean[]`.
    Bools(Vec<bool>),
}

/// A statement under construction: text and the values of its placeholders, in order.
#[derive(Default)]
pub(super) struct Statement {
    pub(super) binds: Vec<Bind>,
}

/// The one statement that answers a request, with the values of its placeholders `$1`, `$2`,
/// ... in order: what the API runs, for tools that run it elsewhere (EXPLAIN, a benchmark's
/// pgbench floor).
#[derive(Debug, Clone, PartialEq)]
pub struct BoundStatement {
    /// The SQL text; identifiers come from validated configuration.
    pub sql: String,
    /// The placeholders' values.
    pub values: Vec<Bind>,
}

/// The placeholders every answer's statement binds first.
pub(super) struct Placeholders {
    /// The view's name.
    pub(super) name: String,
    /// Its fingerprint.
    pub(super) fingerprint: String,
    /// The first bucket start read.
    pub(super) from: String,
    /// The end of the buckets read.
    pub(super) to: String,
    /// The limit.
    pub(super) limit: String,
    /// The topic whose speed positions are reported.
    pub(super) topic: String,
}

impl Statement {
    /// Binds what every answer's statement needs, in order.
    pub(super) fn bind_selection(
        &mut self,
        view: &View,
        selection: &Selection,
        topic: &str,
    ) -> Placeholders {
        Placeholders {
            name: self.bind(Bind::Text(view.name.clone())),
            fingerprint: self.bind(Bind::Text(view.fingerprint.clone())),
            from: self.bind(Bind::Time(selection.from)),
            to: self.bind(Bind::Time(selection.to)),
            limit: self.bind(Bind::Int(selection.limit)),
            topic: self.bind(Bind::Text(topic.to_string())),
        }
    }

    /// Binds a filter's accepted values (an array) and returns its placeholder.
    pub(super) fn bind_filter(&mut self, values: &FilterValues) -> String {
        self.bind(match values {
            FilterValues::Text(v) => Bind::Texts(v.clone()),
            FilterValues::Int(v) => Bind::Ints(v.clone()),
            FilterValues::Bool(v) => Bind::Bools(v.clone()),
        })
    }

    /// Adds a value and returns its placeholder.
    pub(super) fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }
}

/// RFC 3339 text of a timestamptz expression in UTC (JSON's ISO 8601 form, whatever the
/// session's DateStyle; fractions only when there are any). Written without a `:` so that the
/// statement also runs unchanged under pgbench, which reads `:name` as a variable.
pub(super) fn utc_text(expression: &str) -> String {
    format!("((to_json(({expression}) AT TIME ZONE 'UTC') #>> '{{}}') || 'Z')")
}

/// The answer's columns with their types: the kept group fields and attributes, `bucket_start`
/// when bucketed, the metrics, the averages, and `batch_part`/`speed_part` when asked.
pub(super) fn answer_columns(view: &View, selection: &Selection) -> Vec<OutputColumn> {
    let layout = ViewLayout::of(view);
    let mut columns: Vec<OutputColumn> = selection
        .group_by
        .iter()
        .map(|&i| OutputColumn::new(view.served_name(i), pg_type(view.served_type(i))))
        .collect();
    if selection.granularity.is_some() {
        columns.push(OutputColumn::new("bucket_start", "timestamptz"));
    }
    for (metric, column) in view.metrics.iter().zip(&layout.metric_columns) {
        columns.push(OutputColumn::new(
            &metric.column,
            merge::answer_type(metric, column.pg_type),
        ));
    }
    for average in view.averages() {
        columns.push(OutputColumn::new(&average.column, "double precision"));
    }
    if selection.parts {
        columns.push(OutputColumn::new("batch_part", "boolean"));
        columns.push(OutputColumn::new("speed_part", "boolean"));
    }
    columns
}

/// The selection's order as `ORDER BY` terms (empty when it has none).
pub(super) fn order_terms(selection: &Selection) -> String {
    selection
        .order
        .iter()
        .map(|(column, descending)| {
            format!(
                "{column} {} NULLS LAST",
                if *descending { "DESC" } else { "ASC" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The head row of an answer's statement, after `SELECT`: `part$` 0, `ord$`, the output
/// columns as NULLs of their wire types, whether more rows matched than the limit
/// (`truncated`, an SQL boolean; NULL when the rows say it), and the provenance: the active
/// run (`active$` must be in scope), the speed state and the backfilling flag.
pub(super) fn head_row(
    columns: &[OutputColumn],
    truncated: &str,
    topic: &str,
    name: &str,
    fingerprint: &str,
) -> String {
    let nulls = columns
        .iter()
        .map(|c| format!("NULL::{} AS {}", c.wire_type(), c.name))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "0 AS part$, 0::bigint AS ord$, {nulls}, \
         {truncated} AS truncated$, \
         (SELECT json_build_object('run_id', run_id, 'covered_epoch', covered_epoch, \
            'delta_version', delta_version, \
            'finished_at', {finished}) FROM active$)::text AS batch$, \
         ({speed_state})::text AS speed$, \
         coalesce(({needs_backfill}), false) \
           AND NOT EXISTS (SELECT 1 FROM active$) AS backfilling$",
        finished = utc_text("finished_at"),
        speed_state = speed_state_sql(topic),
        needs_backfill = view_definitions::needs_backfill_select(name, fingerprint),
    )
}

/// The output columns of an answer row as sent: `numeric` sums as text.
pub(super) fn row_names(columns: &[OutputColumn]) -> String {
    columns
        .iter()
        .map(|c| match c.wire_type() {
            "text" if c.pg_type == "numeric" => format!("{}::text", c.name),
            _ => c.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A sub-select rendering the speed layer's state for the topic bound at `topic`: its stored
/// positions, the newest event time they cover and the last flush.
pub fn speed_state_sql(topic: &str) -> String {
    schemas::pg::speed_state_select(
        topic,
        &utc_text("max(newest_event_time)"),
        &utc_text("max(updated_at)"),
    )
}
