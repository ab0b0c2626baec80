//! Reading Braid's rows back per view, key and bucket (speed rows, active batch rows, and the
//! merge of both), and comparing them with the oracle.

use std::collections::BTreeMap;

use schemas::pg_layout::ViewLayout;
use schemas::plan::{MergeRule, MetricPlan, ReadRule, SketchType, ViewPlan};
use schemas::view::View;
use sqlx::{PgConnection, Row};

use crate::oracle::ViewRows;
use crate::support::repo_root;

/// Which rows to read.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// Speed rows with lo ≤ epoch ≤ hi.
    Speed(i64, i64),
    /// The active batch run's rows.
    Batch,
    /// The exact merge: active batch rows ⊕ speed rows at or above the covered epoch.
    Merged,
    /// The same merge as Braid's SQL views in the `serving` schema answer it.
    Serving,
}

const ACTIVE_RUN: &str = "SELECT run_id, covered_epoch FROM braid_internal.batch_runs \
                          WHERE view_name = $1 AND fingerprint = $2 AND status = 'active'";

/// Rows of every demo view from `source`, merged across epochs and runs, per key and bucket.
pub async fn read_rows(
    connection: &mut PgConnection,
    source: Source,
) -> BTreeMap<String, ViewRows> {
    let config = schemas::BraidConfig::load(Some(&repo_root().join("braid.toml"))).unwrap();
    let mut views = BTreeMap::new();
    for view in &config.views {
        views.insert(view.name.clone(), read_view(connection, view, source).await);
    }
    views
}

async fn read_view(connection: &mut PgConnection, view: &View, source: Source) -> ViewRows {
    let layout = ViewLayout::of(view);
    let plan = ViewPlan::of(view);
    // serving.<view> answers sketches' estimates as numbers and has the merged sketches beside
    // them.
    let metric_columns = plan.metrics.iter().map(|m| match (m.merge(), source) {
        // A sample is its own merged sketch.
        (MergeRule::Union(SketchType::Sample(_)), Source::Serving) => m.column.clone(),
        (MergeRule::Union(_), Source::Serving) => format!("{c}_sketch AS {c}", c = m.column),
        _ => m.column.clone(),
    });
    let columns: Vec<String> = layout
        .group_names()
        .into_iter()
        .map(str::to_string)
        .chain(metric_columns)
        .chain(["bucket_start".to_string()])
        .collect();
    let columns = columns.join(", ");
    let (speed, batch) = (&layout.speed_table, &layout.batch_table);
    let rows_sql = match source {
        Source::Speed(..) => format!("SELECT {columns} FROM {speed} WHERE epoch BETWEEN $3 AND $4"),
        Source::Batch => {
            format!("SELECT {columns} FROM {batch} WHERE run_id = (SELECT run_id FROM active)")
        }
        Source::Serving => format!("SELECT {columns} FROM {}", layout.serving_view),
        Source::Merged => format!(
            "SELECT {columns} FROM {batch} WHERE run_id = (SELECT run_id FROM active) UNION ALL \
             SELECT {columns} FROM {speed} WHERE epoch >= coalesce((SELECT covered_epoch FROM active), 0)"
        ),
    };
    let groups: Vec<String> = layout
        .group_columns
        .iter()
        .map(|c| format!("{}::text", c.name))
        .collect();
    let metrics: Vec<String> = plan.metrics.iter().map(merged_text).collect();
    let group_by: Vec<String> = layout
        .group_columns
        .iter()
        .map(|c| c.name.clone())
        .chain(["bucket_start".to_string()])
        .collect();
    let sql = format!(
        "WITH active AS ({ACTIVE_RUN}) SELECT {groups}{comma}(extract(epoch FROM bucket_start) * 1000000)::bigint, {metrics} \
         FROM ({rows_sql}) AS r GROUP BY {group_by}",
        groups = groups.join(", "),
        comma = if groups.is_empty() { "" } else { ", " },
        metrics = metrics.join(", "),
        group_by = group_by.join(", "),
    );
    let (lo, hi) = match source {
        Source::Speed(lo, hi) => (lo, hi),
        _ => (0, 0),
    };
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&view.name)
        .bind(&view.fingerprint);
    let query = if matches!(source, Source::Speed(..)) {
        query.bind(lo).bind(hi)
    } else {
        query
    };
    let rows = query.fetch_all(&mut *connection).await.unwrap();
    let mut out = ViewRows::new();
    for row in rows {
        let n = groups.len();
        let key: Vec<Option<String>> = (0..n).map(|i| row.get::<Option<String>, _>(i)).collect();
        let bucket: i64 = row.get(n);
        let values: Vec<Option<i128>> = (0..metrics.len())
            .map(|i| {
                row.get::<Option<String>, _>(n + 1 + i)
                    .map(|text| text.parse::<i128>().unwrap())
            })
            .collect();
        out.insert((key, bucket), values);
    }
    out
}

/// The test's own merge of a metric's rows, as text, by the rules its plan names (written
/// here, not taken from the production lowering it checks: `schemas::pg_layout::merge`).
fn merged_text(m: &MetricPlan) -> String {
    let c = &m.column;
    match m.read {
        // Floating-point scores: serving::decayed compares them with a tolerance.
        ReadRule::DecayedToNow { .. } => return "NULL::text".to_string(),
        ReadRule::Plain | ReadRule::Estimate(_) => {}
    }
    match m.merge() {
        // As text: sums of i64 fields are numeric and may exceed bigint.
        MergeRule::Add => format!("sum({c})::text"),
        MergeRule::Least => format!("min({c})::text"),
        MergeRule::Greatest => format!("max({c})::text"),
        // The estimate, rounded (serving::distinct compares sketches exactly).
        MergeRule::Union(SketchType::Hll(_)) => {
            format!("round(coalesce(hll_cardinality(hll_union_agg({c})), 0))::bigint::text")
        }
        // The merged sketch's bytes, as 60 bits of their digest (a number, like the other
        // cells): equal sketches give equal cells (latency::latency_sketches_match compares
        // them with the records).
        MergeRule::Union(SketchType::Quantile(_)) => {
            digest(&format!("serving.quantile_union_agg({c})::text"))
        }
        MergeRule::Union(SketchType::Sample(_)) => {
            digest(&format!("serving.sample_union_agg({c})::text"))
        }
    }
}

