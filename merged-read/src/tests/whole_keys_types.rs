//! The whole-keys statement over every type its metrics merge pairwise (`f64` sums, minima and
//! maxima, timestamps, `i64` sums beyond `bigint`), with hostile values in the batch rows: the
//! same cells, as text, as the general statement's, in both of its branches (no speed row in
//! the selection, then speed rows of another key in it).

use chrono::{DateTime, Duration, TimeZone, Utc};
use schemas::BraidConfig;
use schemas::pg_layout::ViewLayout;
use sqlx::PgPool;

use super::{averages, statement, values};
use crate::{MergedAnswer, OrderTerm, Selection, Shape};

const TOPIC: &str = "mixed.events";

const CONFIG: &str = r#"
[kafka]
topic = "mixed.events"

[schema]
event_time = "ts"

[[schema.fields]]
name = "ts"
type = "timestamp"

[[schema.fields]]
name = "k"
type = "string"

[[schema.fields]]
name = "flag"
type = "bool"

[[schema.fields]]
name = "x"
type = "f64"
required = false

[[schema.fields]]
name = "seen"
type = "timestamp"
required = false

[[schema.fields]]
name = "n"
type = "i64"
required = false

[[views]]
name = "mixed"
group_by = ["k", "flag"]
bucket = "1m"
metrics = ["count", "sum(x)", "min(x)", "max(x)", "count(x)", "min(seen)", "max(seen)", "sum(n)", "min(n)"]
"#;

/// A batch row's key, flag, `x`, `seen` (µs) and `n` (digits of its sum; its minimum where they
/// fit an i64).
type BatchRow = (
    Option<&'static str>,
    Option<bool>,
    Option<f64>,
    Option<i64>,
    Option<&'static str>,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

/// Each row's values, as their debug text (so NaN equals NaN and -0 differs from 0).
fn cells(answer: &MergedAnswer) -> Vec<String> {
    values(answer)
        .iter()
        .map(|row| format!("{row:?}"))
        .collect()
}

/// Keys and flags, ordered by `order` then the keys, over the first ten minutes, with parts.
fn selection(order: Option<&str>) -> Selection {
    let natural = ["k", "flag", "bucket_start"].map(OrderTerm::ascending);
    Selection {
        from: t0(),
        to: t0() + Duration::minutes(10),
        granularity: Some(60),
        group_by: vec![0, 1],
        filters: Vec::new(),
        order: order
            .map(|column| OrderTerm {
                column: column.into(),
                descending: true,
            })
            .into_iter()
            .chain(natural)
            .collect(),
        limit: 1000,
        decayed_to: t0(),
        parts: true,
        quantiles: Vec::new(),
        samples: false,
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn every_pairwise_type_reads_alike_in_both_statements_and_both_branches(pool: PgPool) {
    let config = BraidConfig::load_from(Some(("mixed.toml", CONFIG)), []).unwrap();
    let view = &config.views[0];
    schemas::pg::ensure_view_tables(&pool, &config.views)
        .await
        .unwrap();
    let layout = ViewLayout::of(view);
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO braid_internal.batch_runs (view_name, fingerprint, status, cut_epoch, covered_epoch, delta_version, finished_at) \
         VALUES ($1, $2, 'active', 1, 2, 7, now()) RETURNING run_id",
    )
    .bind(&view.name)
    .bind(&view.fingerprint)
    .fetch_one(&pool)
    .await
    .unwrap();
    let batch_rows: [BatchRow; 8] = [
        (
            Some("a"),
            Some(true),
            Some(0.1 + 0.2),
            Some(1_772_359_200_123_456),
            Some("123456789012345678901234567890"),
        ),
        (Some("b"), None, Some(f64::INFINITY), None, None),
        (
            None,
            Some(false),
            Some(-0.0),
            Some(0),
            Some("-9223372036854775808"),
        ),
        (
            Some("c"),
            Some(true),
            Some(f64::NAN),
            Some(32_503_680_000_000_000),
            Some("10"),
        ),
        (Some("d"), Some(false), Some(1e308), Some(1), Some("0")),
        (
            Some("e"),
            Some(true),
            Some(f64::from_bits(1)),
            None,
            Some("-1"),
        ),
        (
            Some("f\u{1F600}"),
            Some(true),
            Some(f64::MIN),
            Some(-62_135_596_800_000_000),
            None,
        ),
        (Some("g"), Some(false), None, None, None),
    ];
    for (minute, (k, flag, x, seen, n)) in batch_rows.into_iter().enumerate() {
        let seen = seen.map(|micros| Utc.timestamp_micros(micros).unwrap());
        let n_min: Option<i64> = n.and_then(|digits| digits.parse().ok());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (run_id, bucket_start, k, flag, count, sum_x, min_x, max_x, count_x, min_seen, max_seen, sum_n, min_n) \
             VALUES ($1, $2, $3, $4, 3, $5, $5, $5, 2, $6, $6, $7::numeric, $8)",
            layout.batch_table
        )))
        .bind(run)
        .bind(t0() + Duration::minutes(minute as i64))
        .bind(k)
        .bind(flag)
        .bind(x)
        .bind(seen)
        .bind(n)
        .bind(n_min)
        .execute(&pool)
        .await
        .unwrap();
    }
    for phase in ["no speed row", "speed rows of other keys"] {
        if phase == "speed rows of other keys" {
            // One below the covered epoch (not read) and one above it, in the range.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {} (epoch, bucket_start, k, flag, count, sum_x, min_x, max_x, count_x, min_seen, max_seen, sum_n, min_n) \
                 VALUES (1, $1, 'z', true, 1, 1.5, 1.5, 1.5, 1, $1, $1, 7, 7), (3, $2, 'y', NULL, 1, 2.5, 2.5, 2.5, 1, $2, $2, 7, 7)",
                layout.speed_table
            )))
            .bind(t0() + Duration::minutes(1))
            .bind(t0() + Duration::minutes(2))
            .execute(&pool)
            .await
            .unwrap();
        }
        for order in [None, Some("avg_x"), Some("max_seen"), Some("sum_n")] {
            let selection = selection(order);
            let fast = statement(view, &selection, TOPIC, false);
            assert_eq!(fast.shape(), Shape::WholeKeys, "{phase}, {order:?}");
            let fast = fast.run(&pool).await.unwrap();
            let general = statement(view, &selection, TOPIC, true)
                .run(&pool)
                .await
                .unwrap();
            let expected_rows = if phase == "no speed row" { 8 } else { 9 };
            assert_eq!(fast.rows.len(), expected_rows, "{phase}, {order:?}");
            assert_eq!(cells(&fast), cells(&general), "{phase}, {order:?}");
        }
        // The average of the f64 sums, computed by the reader (no order names it) and by
        // PostgreSQL (an order term names it), per key: the same bits (any NaN as NaN).
        for general in [false, true] {
            let read = |order| statement(view, &selection(order), TOPIC, general);
            let in_rust = averages(&read(None).run(&pool).await.unwrap(), "avg_x", false);
            let in_sql = averages(
                &read(Some("avg_x")).run(&pool).await.unwrap(),
                "avg_x",
                true,
            );
            assert_eq!(in_rust.len(), in_sql.len(), "{phase}, general {general}");
            assert_eq!(in_rust, in_sql, "{phase}, general {general}");
        }
    }
}
