//! Installing the serving schema against a real database: views replaced only when their
//! definition changed, under a lock timeout; the BI role limited and never taken over.

use std::time::Duration;

use schemas::BraidConfig;
use sqlx::PgPool;

use super::{ServingSqlError, install};

fn config(bucket: &str, bi_role: &str) -> BraidConfig {
    let text = format!(
        r#"
[schema]
event_time = "ts"
fields = [{{ name = "ts", type = "timestamp" }}, {{ name = "page", type = "string" }}]
[[views]]
name = "by_page"
group_by = ["page"]
bucket = "{bucket}"
metrics = ["count"]
"#
    );
    let mut config = BraidConfig::load_from(Some(("serving.toml", text.as_str())), []).unwrap();
    config.serving.bi_role = bi_role.to_string();
    config
}

async fn prepare(pool: &PgPool, config: &BraidConfig) {
    schemas::pg::ensure_view_tables(pool, &config.views)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_view_is_replaced_only_when_its_definition_changes_and_never_waits_for_ever(
    pool: PgPool,
) {
    let hourly = config("1h", "unused");
    prepare(&pool, &hourly).await;
    install(&pool, &hourly.views, &hourly.serving, None)
        .await
        .unwrap();

    // A BI session reads the view and stays idle in its transaction.
    let mut bi = pool.begin().await.unwrap();
    sqlx::query("SELECT * FROM serving.by_page")
        .fetch_all(&mut *bi)
        .await
        .unwrap();

    let again = tokio::time::timeout(
        Duration::from_secs(20),
        install(&pool, &hourly.views, &hourly.serving, None),
    )
    .await
    .expect("an unchanged view is not replaced, so nothing waits on the BI session");
    again.unwrap();

    let daily = config("1d", "unused");
    prepare(&pool, &daily).await;
    let blocked = tokio::time::timeout(
        Duration::from_secs(20),
        install(&pool, &daily.views, &daily.serving, None),
    )
    .await
    .expect("a changed view gives up after the lock timeout");
    assert!(
        matches!(&blocked, Err(ServingSqlError::ViewInUse { view }) if view == "serving.by_page"),
        "{blocked:?}"
    );
    bi.rollback().await.unwrap();
    install(&pool, &daily.views, &daily.serving, None)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn the_bi_role_is_limited_and_braid_never_takes_over_a_role_it_did_not_create(pool: PgPool) {
    let suffix = format!("{}_{}", std::process::id(), rand_suffix());
    let foreign = format!("someone_{suffix}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {foreign} LOGIN")))
        .execute(&pool)
        .await
        .unwrap();
    let theirs = config("1h", &foreign);
    prepare(&pool, &theirs).await;
    let refused = install(&pool, &theirs.views, &theirs.serving, Some("pw")).await;
    assert!(
        matches!(&refused, Err(ServingSqlError::RoleNotOurs { role }) if *role == foreign),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().to_string().contains("serving.bi_role"));

    let ours = format!("bi_{suffix}");
    let mut config = config("1h", &ours);
    config.serving.bi_statement_timeout_ms = schemas::duration::Millis(12_000);
    config.serving.bi_idle_in_transaction_timeout_ms = schemas::duration::Millis(34_000);
    config.serving.bi_connection_limit = 3;
    for password in ["first secret", "second secret"] {
        install(&pool, &config.views, &config.serving, Some(password))
            .await
            .unwrap();
    }
    let (limit, settings, stored): (i32, Vec<String>, String) = sqlx::query_as(
        "SELECT r.rolconnlimit, r.rolconfig, a.rolpassword FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid
         WHERE r.rolname = $1",
    )
    .bind(&ours)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(limit, 3);
    assert!(
        settings.contains(&"statement_timeout=12000ms".to_string()),
        "{settings:?}"
    );
    assert!(
        settings.contains(&"idle_in_transaction_session_timeout=34000ms".to_string()),
        "{settings:?}"
    );
    assert!(
        stored.starts_with("SCRAM-SHA-256$4096:"),
        "the server got a verifier only"
    );

    for role in [&foreign, &ours] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP OWNED BY {role}; DROP ROLE {role}"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
}

fn rand_suffix() -> u32 {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).unwrap();
    u32::from_le_bytes(bytes) % 1_000_000
}
