//! The statement for the commonest query: whole keys (every group field kept, no dimension) at
//! the view's own bucket, with metrics that merge pairwise (counts, sums, minima, maxima).
//!
//! The general statement unions the batch rows and the speed rows and aggregates them all, then
//! sorts the result. Here nothing needs rolling up: a key's bucket has at most one batch row
//! (the active run's) and a few speed rows (one per epoch since the run's cut). So only the
//! speed rows are aggregated (few, once a batch run is published, and none at all in a range of
//! history that no late record reached since the run's cut), and a hash full join puts each
//! beside its batch row, merged with `merge::combine`. The answer is the same, and in both the
//! truncation is read from one row past the limit.
//!
//! When the range holds no speed row, the join has nothing to add, yet hashing and probing
//! every batch row was about a fifth of the statement's server CPU (docs/benchmarks.md, "Round
//! three, part six"). So the statement has two branches, each behind a one-time test of whether
//! the speed aggregate (a CTE, computed once) has a row: without one, the batch rows as they
//! are (what `merge::combine` makes of a batch value and a NULL); with one, the full join.

use schemas::pg::batch_runs;
use schemas::pg_layout::{ViewLayout, merge, pg_type};
use schemas::view::View;

use crate::columns::AnswerColumn;
use crate::selection::Selection;
use crate::statement::{
    BatchRows, Binds, BoundStatement, SpeedRows, head_row, order_terms, row_names,
};

/// A NULL-safe equality of one key column of `b` and `s` made of two hashable equalities, so
/// that the full join can hash (`IS NOT DISTINCT FROM` cannot): the columns are equal when
/// both are NULL or both are set and equal.
fn same_key(column: &str, pg_type: &str) -> String {
    let placeholder = match pg_type {
        "text" => "''",
        "boolean" => "false",
        "timestamptz" => "timestamptz 'epoch'",
        _ => "0",
    };
    format!(
        "(b.{column} IS NULL) = (s.{column} IS NULL) AND \
         coalesce(b.{column}, {placeholder}) = coalesce(s.{column}, {placeholder})"
    )
}

/// Whether `selection` over `view` keeps whole keys at the view's bucket, in an order (the
/// shape this statement answers, when the view's metrics all merge pairwise; it writes
/// `ORDER BY <terms>`, so a selection without an order is left to the general statement).
fn keeps_whole_keys(view: &View, selection: &Selection) -> bool {
    let groups = view.group_by.len();
    selection.group_by.len() == groups
        && (0..groups).all(|i| selection.group_by.contains(&i))
        && selection.filters.iter().all(|f| f.field < groups)
        && selection.granularity == Some(view.bucket.seconds())
        && !selection.order.is_empty()
}

/// The statement, when `selection` over `view` (whose answer has `columns`) is such a query.
pub(crate) fn statement(
    view: &View,
    selection: &Selection,
    topic: &str,
    columns: &[AnswerColumn],
) -> Option<BoundStatement> {
    if !keeps_whole_keys(view, selection) {
        return None;
    }
    let combined: Vec<String> = view
        .metrics
        .iter()
        .map(|m| {
            merge::combine(m, &format!("b.{}", m.column), &format!("s.{}", m.column))
                .map(|e| format!("{e} AS {}", m.column))
        })
        .collect::<Option<_>>()?;

    let layout = ViewLayout::of(view);
    let mut st = Binds::default();
    // Only group fields are filtered here (`keeps_whole_keys`): all in `range`.
    let placeholders = st.bind_selection(view, selection, topic);

    let keys: Vec<&str> = selection
        .group_by
        .iter()
        .map(|&i| view.group_by[i].as_str())
        .collect();
    let (parts, batch_only_parts) = if selection.parts {
        (
            ", b.bucket_start IS NOT NULL AS batch_part, s.bucket_start IS NOT NULL AS speed_part",
            ", true AS batch_part, false AS speed_part",
        )
    } else {
        ("", "")
    };
    let averages = view.averages();

    let all_keys: Vec<&str> = view
        .group_by
        .iter()
        .map(String::as_str)
        .chain(["bucket_start"])
        .collect();
    let merged_keys = all_keys
        .iter()
        .map(|k| format!("coalesce(b.{k}, s.{k}) AS {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    // `merge::combine(b, NULL)` is `b` for every metric it merges (a sum, a least, a greatest).
    let batch_only = all_keys
        .iter()
        .copied()
        .chain(view.metrics.iter().map(|m| m.column.as_str()))
        .map(|c| format!("b.{c} AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let join_on = view
        .group_by
        .iter()
        .zip(&view.group_by_types)
        .map(|(k, t)| same_key(k, pg_type(*t)))
        .chain(["b.bucket_start = s.bucket_start".to_string()])
        .collect::<Vec<_>>()
        .join(" AND ");
    let speed_aggregates = view
        .metrics
        .iter()
        .map(|m| merge::aggregate(m, ""))
        .collect::<Vec<_>>()
        .join(", ");
    let stored = layout.stored_columns();
    let order = order_terms(&selection.order);
    let outputs = keys
        .iter()
        .map(|k| (*k).to_string())
        .chain(["bucket_start".to_string()])
        .chain(view.metrics.iter().map(|m| m.column.clone()))
        .chain(
            averages
                .iter()
                .filter(|a| AnswerColumn::returned(columns, &a.column))
                .map(merge::row_average),
        )
        .chain(
            selection
                .parts
                .then(|| vec!["batch_part".to_string(), "speed_part".to_string()])
                .into_iter()
                .flatten(),
        )
        .collect::<Vec<_>>()
        .join(", ");
    let batch_rows = format!(
        "(SELECT {stored} FROM {batch} WHERE {batch_rows} AND {range}) AS b",
        batch = layout.batch_table,
        batch_rows = BatchRows("active$"),
        range = placeholders.range,
    );
    let sql = format!(
        "WITH active$ AS ({active}), \
         speed$ AS (SELECT {group_list}bucket_start, {speed_aggregates} FROM {speed} \
                    WHERE {speed_rows} AND {range} \
                    GROUP BY {group_list}bucket_start) \
         SELECT {head} \
         UNION ALL \
         SELECT {names} FROM ( \
            SELECT {outputs} FROM ( \
              SELECT {batch_only}{batch_only_parts} FROM {batch_rows} \
              WHERE NOT EXISTS (SELECT 1 FROM speed$) \
              UNION ALL \
              SELECT {merged_keys}, {combined}{parts} \
              FROM {batch_rows} FULL JOIN speed$ AS s ON {join_on} \
              WHERE EXISTS (SELECT 1 FROM speed$)) AS merged$ \
            ORDER BY {order} LIMIT {limit} + 1) AS answer$",
        active = batch_runs::active_run_select(&placeholders.name, &placeholders.fingerprint),
        head = head_row(
            columns,
            &placeholders.topic,
            &placeholders.name,
            &placeholders.fingerprint
        ),
        range = placeholders.range,
        limit = placeholders.limit,
        names = row_names(columns),
        speed_rows = SpeedRows("active$"),
        combined = combined.join(", "),
        speed = layout.speed_table,
        group_list = view
            .group_by
            .iter()
            .map(|g| format!("{g}, "))
            .collect::<String>(),
    );
    Some(BoundStatement {
        sql,
        values: st.values,
    })
}
