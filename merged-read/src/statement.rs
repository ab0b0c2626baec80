//! The parts every merged read's statement is built from: which rows of each layer merge (the
//! active run's batch rows, the speed rows at or above its covered epoch), placeholders and
//! their values, the ORDER BY terms, the head row that carries provenance, and the column list
//! of the rows. The general statement, the one for whole keys and the SQL views for BI tools
//! build on them; identifiers come from the validated view.

use std::fmt;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use schemas::pg::view_definitions;
use schemas::view::View;

use crate::columns::AnswerColumn;
use crate::selection::{FilterValues, OrderTerm, Selection};

/// The condition on a batch table's rows that keeps the active run's: `active` names the
/// relation holding the active run (`schemas::pg::batch_runs::active_run_select`).
pub(crate) struct BatchRows<'a>(pub(crate) &'a str);

impl fmt::Display for BatchRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run_id = (SELECT run_id FROM {})", self.0)
    }
}

/// The condition on a speed table's rows that keeps those the active run does not cover: the
/// epochs at or above its covered epoch (every epoch before the first run). `active` names the
/// relation holding the active run.
pub(crate) struct SpeedRows<'a>(pub(crate) &'a str);

impl fmt::Display for SpeedRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch >= coalesce((SELECT covered_epoch FROM {}), 0)",
            self.0
        )
    }
}

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
    /// `boolean`.
    Bool(bool),
    /// `double precision`.
    Float(f64),
}

/// A statement's text with the values of its placeholders `$1`, `$2`, ... in order: what the
/// merged read runs, for tools that run it elsewhere (EXPLAIN, a benchmark's pgbench floor).
#[derive(Debug, Clone, PartialEq)]
pub struct BoundStatement {
    /// The SQL text; identifiers come from validated configuration.
    pub sql: String,
    /// The placeholders' values.
    pub values: Vec<Bind>,
}

/// The values of a statement's placeholders, in order, as it is built.
#[derive(Default)]
pub(crate) struct Binds {
    pub(crate) values: Vec<Bind>,
}

/// The placeholders every merged read's statement binds first, and the conditions made of
/// them.
pub(crate) struct Placeholders {
    /// The view's name.
    pub(crate) name: String,
    /// Its fingerprint.
    pub(crate) fingerprint: String,
    /// The limit.
    pub(crate) limit: String,
    /// The topic whose speed positions are reported.
    pub(crate) topic: String,
    /// The condition on the stored rows of both layers: the range's buckets and the filters on
    /// group fields (` AND <field> = $n` for one value, `= ANY($n)` for several, each).
    pub(crate) range: String,
    /// The filters on attributes, which apply after the dimensions' join (` AND ...` each).
    pub(crate) attribute_filters: String,
}

impl Binds {
    /// Binds what every merged read's statement needs, in order: the view, the range, the
    /// limit, the topic, then the filters' values.
    pub(crate) fn bind_selection(
        &mut self,
        view: &View,
        selection: &Selection,
        topic: &str,
    ) -> Placeholders {
        let name = self.bind(Bind::Text(view.name.clone()));
        let fingerprint = self.bind(Bind::Text(view.fingerprint.clone()));
        let from = self.bind(Bind::Time(selection.from));
        let to = self.bind(Bind::Time(selection.to));
        let limit = self.bind(Bind::Int(selection.limit));
        let topic = self.bind(Bind::Text(topic.to_string()));
        let mut range = format!("bucket_start >= {from} AND bucket_start < {to}");
        let mut attribute_filters = String::new();
        for filter in &selection.filters {
            let condition = self.bind_filter(&filter.values);
            let target = if view.served_attribute(filter.field).is_some() {
                &mut attribute_filters
            } else {
                &mut range
            };
            let _ = write!(
                target,
                " AND {} {condition}",
                view.served_name(filter.field)
            );
        }
        Placeholders {
            name,
            fingerprint,
            limit,
            topic,
            range,
            attribute_filters,
        }
    }

