//! One statement per request: the exact merge of the active batch run and the speed rows,
//! filtered, rolled up to the asked granularity, ordered and limited, rendered as JSON by
//! PostgreSQL, together with the provenance read in the same snapshot. Identifiers come from
//! the validated view; every value is a bound parameter.

use std::fmt::Write as _;

use schemas::pg::batch_runs;
use schemas::pg_layout::{ViewLayout, merge};
use schemas::view::View;
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use std::sync::Arc;

use super::answer_cache::{AnswerCache, AnswerKey};
use super::answer_json::{Answer, OutputColumn};
use super::error::ApiError;
use super::params::Selection;
use super::statement::{
    Bind, BoundStatement, Placeholders, Statement, answer_columns, head_row, order_terms, row_names,
};

/// The answer's columns: kept group fields, bucket_start when bucketed, metrics, averages.
pub fn output_columns(view: &View, group_by: &[usize], bucketed: bool) -> Vec<String> {
    group_by
        .iter()
        .map(|&i| view.served_name(i).to_string())
        .chain(bucketed.then(|| "bucket_start".to_string()))
        .chain(view.metrics.iter().map(|m| m.column.clone()))
        .chain(view.averages().into_iter().map(|a| a.column))
        .collect()
}

/// Renders the statement for `selection` over `view`, reading positions of `topic`: the one
/// for whole keys at the view's bucket when it applies (`whole_keys`), else the general one.
fn statement(
    view: &View,
    selection: &Selection,
    topic: &str,
) -> (String, Statement, Vec<OutputColumn>) {
    super::whole_keys::statement(view, selection, topic)
        .unwrap_or_else(|| general_statement(view, selection, topic))
}

/// The general statement: the stored rows of both layers unioned, joined to the dimensions
/// the selection uses, rolled up to the granularity by the kept fields.
pub(super) fn general_statement(
    view: &View,
    selection: &Selection,
    topic: &str,
) -> (String, Statement, Vec<OutputColumn>) {
    let layout = ViewLayout::of(view);
    let mut st = Statement::default();
    let Placeholders {
        name,
        fingerprint,
        from,
        to,
        limit,
        topic,
    } = st.bind_selection(view, selection, topic);
    // Filters on group fields apply to the stored rows; filters on attributes after the join.
    let mut filters = String::new();
    let mut attribute_filters = String::new();
    for (index, values) in &selection.filters {
        let placeholder = st.bind_filter(values);
        let target = if view.served_attribute(*index).is_some() {
            &mut attribute_filters
        } else {
            &mut filters
        };
        let _ = write!(
            target,
            " AND {} = ANY({placeholder})",
            view.served_name(*index)
        );
    }
    let stored = layout.stored_columns();
    let range = format!("bucket_start >= {from} AND bucket_start < {to}{filters}");
    let attributes: Vec<usize> = selection
        .group_by
        .iter()
        .chain(selection.filters.iter().map(|(i, _)| i))
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
    let columns = answer_columns(view, selection);
    // Bound only for views with a decayed metric, so that other views' statements stay as they were.
    let decayed_to = if view.has_decayed_metrics() {
        st.bind(Bind::Time(selection.decayed_to))
    } else {
        String::new()
    };
    for metric in &view.metrics {
        outputs.push(merge::aggregate(metric, &decayed_to));
    }
    for average in view.averages() {
        outputs.push(merge::average(&average));
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
    let order = match order_terms(selection) {
        terms if terms.is_empty() => String::new(),
        terms => format!("ORDER BY {terms}"),
    };
    let sql = format!(
        "WITH active$ AS ({active}), \
         stored$ AS ({joined_head} \
           SELECT {stored}{batch_mark} FROM {batch} WHERE run_id = (SELECT run_id FROM active$) AND {range} \
           UNION ALL \
           SELECT {stored}{speed_mark} FROM {speed} WHERE epoch >= coalesce((SELECT covered_epoch FROM active$), 0) AND {range}{joined_tail}), \
         merged$ AS ( \
           SELECT {outputs} FROM stored$ {group_by} HAVING count(*) > 0 {order} LIMIT {limit} + 1) \
         SELECT {head} \
         UNION ALL \
         SELECT 1, row_number() OVER ({order}), {names}, NULL, NULL, NULL, NULL \
         FROM (SELECT * FROM merged$ {order} LIMIT {limit}) AS page$ \
         ORDER BY part$, ord$",
        head = head_row(
            &columns,
            &format!("(SELECT count(*) FROM merged$) > {limit}"),
            &topic,
            &name,
            &fingerprint
        ),
        joined_head = joined.head,
        joined_tail = joined.tail,
        active = batch_runs::active_run_select(&name, &fingerprint),
        batch = layout.batch_table,
        speed = layout.speed_table,
        outputs = outputs.join(", "),
        names = row_names(&columns),
    );
    (sql, st, columns)
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

fn bind_all<'q>(
    mut query: Query<'q, sqlx::Postgres, PgArguments>,
    binds: Vec<Bind>,
) -> Query<'q, sqlx::Postgres, PgArguments> {
    for bind in binds {
        query = match bind {
            Bind::Text(v) => query.bind(v),
            Bind::Int(v) => query.bind(v),
            Bind::Time(v) => query.bind(v),
            Bind::Texts(v) => query.bind(v),
            Bind::Ints(v) => query.bind(v),
            Bind::Bools(v) => query.bind(v),
        };
    }
    query
}

