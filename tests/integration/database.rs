//! The real database: `braid migrate` against a fresh database, then read back.

use sqlx::PgPool;

use crate::support::{braid, run, stderr, url_of};

#[sqlx::test(migrations = false)]
async fn migrate_creates_metadata_and_view_tables_and_is_idempotent(pool: PgPool) {
    let url = url_of(&pool).await;
    for attempt in 0..2 {
        let output = run(braid().args(["migrate", "--database-url", &url]));
        assert!(
            output.status.success(),
            "attempt {attempt}: {}",
            stderr(&output)
        );
    }
    let config =
        schemas::BraidConfig::load(Some(&crate::support::repo_root().join("braid.toml"))).unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'braid_internal' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let tables: Vec<String> = tables.into_iter().map(|(t,)| t).collect();
    for metadata in [
        "batch_runs",
        "cuts",
        "dead_letters",
        "epoch",
        "job_runs",
        "speed_positions",
    ] {
        assert!(
            tables.contains(&metadata.to_string()),
            "{metadata} missing from {tables:?}"
        );
    }
    for view in &config.views {
        let layout = schemas::pg_layout::ViewLayout::of(view);
        for table in [&layout.speed_table, &layout.batch_table] {
            let name = table.trim_start_matches("braid_internal.");
            assert!(
                tables.iter().any(|t| t == name),
                "{table} missing from {tables:?}"
            );
        }
    }
    // Read back what a write stored, through the real database.
    sqlx::query("INSERT INTO braid_internal.speed_positions (topic, partition, next_offset) VALUES ($1, $2, $3)")
        .bind("t")
        .bind(3)
        .bind(42_i64)
        .execute(&pool)
        .await
        .unwrap();
    let positions = schemas::pg::load_positions(&pool, "t").await.unwrap();
    assert_eq!(positions.get(&3), Some(&42));
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let output = run(braid().args([
        "migrate",
        "--database-url",
        "postgres://braid:hunter2@127.0.0.1:1/braid",
    ]));
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("cannot connect to PostgreSQL at postgres://braid:***@127.0.0.1:1/braid"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}
