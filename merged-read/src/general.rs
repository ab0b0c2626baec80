//! The general statement: the stored rows of both layers unioned, joined to the dimensions the
//! selection uses, rolled up to the granularity by the kept fields, ordered and limited, with
//! the provenance read in the same snapshot.

use schemas::pg::batch_runs;
use schemas::pg_layout::{ViewLayout, merge};
use schemas::view::View;

use crate::columns::AnswerColumn;
use crate::selection::Selection;
use crate::statement::{
    BatchRows, Bind, Binds, BoundStatement, Placeholders, SpeedRows, head_row, order_terms,
    row_names,
};

/// The statement for `selection` over `view` (whose answer has `columns`), reading positions
/// of `topic`.
pub(crate) fn statement(
    view: &View,
    selection: &Selection,
    topic: &str,
    columns: &[AnswerColumn],
) -> BoundStatement {
    let layout = ViewLayout::of(view);
    let mut st = Binds::default();
    // Filters on group fields apply to the stored rows (`range`); on attributes after the join.
    let Placeholders {
        name,
        fingerprint,
        limit,
        topic,
        range,
        attribute_filters,
    } = st.bind_selection(view, selection, topic);
    let stored = layout.stored_columns();
    let attributes: Vec<usize> = selection
        .group_by
        .iter()
        .chain(selection.filters.iter().map(|f| &f.field))
        .copied()
        .filter(|&i| view.served_attribute(i).is_some())
        .collect();
    let joined = joins(view, &attributes, &attribute_filters);

    let mut outputs: Vec<String> = selection
        .group_by
        .iter()
        .map(|&i| view.served_name(i).to_string())
        .collect();
    if let Some(seconds) = selection.granularity {
        let width = st.bind(Bind::Int(seconds));
        outputs.push(format!(
            "date_bin({width} * interval '1 second', bucket_start, timestamptz 'epoch') AS bucket_start"
        ));
    }
    let keys = outputs.len();
    // Bound only for views with a decayed metric, so that other views' statements stay as they were.
    let decayed_to = if view.has_decayed_metrics() {
        st.bind(Bind::Time(selection.decayed_to))
    } else {
        String::new()
    };
    // Each quantile level is bound once, and read by every quantile metric.
    let levels: Vec<String> = if view.metrics.iter().any(merge::answers_quantiles) {
        selection
            .quantiles
            .iter()
            .map(|level| st.bind(Bind::Float(level.value())))
            .collect()
    } else {
        Vec::new()
    };
    for metric in &view.metrics {
        if merge::is_sample(metric) && !selection.samples {
            continue;
        }
        if merge::answers_quantiles(metric) {
            outputs.extend(
                selection
                    .quantiles
                    .iter()
                    .zip(&levels)
                    .map(|(level, q)| merge::quantile(metric, q, &level.column(&metric.column))),
            );
        } else {
            outputs.push(merge::aggregate(metric, &decayed_to));
        }
    }
    for average in view.averages() {
        if AnswerColumn::returned(columns, &average.column) {
            outputs.push(merge::average(&average));
        }
    }
    if selection.parts {
        outputs.push("bool_or(from_batch$) AS batch_part".into());
        outputs.push("bool_or(NOT from_batch$) AS speed_part".into());
    }
    // Which part a stored row comes from, only when asked (other statements stay as they were).
    let (batch_mark, speed_mark) = if selection.parts {
        (", true AS from_batch$", ", false AS from_batch$")
    } else {
        ("", "")
    };
    let group_by = if keys == 0 {
        String::new()
    } else {
        format!(
            "GROUP BY {}",
            (1..=keys)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let order = match order_terms(&selection.order) {
        terms if terms.is_empty() => String::new(),
        terms => format!("ORDER BY {terms}"),
    };
    let sql = format!(
        "WITH active$ AS ({active}), \
         stored$ AS ({joined_head} \
           SELECT {stored}{batch_mark} FROM {batch} WHERE {batch_rows} AND {range} \
           UNION ALL \
           SELECT {stored}{speed_mark} FROM {speed} WHERE {speed_rows} AND {range}{joined_tail}), \
         merged$ AS ( \
           SELECT {outputs} FROM stored$ {group_by} HAVING count(*) > 0 {order} LIMIT {limit} + 1) \
         SELECT {head} \
         UNION ALL \
         SELECT {names} FROM merged$",
        head = head_row(columns, &topic, &name, &fingerprint),
        joined_head = joined.head,
        joined_tail = joined.tail,
        active = batch_runs::active_run_select(&name, &fingerprint),
        batch = layout.batch_table,
        batch_rows = BatchRows("active$"),
        speed = layout.speed_table,
        speed_rows = SpeedRows("active$"),
        outputs = outputs.join(", "),
        names = row_names(columns),
    );
    BoundStatement {
        sql,
        values: st.values,
    }
}

/// The text around the stored rows' UNION that joins the dimensions of the attributes an
/// answer uses (none: empty). A key missing from a dimension joins to nulls: its rows stay, under
/// a null attribute.
struct Joined {
    head: String,
    tail: String,
}

fn joins(view: &View, attributes: &[usize], attribute_filters: &str) -> Joined {
    let used = attributes
        .iter()
        .map(|&i| view.served_attribute(i).expect("attributes only"));
    let (columns, joins) = schemas::dimension::attribute_joins(used, "rows$", "j$");
    if columns.is_empty() {
        return Joined {
            head: String::new(),
            tail: String::new(),
        };
    }
    let filtered = if attribute_filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE true{attribute_filters}")
    };
    Joined {
        head: format!("SELECT rows$.*, {} FROM (", columns.join(", ")),
        tail: format!(") AS rows${joins}{filtered}"),
    }
}
