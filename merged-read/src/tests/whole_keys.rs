//! The whole-keys statement answers exactly what the general statement answers, row for row:
//! with NULL keys on both sides of the merge, truncation, orders, filters and parts.

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use schemas::pg_layout::ViewLayout;
use sqlx::PgPool;

use super::{averages, statement, values};
use crate::fixture::{TOPIC, config, sales, start, store, store_positions};
use crate::{
    CellValue, Filter, FilterValues, MergedAnswer, OrderTerm, ReadStatement, Selection, Shape,
};

/// The active run of the fixture's `sales` view.
async fn active_run(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT run_id FROM braid_internal.batch_runs WHERE status = 'active' AND view_name = 'sales'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Whole keys of `sales` at its bucket from 09:00 to 13:00, in the API's default order.
fn selection(group_by: &[usize], order: &[(&str, bool)], limit: i64) -> Selection {
    let names = ["country", "store"];
    let order: Vec<OrderTerm> = order
        .iter()
        .map(|&(column, descending)| OrderTerm {
            column: column.into(),
            descending,
        })
        .chain(group_by.iter().map(|&i| OrderTerm::ascending(names[i])))
        .chain([OrderTerm::ascending("bucket_start")])
        .collect();
    Selection {
        from: start() - Duration::hours(1),
        to: start() + Duration::hours(3),
        granularity: Some(60),
        group_by: group_by.to_vec(),
        filters: Vec::new(),
        order,
        limit,
        decayed_to: start(),
        parts: false,
        quantiles: Vec::new(),
        samples: false,
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn whole_keys_answer_as_the_general_statement(pool: PgPool) {
    store(&pool, &sales(), Some(2)).await;
    store_positions(&pool).await;
    // A NULL country in the active run and in the speed rows, in one bucket: one merged row.
    let config = config();
    let view = &config.views[0];
    let layout = ViewLayout::of(view);
    let bucket = Utc.with_ymd_and_hms(2026, 3, 1, 10, 30, 0).unwrap();
    let run = active_run(&pool).await;
    for (table, id_column, id) in [
        (&layout.batch_table, "run_id", run),
        (&layout.speed_table, "epoch", 3),
        (&layout.speed_table, "epoch", 2),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({id_column}, bucket_start, country, store, count, sum_cents, min_cents, max_cents, count_cents) \
             VALUES ($1, $2, NULL, 1, 2, 10, 4, 6, 2)"
        )))
        .bind(id)
        .bind(bucket)
        .execute(&pool)
        .await
        .unwrap();
    }
    let all = i64::from(u16::MAX);
    let mut filtered = selection(&[0, 1], &[], all);
    filtered.filters = vec![
        Filter {
            field: 0,
            values: FilterValues::Text(vec!["DE".into(), "it's".into()]),
        },
        Filter {
            field: 1,
            values: FilterValues::Int(vec![2]),
        },
    ];
    let mut parts = selection(&[1, 0], &[], all);
    parts.parts = true;
    let mut averages_with_parts = selection(&[0, 1], &[("avg_cents", true)], 30);
    averages_with_parts.parts = true;
    let cases = [
        ("default", selection(&[0, 1], &[], all)),
        (
            "order",
            selection(&[0, 1], &[("count", true), ("sum_cents", false)], all),
        ),
        ("limit", selection(&[0, 1], &[], 7)),
        ("filters", filtered),
        ("parts", parts),
        ("averages with parts", averages_with_parts),
    ];
    for (case, selection) in cases {
        let fast = statement(view, &selection, TOPIC, false);
        assert_eq!(fast.shape(), Shape::WholeKeys, "{case}");
        let fast = fast.run(&pool).await.unwrap();
        let general = statement(view, &selection, TOPIC, true)
            .run(&pool)
            .await
            .unwrap();
        assert!(!fast.rows.is_empty(), "{case}: rows to compare");
        assert_eq!(values(&fast), values(&general), "{case}");
        assert_eq!(fast.rows.columns(), general.rows.columns(), "{case}");
        assert_eq!(fast.truncated, general.truncated, "{case}");
        assert_eq!(fast.provenance, general.provenance, "{case}");
        // The active run's JSON as PostgreSQL's json_build_object wrote it, passed through.
        let batch = fast.provenance.batch.as_deref().unwrap_or_default();
        assert!(batch.starts_with("{\"run_id\" : "), "{case}: {batch}");
        if case == "limit" {
            assert!(fast.truncated && fast.rows.len() == 7, "{case}");
        }
        if case == "default" {
            // Its batch row and two speed rows merged into one.
            let null_key = [
                CellValue::Null,
                CellValue::Int(1),
                CellValue::Time(bucket),
                CellValue::Int(6),
            ];
            assert!(
                values(&fast).iter().any(|row| row[..4] == null_key),
                "the NULL key's rows are merged into one"
            );
        }
    }
}

