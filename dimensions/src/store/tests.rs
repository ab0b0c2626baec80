//! A user's dimension table on the real PostgreSQL: only a full, valid, immediate unique index
//! (or primary key) on the key alone keeps the join from multiplying a view's rows.

use sqlx::PgPool;

use super::{DimensionTableError, IndexFault, prepare};
use schemas::config::BraidConfig;
use schemas::dimension::Dimension;

const DEMO: &str = include_str!("../../../braid.toml");

fn ads() -> Vec<Dimension> {
    let extra = "[[dimensions]]\nname = \"ads\"\nkey = \"page\"\n\
                 attributes = [{ name = \"section\", type = \"string\" }]\n\
                 source = { postgres_table = \"public.ads\" }\n";
    BraidConfig::load_from(
        Some(("test.toml", &format!("{DEMO}\n{extra}"))),
        std::iter::empty(),
    )
    .unwrap()
    .dimensions
}

/// The faults `prepare` names, or `None` when it accepts the table.
async fn refusal(pool: &PgPool) -> Option<(Vec<(String, IndexFault)>, String)> {
    match prepare(pool, &ads()).await {
        Ok(()) => None,
        Err(e @ DimensionTableError::KeyNotUnique { .. }) => {
            let message = e.to_string();
            let DimensionTableError::KeyNotUnique { refused, .. } = e else {
                unreachable!()
            };
            let faults = refused.into_iter().map(|r| (r.name, r.fault)).collect();
            Some((faults, message))
        }
        Err(other) => panic!("{other}"),
    }
}

/// Whether the table holds a key twice (what the refused index let through).
async fn repeats_a_key(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT count(*) > count(DISTINCT page) FROM public.ads")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn run(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn only_a_full_valid_immediate_unique_index_keeps_the_key_unique(pool: PgPool) {
    run(
        &pool,
        "CREATE TABLE public.ads (page text, section text, active boolean)",
    )
    .await;
    let (faults, message) = refusal(&pool).await.expect("no index");
    assert!(faults.is_empty());
    assert!(
        message.contains("table `public.ads` has no primary key or unique index on `page`"),
        "{message}"
    );

    // Partial: the rows outside its WHERE repeat the key.
    run(
        &pool,
        "CREATE UNIQUE INDEX ads_active ON public.ads (page) WHERE active",
    )
    .await;
    run(
        &pool,
        "INSERT INTO public.ads VALUES ('/a', 's1', true), ('/a', 's2', false)",
    )
    .await;
    assert!(repeats_a_key(&pool).await);
    let (faults, message) = refusal(&pool).await.expect("a partial index is refused");
    assert_eq!(faults, [("ads_active".to_string(), IndexFault::Partial)]);
    assert!(
        message.contains("`public.ads`") && message.contains("`ads_active` is partial"),
        "{message}"
    );

    // Invalid: CREATE INDEX CONCURRENTLY failed on the duplicates and left it behind.
    let failed = sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY ads_invalid ON public.ads (page)")
        .execute(&pool)
        .await;
    assert!(failed.is_err(), "the duplicates make the build fail");
    assert!(repeats_a_key(&pool).await);
    let (faults, message) = refusal(&pool).await.expect("an invalid index is refused");
    assert!(
        faults.contains(&("ads_invalid".to_string(), IndexFault::Invalid)),
        "{faults:?}"
    );
    assert!(message.contains("`ads_invalid` is not valid"), "{message}");
    run(
        &pool,
        "DROP INDEX ads_invalid; DROP INDEX ads_active; DELETE FROM public.ads WHERE NOT active",
    )
    .await;

    // Deferrable: inside a transaction the key repeats until it commits.
    run(&pool, "ALTER TABLE public.ads ADD CONSTRAINT ads_deferred UNIQUE (page) DEFERRABLE INITIALLY DEFERRED").await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO public.ads VALUES ('/a', 's3', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let repeated: bool =
        sqlx::query_scalar("SELECT count(*) > count(DISTINCT page) FROM public.ads")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert!(
        repeated,
        "a deferred constraint lets a transaction read a key twice"
    );
    tx.rollback().await.unwrap();
    let (faults, message) = refusal(&pool)
        .await
        .expect("a deferrable constraint is refused");
    assert_eq!(
        faults,
        [("ads_deferred".to_string(), IndexFault::Deferrable)]
    );
    assert!(
        message.contains("`ads_deferred` is deferrable"),
        "{message}"
    );

    // A full, valid, immediate one is accepted, next to the refused one.
    run(&pool, "CREATE UNIQUE INDEX ads_page ON public.ads (page)").await;
    assert_eq!(refusal(&pool).await, None);
}
