//! A view's batch aggregation as Spark SQL, generated from the same definition
//! ([`schemas::view::View`]) the speed layer and the Polars batch run: never a second
//! definition by hand. The statement reads the temporary view `records` (the job registers it:
//! the topic's records below the cut at the pinned version) and returns the columns the Polars
//! computation returns, before sketches: group keys, `bucket_start` (µs), and one column per
//! metric; a distinct metric returns the group's set of values, which Braid turns into the same
//! `hll` sketch as the speed layer builds ([`super::super::compute`]).
//!
//! Semantics kept equal to the Polars computation (`compute::compute_view`):
//! - the bucket is the floor of the event time in µs to the width (`pmod` is never negative);
//! - a filter passes only a present field (`IS NOT NULL AND …`);
//! - counts are BIGINT; `count(f)` counts present values; sums of nothing are 0;
//! - i64 sums are summed as DECIMAL(38, 0) (Polars: i128), so they never overflow nor wrap, and
//!   returned as text, which PostgreSQL's COPY reads into NUMERIC exactly;
//! - timestamps in metrics are µs since the epoch;
//! - decayed metrics sum `w · 2^((t − bucket_start) / half_life)` in DOUBLE.

use schemas::plan::{ColumnType, Fold, Input, MetricPlan, SketchType, Term};
use schemas::view::{Filter, FilterOp, View};
use schemas::{EventSchema, FieldType, Value};

use super::super::BUCKET_START;

/// The name of the temporary view the job registers.
pub const RECORDS: &str = "records";

/// A Spark SQL identifier: backquoted, backquotes doubled.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A Spark SQL literal of a configured value.
fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::I64(v) | Value::Timestamp(v) => format!("CAST({v} AS BIGINT)"),
        // Through text, so that the double is the one Rust holds (shortest round-trip form).
        Value::F64(v) if v.is_finite() => format!("CAST('{v:?}' AS DOUBLE)"),
        Value::F64(v) if *v > 0.0 => "CAST('Infinity' AS DOUBLE)".into(),
        Value::F64(v) if *v < 0.0 => "CAST('-Infinity' AS DOUBLE)".into(),
        Value::F64(_) => "CAST('NaN' AS DOUBLE)".into(),
        Value::Bool(v) => v.to_string(),
    }
}

/// A field as the computation compares or aggregates it: timestamps as µs.
fn field_expr(name: &str, field_type: FieldType) -> String {
    match field_type {
        FieldType::Timestamp => format!("unix_micros({})", ident(name)),
        _ => ident(name),
    }
}

fn predicate(filter: &Filter, schema: &EventSchema) -> String {
    let field_type = schema.fields[filter.field_index].field_type;
    let column = field_expr(&filter.field, field_type);
    let first = literal(&filter.values[0]);
    let test = match filter.op {
        FilterOp::Eq => format!("{column} = {first}"),
        FilterOp::Ne => format!("{column} <> {first}"),
        FilterOp::Lt => format!("{column} < {first}"),
        FilterOp::Le => format!("{column} <= {first}"),
        FilterOp::Gt => format!("{column} > {first}"),
        FilterOp::Ge => format!("{column} >= {first}"),
        FilterOp::In => {
            let values: Vec<String> = filter.values.iter().map(literal).collect();
            format!("{column} IN ({})", values.join(", "))
        }
    };
    format!("{column} IS NOT NULL AND ({test})")
}

/// The view's aggregation over [`RECORDS`].
pub fn view_sql(view: &View, schema: &EventSchema) -> String {
    let event_time = field_expr(&schema.event_time_field().name, FieldType::Timestamp);
    let width = view.bucket.micros();
    let bucket = format!("({event_time} - pmod({event_time}, CAST({width} AS BIGINT)))");
    let mut select: Vec<String> = view.group_by.iter().map(|g| ident(g)).collect();
    select.push(format!("{bucket} AS {}", ident(BUCKET_START)));
    for metric in &view.metrics {
        let field = metric.field.as_deref().unwrap_or_default();
        let value = metric
            .field_type
            .map(|t| field_expr(field, t))
            .unwrap_or_default();
        let plan = MetricPlan::of(metric);
        let aggregate = match plan.fold {
            Fold::Add(Term::One) => match plan.input {
                Input::EveryRecord => "count(*)".to_string(),
                Input::Field { .. } => format!("count({value})"),
            },
            Fold::Add(Term::Value) if plan.stored == ColumnType::Numeric => format!(
                "CAST(coalesce(sum(CAST({value} AS DECIMAL(38, 0))), CAST(0 AS DECIMAL(38, 0))) AS STRING)"
            ),
            Fold::Add(Term::Value) => format!("coalesce(sum({value}), CAST(0 AS DOUBLE))"),
            Fold::Least => format!("min({value})"),
            Fold::Greatest => format!("max({value})"),
            Fold::Add(Term::Decayed { half_life }) => {
                let half_life = half_life.micros();
                let weight = match plan.input {
                    Input::EveryRecord => "CAST(1 AS DOUBLE)".to_string(),
                    Input::Field { .. } => format!("CAST({value} AS DOUBLE)"),
                };
                format!(
                    "coalesce(sum({weight} * pow(CAST(2 AS DOUBLE), CAST({event_time} - {bucket} AS DOUBLE) / CAST({half_life} AS DOUBLE))), CAST(0 AS DOUBLE))"
                )
            }
            // The group's values; Braid builds the sketch (`distinct::sketch_columns_of_values`).
            Fold::Sketch(SketchType::Hll(_)) => format!("collect_set({value})"),
            // WIP (issue 40): Braid builds these sketches from the group's values too.
            Fold::Sketch(SketchType::Quantile(_)) => {
                format!("collect_list(CAST({value} AS DOUBLE))")
            }
            // Each record's position and fields (field i as `f{i}`, timestamps in µs).
            Fold::Sketch(SketchType::Sample(_)) => {
                let fields: Vec<String> = schema
                    .fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| format!("{} AS f{i}", field_expr(&f.name, f.field_type)))
                    .collect();
                format!(
                    "collect_list(struct(`_partition` AS p, `_offset` AS o, {}))",
                    fields.join(", ")
                )
            }
        };
        select.push(format!("{aggregate} AS {}", ident(&metric.column)));
    }
    let mut keys: Vec<String> = view.group_by.iter().map(|g| ident(g)).collect();
    keys.push(bucket);
    let filter = view
        .filter
        .as_ref()
        .map(|f| format!(" WHERE {}", predicate(f, schema)))
        .unwrap_or_default();
    format!(
        "SELECT {} FROM {RECORDS}{filter} GROUP BY {}",
        select.join(", "),
        keys.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_identifiers_cannot_break_out_of_the_statement() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(literal(&Value::String("it's \\".into())), "'it\\'s \\\\'");
        assert_eq!(literal(&Value::F64(0.1)), "CAST('0.1' AS DOUBLE)");
        assert_eq!(literal(&Value::I64(-3)), "CAST(-3 AS BIGINT)");
    }

    #[test]
    fn the_demo_views_generate_a_statement_each() {
        let config = schemas::BraidConfig::load(Some(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../braid.toml"),
        ))
        .unwrap();
        for view in &config.views {
            let sql = view_sql(view, &config.schema);
            assert!(sql.starts_with("SELECT "), "{sql}");
            assert!(sql.contains(&format!("FROM {RECORDS}")), "{sql}");
            for metric in &view.metrics {
                assert!(sql.contains(&format!("AS `{}`", metric.column)), "{sql}");
            }
        }
    }
}