/// A range the active run covers whole (no speed row within it; here every epoch is covered)
/// is read from the batch rows alone, behind the statement's one-time test: the same rows as
/// the general statement and as a fold over the records, every row from the batch part.
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_range_without_speed_rows_is_read_from_the_batch_rows_alone(pool: PgPool) {
    let sales = sales();
    store(&pool, &sales, Some(4)).await;
    store_positions(&pool).await;
    let config = config();
    let view = &config.views[0];
    let all = i64::from(u16::MAX);
    let mut parts = selection(&[0, 1], &[], all);
    parts.parts = true;
    let mut filtered = selection(&[1, 0], &[("count", true)], all);
    filtered.filters = vec![Filter {
        field: 0,
        values: FilterValues::Text(vec!["it's".into()]),
    }];
    for (case, selection) in [
        ("parts", parts),
        ("filtered, ordered by count", filtered),
        (
            "averages ordered",
            selection(&[0, 1], &[("avg_cents", false)], all),
        ),
        ("limit", selection(&[0, 1], &[], 9)),
    ] {
        let fast = statement(view, &selection, TOPIC, false)
            .run(&pool)
            .await
            .unwrap();
        let general = statement(view, &selection, TOPIC, true)
            .run(&pool)
            .await
            .unwrap();
        assert!(!fast.rows.is_empty(), "{case}: rows to compare");
        assert_eq!(values(&fast), values(&general), "{case}");
        assert_eq!(fast.truncated, general.truncated, "{case}");
        assert_eq!(fast.provenance, general.provenance, "{case}");
        if case == "limit" {
            assert!(fast.truncated && fast.rows.len() == 9, "{case}");
        }
        if case == "parts" {
            // The fold over every record, per (country, store, minute): count and sum.
            // (count, sum, min, max) of the cents; a bucket without cents has no sum, min or max.
            type Folded = (i64, Option<i64>, Option<i64>, Option<i64>);
            let mut fold: BTreeMap<(String, i64, i64), Folded> = BTreeMap::new();
            for sale in &sales {
                let bucket = sale.micros.div_euclid(60_000_000) * 60_000_000;
                let totals = fold
                    .entry((sale.country.to_string(), sale.store, bucket))
                    .or_default();
                totals.0 += 1;
                if let Some(cents) = sale.cents {
                    totals.1 = Some(totals.1.unwrap_or(0) + cents);
                    totals.2 = Some(totals.2.map_or(cents, |m| m.min(cents)));
                    totals.3 = Some(totals.3.map_or(cents, |m| m.max(cents)));
                }
            }
            let columns = fast.rows.columns();
            let at = |name: &str| columns.iter().position(|c| c.name == name).unwrap();
            let (batch_part, speed_part) = (at("batch_part"), at("speed_part"));
            let mut answered = BTreeMap::new();
            for row in values(&fast) {
                assert_eq!(
                    (&row[batch_part], &row[speed_part]),
                    (&CellValue::Bool(true), &CellValue::Bool(false)),
                    "every row from the batch part alone: {row:?}"
                );
                let (CellValue::Text(country), CellValue::Int(store), CellValue::Time(bucket)) =
                    (&row[0], &row[1], &row[2])
                else {
                    panic!("a key and a bucket: {row:?}");
                };
                let int = |name: &str| match &row[at(name)] {
                    CellValue::Int(v) => Some(*v),
                    CellValue::IntegerSum(digits) => Some(digits.parse().unwrap()),
                    CellValue::Null => None,
                    other => panic!("{name}: {other:?}"),
                };
                answered.insert(
                    (country.clone(), *store, bucket.timestamp_micros()),
                    (
                        int("count").unwrap(),
                        int("sum_cents"),
                        int("min_cents"),
                        int("max_cents"),
                    ),
                );
            }
            // The selection's range holds every record.
            assert_eq!(answered, fold, "{case}");
        }
    }
}

/// A selection of whole keys with no order (the type allows it; the API and the alerts always
/// give one) is answered, with the same rows as the general statement: the statement for whole
/// keys writes `ORDER BY <terms>` and so needs terms.
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn whole_keys_without_an_order_are_answered(pool: PgPool) {
    store(&pool, &sales(), Some(2)).await;
    store_positions(&pool).await;
    let config = config();
    let view = &config.views[0];
    let mut unordered = selection(&[0, 1], &[], i64::from(u16::MAX));
    unordered.order.clear();
    let answer = ReadStatement::new(view, &unordered, TOPIC)
        .unwrap()
        .run(&pool)
        .await
        .expect("a selection without an order is answered");
    let general = ReadStatement::general(view, &unordered, TOPIC)
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let sorted = |answer: &MergedAnswer| {
        let mut rows: Vec<String> = values(answer).iter().map(|r| format!("{r:?}")).collect();
        rows.sort();
        rows
    };
    assert!(!answer.rows.is_empty(), "rows to compare");
    assert_eq!(sorted(&answer), sorted(&general));
    assert_eq!(answer.truncated, general.truncated);
}