/// 60 bits of the MD5 of a text expression, as the decimal text of a bigint.
fn digest(text: &str) -> String {
    format!("(('x' || substr(md5({text}), 1, 15))::bit(60)::bigint)::text")
}

/// Speed rows with lo ≤ epoch ≤ hi.
pub async fn speed_rows(pool: &sqlx::PgPool, lo: i64, hi: i64) -> BTreeMap<String, ViewRows> {
    read_rows(&mut pool.acquire().await.unwrap(), Source::Speed(lo, hi)).await
}

/// Asserts per view, key and bucket that Braid's rows equal the oracle's.
pub fn assert_rows_equal(
    expected: &BTreeMap<&'static str, ViewRows>,
    actual: &BTreeMap<String, ViewRows>,
    when: &str,
) {
    for (view, rows) in expected {
        let got = &actual[*view];
        let missing: Vec<_> = rows
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, _)| !rows.contains_key(*k))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{when}: view {view} differs ({} expected rows, {} actual); first differences: expected {missing:?}, unexpected {extra:?}",
            rows.len(),
            got.len()
        );
    }
    assert!(
        expected.values().map(|r| r.len()).sum::<usize>() > 0,
        "{when}: the comparison must cover some rows"
    );
}

/// Loads the valid `messages` into the session's temporary table `visits (page, ts, user_id)`,
/// replacing what an earlier call left there: the records PostgreSQL's own `hll_add_agg` and
/// `count(DISTINCT ...)` are run over.
pub async fn load_visits<'a>(
    connection: &mut PgConnection,
    messages: impl IntoIterator<Item = &'a crate::oracle::RawMessage>,
) {
    let (mut pages, mut times, mut users) = (Vec::new(), Vec::new(), Vec::new());
    for message in messages {
        if crate::oracle::refusal(&message.payload).is_some() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let object = value.as_object().unwrap();
        let micros = crate::oracle::event_time(&object["ts"]).unwrap();
        pages.push(crate::oracle::text(object, "page"));
        times.push(chrono::DateTime::from_timestamp_micros(micros).unwrap());
        users.push(crate::oracle::text(object, "user_id"));
    }
    sqlx::query("DROP TABLE IF EXISTS pg_temp.visits")
        .execute(&mut *connection)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TEMP TABLE visits AS SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[]) \
         AS v(page, ts, user_id)",
    )
    .bind(&pages)
    .bind(&times)
    .bind(&users)
    .execute(&mut *connection)
    .await
    .unwrap();
}

/// Compares, per page and minute, the merged `unique_visitors` sketch (active batch rows ⊕
/// speed rows at or above the covered epoch, unioned by `hll_union_agg`) with the sketch
/// PostgreSQL's own `hll_add_agg` builds from the valid `messages` at the extension's defaults
/// (what `distinct(user_id)` means): byte for byte, in whichever form (EXPLICIT, SPARSE, FULL)
/// the extension gives it, so a lost or doubled record anywhere shows. Returns what differs.
pub async fn distinct_sketches_match<'a>(
    connection: &mut PgConnection,
    messages: impl IntoIterator<Item = &'a crate::oracle::RawMessage>,
) -> Result<(), String> {
    let config = schemas::BraidConfig::load(Some(&repo_root().join("braid.toml"))).unwrap();
    let view = config
        .views
        .iter()
        .find(|v| v.name == "unique_visitors")
        .expect("the demo view unique_visitors");
    load_visits(&mut *connection, messages).await;
    let layout = ViewLayout::of(view);
    let sql = format!(
        "WITH active AS ({ACTIVE_RUN}), \
         merged AS (SELECT page, bucket_start, hll_union_agg(distinct_user_id)::text AS sketch FROM ( \
             SELECT page, bucket_start, distinct_user_id FROM {batch} WHERE run_id = (SELECT run_id FROM active) \
             UNION ALL \
             SELECT page, bucket_start, distinct_user_id FROM {speed} WHERE epoch >= coalesce((SELECT covered_epoch FROM active), 0) \
           ) AS r GROUP BY 1, 2), \
         reference AS (SELECT page, date_bin('1 minute', ts, timestamptz 'epoch') AS bucket_start, \
             hll_add_agg(hll_hash_text(user_id))::text AS sketch FROM visits GROUP BY 1, 2) \
         SELECT count(*), (SELECT count(*) FROM reference) FROM merged FULL JOIN reference \
           ON merged.page IS NOT DISTINCT FROM reference.page AND merged.bucket_start = reference.bucket_start \
         WHERE merged.sketch IS DISTINCT FROM reference.sketch",
        batch = layout.batch_table,
        speed = layout.speed_table,
    );
    let (differing, groups): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&view.name)
        .bind(&view.fingerprint)
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    if differing == 0 && groups > 0 {
        Ok(())
    } else {
        Err(format!(
            "unique_visitors: {differing} of {groups} page minutes have a merged sketch other than hll_add_agg's over the records"
        ))
    }
}
