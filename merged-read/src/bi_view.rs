//! The SELECT of a view's merged rows for the SQL views BI tools read (`serving.<view>`): the
//! same batch ⊕ speed rows as every other merged read, per group and bucket, over all time.

use schemas::pg::batch_runs;
use schemas::pg_layout::{ViewLayout, merge};
use schemas::quantile::QuantileLevel;
use schemas::view::View;

use crate::statement::{BatchRows, SpeedRows};

/// The SELECT of a view's merged rows: active batch rows ⊕ speed rows with epoch ≥ the active
/// run's covered epoch (all speed rows before the first batch run), per group and bucket;
/// counts and sums add, min and max combine, `avg_<field>` = sum / the count of records
/// that have the field ([`View::averages`]), and decayed scores are decayed to `now()`.
/// Distinct counts and quantiles come also as the merged sketch (`<metric>_sketch`), so that
/// BI tools can roll them up exactly; quantiles as the default levels (`<metric>_p50`,
/// `_p90`, `_p99`); samples as their records (jsonb). The view's attributes are joined.
///
/// Identifiers, the view's name and its fingerprint come from validated configuration
/// (`[a-z_][a-z0-9_]*` and hex), so they can stand in the statement.
pub fn merged_select(view: &View) -> String {
    let layout = ViewLayout::of(view);
    let groups: Vec<&str> = layout.group_names();
    let stored = layout.stored_columns();
    let mut outputs: Vec<String> = groups
        .iter()
        .map(|g| g.to_string())
        .chain(["bucket_start".to_string()])
        .collect();
    // A quantile metric as its default levels (`<metric>_p50`, …); any other level is
    // `serving.quantile(serving.quantile_union_agg(<metric>_sketch), q)` over any rows.
    let levels = QuantileLevel::defaults();
    for metric in &view.metrics {
        if merge::answers_quantiles(metric) {
            outputs.extend(levels.iter().map(|level| {
                // The levels are Braid's constants, not a reader's values.
                merge::quantile(
                    metric,
                    &level.value().to_string(),
                    &level.column(&metric.column),
                )
            }));
        } else {
            outputs.push(merge::aggregate(metric, "now()"));
        }
    }
    // Distinct counts also as the merged sketch, so that BI tools can roll them up exactly:
    // hll_cardinality(hll_union_agg(<metric>_sketch)) over any set of rows.
    outputs.extend(view.metrics.iter().filter_map(|m| {
        merge::merged_sketch(m).map(|sketch| format!("{sketch} AS {}_sketch", m.column))
    }));
    outputs.extend(view.averages().iter().map(merge::average));
    let group_by: Vec<&str> = groups.iter().copied().chain(["bucket_start"]).collect();
    let merged = format!(
        "WITH active AS ({active}) \
         SELECT {outputs} FROM ( \
           SELECT {stored} FROM {batch} WHERE {batch_rows} \
           UNION ALL \
           SELECT {stored} FROM {speed} WHERE {speed_rows} \
         ) AS rows GROUP BY {group_by}",
        active = batch_runs::active_run_select(
            &format!("'{}'", view.name),
            &format!("'{}'", view.fingerprint)
        ),
        outputs = outputs.join(", "),
        batch = layout.batch_table,
        batch_rows = BatchRows("active"),
        speed = layout.speed_table,
        speed_rows = SpeedRows("active"),
        group_by = group_by.join(", "),
    );
    with_attributes(view, merged)
}

/// The merged rows with the view's attributes joined (a key missing from its dimension gets
/// nulls), so that BI tools group by campaign as they group by ad.
fn with_attributes(view: &View, merged: String) -> String {
    let (columns, joins) = schemas::dimension::attribute_joins(&view.attributes, "merged", "d");
    if columns.is_empty() {
        return merged;
    }
    format!(
        "SELECT merged.*, {} FROM ({merged}) AS merged{joins}",
        columns.join(", ")
    )
}