    /// Binds a filter's accepted values and returns the condition on the field: `= $n` for
    /// one value, `= ANY($n)` (an array) for several. With one value PostgreSQL knows the
    /// field is constant, so an index on (field, bucket_start) yields the rows in bucket order
    /// and the answer needs no sort; with `= ANY` it sorts them.
    fn bind_filter(&mut self, values: &FilterValues) -> String {
        let value = match values {
            FilterValues::Text(v) => match v.as_slice() {
                [one] => Bind::Text(one.clone()),
                _ => Bind::Texts(v.clone()),
            },
            FilterValues::Int(v) => match v.as_slice() {
                [one] => Bind::Int(*one),
                _ => Bind::Ints(v.clone()),
            },
            FilterValues::Bool(v) => match v.as_slice() {
                [one] => Bind::Bool(*one),
                _ => Bind::Bools(v.clone()),
            },
        };
        let one = matches!(value, Bind::Text(_) | Bind::Int(_) | Bind::Bool(_));
        let placeholder = self.bind(value);
        if one {
            format!("= {placeholder}")
        } else {
            format!("= ANY({placeholder})")
        }
    }

    /// Adds a value and returns its placeholder.
    pub(crate) fn bind(&mut self, value: Bind) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }
}

/// RFC 3339 text of a timestamptz expression in UTC (JSON's ISO 8601 form, whatever the
/// session's DateStyle; fractions only when there are any). Written without a `:` so that the
/// statement also runs unchanged under pgbench, which reads `:name` as a variable.
pub(crate) fn utc_text(expression: &str) -> String {
    format!("((to_json(({expression}) AT TIME ZONE 'UTC') #>> '{{}}') || 'Z')")
}

/// The order as `ORDER BY` terms (empty when there are none).
pub(crate) fn order_terms(order: &[OrderTerm]) -> String {
    order
        .iter()
        .map(|term| {
            format!(
                "{} {} NULLS LAST",
                term.column,
                if term.descending { "DESC" } else { "ASC" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The head row of a merged read's statement, after `SELECT`: the output columns the statement
/// returns as NULLs of their wire types, then `provenance$`, the text of a JSON array: the
/// active run (`active$` must be in scope) or null, the speed state, and the backfilling flag.
/// The rows carry a NULL `provenance$`: one column, not four, pads every row. Truncation is
/// read from the rows: both statements return one row past the limit when more matched.
pub(crate) fn head_row(
    columns: &[AnswerColumn],
    topic: &str,
    name: &str,
    fingerprint: &str,
) -> String {
    let provenance = format!(
        "json_build_array(\
         (SELECT json_build_object('run_id', run_id, 'covered_epoch', covered_epoch, \
            'delta_version', delta_version, \
            'finished_at', {finished}) FROM active$), \
         ({speed_state}), \
         coalesce(({needs_backfill}), false) \
           AND NOT EXISTS (SELECT 1 FROM active$))::text AS provenance$",
        finished = utc_text("finished_at"),
        speed_state = speed_state_sql(topic),
        needs_backfill = view_definitions::needs_backfill_select(name, fingerprint),
    );
    columns
        .iter()
        .filter(|c| c.in_statement())
        .map(|c| format!("NULL::{} AS {}", c.wire_type(), c.name))
        .chain([provenance])
        .collect::<Vec<_>>()
        .join(", ")
}

/// The output columns of an answer row as sent, then a NULL `provenance$` (see [`head_row`]):
/// `numeric` sums and `jsonb` samples as text; averages the reader computes are left out.
pub(crate) fn row_names(columns: &[AnswerColumn]) -> String {
    columns
        .iter()
        .filter(|c| c.in_statement())
        .map(|c| match c.wire_type() {
            "text" if c.pg_type != "text" => format!("{}::text", c.name),
            _ => c.name.clone(),
        })
        .chain(["NULL::text".to_string()])
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