/// The averages the reader computes (`CellKind::Average`) equal, bit for bit, those PostgreSQL
/// computes when an order term names them, for both statements: integer sums beyond i64 and
/// negative, a count of i64::MAX, a zero count and a missing sum among them.
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn averages_read_in_rust_equal_those_of_postgresql(pool: PgPool) {
    store(&pool, &sales(), Some(2)).await;
    store_positions(&pool).await;
    let config = config();
    let view = &config.views[0];
    let layout = ViewLayout::of(view);
    let run = active_run(&pool).await;
    let extremes: [(i64, Option<&str>, Option<i64>); 6] = [
        (11, Some("99999999999999999999999999999"), Some(7)),
        (12, Some("-123456789012345678901234567"), Some(3)),
        (13, Some("5"), Some(0)),
        (14, None, None),
        (15, Some("1"), Some(i64::MAX)),
        (16, Some("-9223372036854775808"), Some(9)),
    ];
    for (store_id, sum, count) in extremes {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (run_id, bucket_start, country, store, count, sum_cents, count_cents) \
             VALUES ($1, $2, 'XX', $3, 1, $4::numeric, $5)",
            layout.batch_table
        )))
        .bind(run)
        .bind(start())
        .bind(store_id)
        .bind(sum)
        .bind(count)
        .execute(&pool)
        .await
        .unwrap();
    }
    let all = i64::from(u16::MAX);
    for general in [false, true] {
        let statement = |selection: Selection| statement(view, &selection, TOPIC, general);
        let in_rust = statement(selection(&[0, 1], &[], all))
            .run(&pool)
            .await
            .unwrap();
        let in_sql = statement(selection(&[0, 1], &[("avg_cents", true)], all))
            .run(&pool)
            .await
            .unwrap();
        let (rust, sql) = (
            averages(&in_rust, "avg_cents", false),
            averages(&in_sql, "avg_cents", true),
        );
        assert!(
            rust.len() > extremes.len(),
            "general {general}: rows to compare"
        );
        assert_eq!(rust, sql, "general {general}");
        let nulls = rust.iter().filter(|(_, v)| v.is_none()).count();
        assert!(
            nulls >= 2,
            "general {general}: the zero count and the missing sum read as NULL"
        );
    }
}

/// The rows keep the order of the subquery that orders and limits them (the statements have
/// no final sort: `UNION ALL` keeps each branch's order): with parallel query forced on every
/// plan PostgreSQL may make parallel, both statements answer the same rows in the same order.
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn rows_keep_their_order_with_parallel_query_forced(pool: PgPool) {
    order_kept_with_parallel_query_forced(pool, 2).await;
}

/// The same with every epoch covered: the whole-keys statement's branch without speed rows.
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn rows_without_speed_rows_keep_their_order_with_parallel_query_forced(pool: PgPool) {
    order_kept_with_parallel_query_forced(pool, 4).await;
}

/// The fixture stored with a batch run covering the epochs below `covered`, then each case
/// read by both statements with and without parallel query forced.
async fn order_kept_with_parallel_query_forced(pool: PgPool, covered: i64) {
    store(&pool, &sales(), Some(covered)).await;
    store_positions(&pool).await;
    let config = config();
    let view = &config.views[0];
    let parallel = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|connection, _| {
            Box::pin(async move {
                // `force_parallel_mode` in PostgreSQL 15, `debug_parallel_query` after it.
                sqlx::query(
                    "SELECT set_config(name, 'on', false) FROM pg_settings \
                     WHERE name IN ('force_parallel_mode', 'debug_parallel_query')",
                )
                .execute(&mut *connection)
                .await?;
                for setting in [
                    "SET parallel_setup_cost = 0",
                    "SET parallel_tuple_cost = 0",
                    "SET min_parallel_table_scan_size = 0",
                    "SET min_parallel_index_scan_size = 0",
                ] {
                    sqlx::query(setting).execute(&mut *connection).await?;
                }
                Ok(())
            })
        })
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let all = i64::from(u16::MAX);
    for (case, selection) in [
        ("default", selection(&[0, 1], &[], all)),
        (
            "descending",
            selection(&[0, 1], &[("sum_cents", true)], all),
        ),
        ("limit", selection(&[1, 0], &[("count", false)], 5)),
    ] {
        for general in [false, true] {
            let plain = statement(view, &selection, TOPIC, general)
                .run(&pool)
                .await
                .unwrap();
            let forced = statement(view, &selection, TOPIC, general)
                .run(&parallel)
                .await
                .unwrap();
            assert!(plain.rows.len() > 1, "{case}: rows to order");
            assert_eq!(values(&forced), values(&plain), "{case}, general {general}");
            assert_eq!(
                forced.truncated, plain.truncated,
                "{case}, general {general}"
            );
        }
    }
}
