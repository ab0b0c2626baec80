//! The API's commonest queries (whole keys at the view's bucket) take the merged read's
//! statement for whole keys; rollups and kept subsets take the general one. That both answer
//! alike is `merged_read`'s test (`tests::whole_keys`).

use merged_read::{ReadStatement, Shape};
use sqlx::PgPool;

use super::fixture::{TOPIC, start, state};
use crate::api::views;

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn whole_keys_at_the_bucket_take_the_whole_keys_statement(pool: PgPool) {
    let state = state(pool, start(), None);
    let view = state.view("sales").unwrap().clone();
    let range = "from=2026-03-01T09:00:00Z&to=2026-03-01T13:00:00Z";
    let shape = |query: &str| {
        let raw = format!("{range}{query}");
        let (selection, _) = views::series_selection(&state, &view, Some(&raw)).unwrap();
        ReadStatement::new(&view, &selection, TOPIC)
            .unwrap()
            .shape()
    };
    for query in [
        "",
        "&order=count:desc,sum_cents:asc",
        "&limit=7",
        "&filter.country=DE&filter.country=it%27s&filter.store=2",
        "&group_by=store,country&parts=true",
        "&order=avg_cents:desc&limit=30&parts=true",
    ] {
        assert_eq!(shape(query), Shape::WholeKeys, "{query}");
    }
    for query in ["&granularity=1h", "&group_by=country"] {
        assert_eq!(shape(query), Shape::General, "{query}");
    }
}
