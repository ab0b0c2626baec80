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

    // A password given as a query parameter, and a Kafka SASL password from the environment,
    // reach no log line either.
    let output = run(braid()
        .args([
            "speed",
            "--database-url",
            "postgres://braid@127.0.0.1:1/braid?password=hunter3&sslmode=disable",
        ])
        .env("BRAID_KAFKA_OPTION_SASL_PASSWORD", "hunter4")
        .env("RUST_LOG", "debug"));
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("password=***"), "{text}");
    assert!(
        !text.contains("hunter3") && !text.contains("hunter4"),
        "{text}"
    );
}

#[sqlx::test(migrations = false)]
async fn the_bi_role_reads_the_serving_views_and_nothing_else(pool: PgPool) {
    let url = url_of(&pool).await;
    let (database,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let role = format!(
        "bi_{}",
        &database[database.len().saturating_sub(12)..]
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let output = run(braid()
        .args(["migrate", "--database-url", &url])
        .env("BRAID__SERVING__BI_ROLE", &role)
        .env("BRAID_BI_PASSWORD", "it's \"quoted\""));
    assert!(output.status.success(), "{}", stderr(&output));
    let (scheme_host, rest) = url.split_once('@').unwrap();
    let scheme = &scheme_host[..scheme_host.find("://").unwrap() + 3];
    let bi_url = format!("{scheme}{role}:{}@{rest}", "it%27s%20%22quoted%22");
    let bi = sqlx::PgPool::connect(&bi_url)
        .await
        .expect("the BI role logs in with its password");

    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM serving.page_views")
        .fetch_one(&bi)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    for (what, statement) in [
        (
            "read metadata",
            "SELECT * FROM braid_internal.speed_positions",
        ),
        (
            "read speed rows",
            "SELECT * FROM braid_internal.dead_letters",
        ),
        ("write a serving view", "DELETE FROM serving.page_views"),
        ("create a table", "CREATE TABLE public.mine (x int)"),
        ("create in serving", "CREATE VIEW serving.mine AS SELECT 1"),
    ] {
        let error = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&bi)
            .await
            .expect_err(what);
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert!(
            matches!(code.as_deref(), Some("42501") | Some("55000")),
            "{what}: {error}"
        );
    }
    bi.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role}"
    )))
    .execute(&pool)
    .await
    .unwrap();
}
