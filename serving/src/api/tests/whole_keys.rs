//! The whole-keys statement answers exactly what the general statement answers, row for row:
//! with NULL keys on both sides of the merge, truncation, orders, filters and parts.

use chrono::TimeZone;
use schemas::pg_layout::ViewLayout;
use sqlx::PgPool;

use super::fixture::{TOPIC, config, sales, start, state, store, store_positions};
use crate::api::{query, views, whole_keys};

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn whole_keys_answer_as_the_general_statement(pool: PgPool) {
    store(&pool, &sales(), Some(2)).await;
    store_positions(&pool).await;
    // A NULL country in the active run and in the speed rows, in one bucket: one merged row.
    let layout = ViewLayout::of(&config().views[0]);
    let bucket = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 10, 30, 0).unwrap();
    let run: i64 = sqlx::query_scalar(
        "SELECT run_id FROM braid_internal.batch_runs WHERE status = 'active' AND view_name = 'sales'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
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
    let state = state(pool.clone(), start(), None);
    let view = state.view("sales").unwrap().clone();
    let range = "from=2026-03-01T09:00:00Z&to=2026-03-01T13:00:00Z";
    for query in [
        String::new(),
        "&order=count:desc,sum_cents:asc".into(),
        "&limit=7".into(),
        "&filter.country=DE&filter.country=it%27s&filter.store=2".into(),
        "&group_by=store,country&parts=true".into(),
        "&order=avg_cents:desc&limit=30&parts=true".into(),
    ] {
        let raw = format!("{range}{query}");
        let (selection, _) = views::series_selection(&state, &view, Some(&raw)).unwrap();
        assert!(
            whole_keys::statement(&view, &selection, TOPIC).is_some(),
            "{raw} takes the whole-keys statement"
        );
        let fast = query::run(&pool, &view, &selection, TOPIC).await.unwrap();
        let general = query::run_general(&pool, &view, &selection, TOPIC)
            .await
            .unwrap();
        assert_eq!(fast.rows, general.rows, "{raw}");
        assert_eq!(fast.truncated, general.truncated, "{raw}");
        assert_eq!(fast.batch, general.batch, "{raw}");
        assert_eq!(fast.speed, general.speed, "{raw}");
        if query.is_empty() {
            // Its batch row and two speed rows merged into one.
            assert!(
                fast.rows.contains(
                    "{\"country\":null,\"store\":1,\"bucket_start\":\"2026-03-01T10:30:00Z\",\"count\":6,"
                ),
                "the NULL key's rows are merged into one"
            );
        }
    }
    // A rollup or a kept subset of the keys takes the general statement.
    for raw in [
        format!("{range}&granularity=1h"),
        format!("{range}&group_by=country"),
    ] {
        let (selection, _) = views::series_selection(&state, &view, Some(&raw)).unwrap();
        assert!(
            whole_keys::statement(&view, &selection, TOPIC).is_none(),
            "{raw}"
        );
    }
}
