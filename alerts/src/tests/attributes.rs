//! Issue 40: a rule grouped by an attribute of a versioned dimension. Each bucket of the window
//! joins the version of its page valid at the bucket's start, so one page's records can count
//! toward two regions within one window; the values equal an independent sum per region.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgPool;

use super::*;

const DIMENSION: &str = r#"
[[dimensions]]
name = "regions"
key = "page"
versioned = true
attributes = [{ name = "region", type = "string" }]
source = { postgres_table = "public.regions" }
"#;

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_rule_grouped_by_a_versioned_attribute_counts_each_bucket_under_its_version(
    pool: PgPool,
) {
    sqlx::raw_sql(
        "CREATE TABLE public.regions (page text, valid_from timestamptz NOT NULL, region text, \
         PRIMARY KEY (page, valid_from))",
    )
    .execute(&pool)
    .await
    .unwrap();
    let config =
        BraidConfig::load_from(Some(("test.toml", &format!("{CONFIG}\n{DIMENSION}"))), []).unwrap();
    schemas::pg::ensure_view_tables(&pool, &config.views)
        .await
        .unwrap();
    let view = config.views[0].clone();
    assert_eq!(view.served_name(1), "region");
    // Versions: /a in eu, then in us from 25 s into the window (so from the bucket at 30 s);
    // /b in eu; /c in none (no version): a null region.
    let versions = [
        ("/a", -3_600.0, "eu"),
        ("/a", 25.0, "us"),
        ("/b", -3_600.0, "eu"),
        ("/b", 3_600.0, "us"), // after the window: never applies
    ];
    for (page, from, region) in versions {
        sqlx::query("INSERT INTO public.regions VALUES ($1, $2, $3)")
            .bind(page)
            .bind(at(from))
            .bind(region)
            .execute(&pool)
            .await
            .unwrap();
    }
    // Records per page and 10 s bucket over [0, 60 s), in two epochs.
    let mut rows = Vec::new();
    for (i, page) in ["/a", "/b", "/c"].iter().enumerate() {
        for bucket in 0..6 {
            let count = (i as i64 + 1) * (bucket + 1);
            rows.push((*page, bucket, count));
            add(
                &pool,
                &view,
                1 + bucket % 2,
                at(bucket as f64 * 10.0),
                page,
                count,
            )
            .await;
        }
    }
    let region_at = |page: &str, start: f64| {
        versions
            .iter()
            .filter(|(p, from, _)| *p == page && *from <= start)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(_, _, region)| region.to_string())
    };
    let mut expected: BTreeMap<Option<String>, f64> = BTreeMap::new();
    for (page, bucket, count) in &rows {
        *expected
            .entry(region_at(page, *bucket as f64 * 10.0))
            .or_default() += *count as f64;
    }
    let mut rule = rule(CompareOp::Gt, 0.0, 60);
    rule.group_by = vec![1];
    let lock = lead(&pool).await;
    let evaluation = evaluate_and_record(&pool, &lock, &view, &rule, at(60.0), 100).await;
    let observed: BTreeMap<Option<String>, f64> = evaluation
        .instances
        .iter()
        .map(|i| {
            (
                i.labels
                    .get("region")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                i.value.unwrap(),
            )
        })
        .collect();
    assert_eq!(observed, expected);
    assert_eq!(observed.len(), 3, "eu, us and the pages without a region");
}
