//! Reading speed rows back per view, key and bucket, and comparing with the oracle.

use std::collections::BTreeMap;

use schemas::pg_layout::ViewLayout;
use schemas::view::MetricKind;
use sqlx::{PgPool, Row};

use crate::oracle::ViewRows;
use crate::support::repo_root;

/// Speed rows with lo ≤ epoch ≤ hi, merged across epochs, per view.
pub async fn speed_rows(pool: &PgPool, lo: i64, hi: i64) -> BTreeMap<String, ViewRows> {
    let config = schemas::BraidConfig::load(Some(&repo_root().join("braid.toml"))).unwrap();
    let mut views = BTreeMap::new();
    for view in &config.views {
        let layout = ViewLayout::of(view);
        let groups: Vec<String> = layout
            .group_columns
            .iter()
            .map(|c| format!("{}::text", c.name))
            .collect();
        let metrics: Vec<String> = view
            .metrics
            .iter()
            .map(|m| match m.kind {
                MetricKind::Count | MetricKind::Sum => format!("sum({})::bigint", m.column),
                MetricKind::Min => format!("min({})::bigint", m.column),
                MetricKind::Max => format!("max({})::bigint", m.column),
            })
            .collect();
        let group_by: Vec<String> = layout
            .group_columns
            .iter()
            .map(|c| c.name.clone())
            .chain(["bucket_start".to_string()])
            .collect();
        let sql = format!(
            "SELECT {groups}{comma}(extract(epoch FROM bucket_start) * 1000000)::bigint, {metrics} FROM {table} \
             WHERE epoch BETWEEN $1 AND $2 GROUP BY {group_by}",
            groups = groups.join(", "),
            comma = if groups.is_empty() { "" } else { ", " },
            metrics = metrics.join(", "),
            table = layout.speed_table,
            group_by = group_by.join(", "),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await
            .unwrap();
        let mut out = ViewRows::new();
        for row in rows {
            let n = groups.len();
            let key: Vec<Option<String>> =
                (0..n).map(|i| row.get::<Option<String>, _>(i)).collect();
            let bucket: i64 = row.get(n);
            let values: Vec<Option<i64>> = (0..metrics.len())
                .map(|i| row.get::<Option<i64>, _>(n + 1 + i))
                .collect();
            out.insert((key, bucket), values);
        }
        views.insert(view.name.clone(), out);
    }
    views
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