/// The statement that answers `selection` over `view`, reading positions of `topic`.
pub fn bound_statement(view: &View, selection: &Selection, topic: &str) -> BoundStatement {
    let (sql, statement, _) = statement(view, selection, topic);
    BoundStatement {
        sql,
        values: statement.binds,
    }
}

/// Runs `selection` over `view` in one statement (one snapshot): a head row with the
/// provenance, then the rows, which are rendered as JSON here rather than by PostgreSQL (the
/// database is the shared, busier resource).
pub async fn run(
    pool: &PgPool,
    view: &View,
    selection: &Selection,
    topic: &str,
) -> Result<Answer, ApiError> {
    let (sql, statement, columns) = statement(view, selection, topic);
    execute(pool, sql, statement, &columns, selection.limit).await
}

/// [`run`], answered from `cache` when the same statement was answered since the view last
/// changed. Answers that join dimensions (which change without notifying) or decay to the
/// request's time are not cached.
pub async fn run_cached(
    pool: &PgPool,
    cache: &AnswerCache,
    view: &View,
    selection: &Selection,
    topic: &str,
) -> Result<Arc<Answer>, ApiError> {
    let joins_dimensions = selection
        .group_by
        .iter()
        .chain(selection.filters.iter().map(|(i, _)| i))
        .any(|&i| view.served_attribute(i).is_some());
    let (sql, statement, columns) = statement(view, selection, topic);
    if !cache.is_on() || joins_dimensions || view.has_decayed_metrics() {
        return Ok(Arc::new(
            execute(pool, sql, statement, &columns, selection.limit).await?,
        ));
    }
    let key = AnswerKey {
        view: view.name.clone(),
        statement: format!("{sql}\n{:?}", statement.binds),
        first_micros: selection.from.timestamp_micros(),
        end_micros: selection.to.timestamp_micros(),
    };
    if let Some(hit) = cache.get(&key) {
        metrics::counter!("braid_serving_answer_cache_hits_total").increment(1);
        if hit.refresh {
            let (pool, cache, columns, limit) = (
                pool.clone(),
                cache.clone(),
                columns.clone(),
                selection.limit,
            );
            let generation = cache.generation(&view.name);
            tokio::spawn(async move {
                // A failed refresh leaves the answer to expire; the next request reads anew.
                if let Ok(answer) = execute(&pool, sql, statement, &columns, limit).await {
                    cache.put(key, generation, Arc::new(answer));
                }
            });
        }
        return Ok(hit.answer);
    }
    metrics::counter!("braid_serving_answer_cache_misses_total").increment(1);
    let generation = cache.generation(&view.name);
    let answer = Arc::new(execute(pool, sql, statement, &columns, selection.limit).await?);
    cache.put(key, generation, Arc::clone(&answer));
    Ok(answer)
}

/// [`run`] with the general statement whatever the selection (to compare the two).
#[cfg(test)]
pub(super) async fn run_general(
    pool: &PgPool,
    view: &View,
    selection: &Selection,
    topic: &str,
) -> Result<Answer, ApiError> {
    let (sql, statement, columns) = general_statement(view, selection, topic);
    execute(pool, sql, statement, &columns, selection.limit).await
}

async fn execute(
    pool: &PgPool,
    sql: String,
    statement: Statement,
    columns: &[OutputColumn],
    limit: i64,
) -> Result<Answer, ApiError> {
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), statement.binds)
        .fetch_all(pool)
        .await?;
    let (head, mut rows) = rows
        .split_first()
        .ok_or_else(|| ApiError::Internal("the statement returned no head row".into()))?;
    let after = 2 + columns.len();
    // A NULL truncation flag: the statement returned one row past the limit when more matched.
    let truncated = match head.try_get::<Option<bool>, _>(after)? {
        Some(truncated) => truncated,
        None => {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let more = rows.len() > limit;
            rows = &rows[..rows.len().min(limit)];
            more
        }
    };
    let mut json = String::with_capacity(64 + rows.len() * 24 * (columns.len() + 1));
    json.push('[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        super::answer_json::write_row(&mut json, row, columns, 2)?;
    }
    json.push(']');
    Ok(Answer {
        rows: json,
        truncated,
        batch: head.try_get(after + 1)?,
        speed: head.try_get(after + 2)?,
        backfilling: head.try_get(after + 3)?,
    })
}
