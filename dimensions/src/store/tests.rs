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

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_versioned_users_table_needs_valid_from_and_one_row_per_key_and_version(pool: PgPool) {
    let extra = "[[dimensions]]\nname = \"ads\"\nkey = \"page\"\nversioned = true\n\
                 attributes = [{ name = \"section\", type = \"string\" }]\n\
                 source = { postgres_table = \"public.ads\" }\n";
    let dimensions = BraidConfig::load_from(
        Some(("test.toml", &format!("{DEMO}\n{extra}"))),
        std::iter::empty(),
    )
    .unwrap()
    .dimensions;
    run(
        &pool,
        "CREATE TABLE public.ads (page text PRIMARY KEY, section text)",
    )
    .await;
    let missing = prepare(&pool, &dimensions).await.unwrap_err().to_string();
    assert!(
        missing.contains("dimensions[0].versioned: table `public.ads` has no column `valid_from`"),
        "{missing}"
    );
    // A key unique alone holds one version per key: not a versioned table.
    run(
        &pool,
        "ALTER TABLE public.ads ADD COLUMN valid_from timestamptz NOT NULL",
    )
    .await;
    let one_version = prepare(&pool, &dimensions).await.unwrap_err().to_string();
    assert!(
        one_version.contains("unique index on (`page`, `valid_from`) alone"),
        "{one_version}"
    );
    // In the other order, the join's lookup of the latest version of a key cannot use it.
    run(
        &pool,
        "ALTER TABLE public.ads DROP CONSTRAINT ads_pkey, ADD PRIMARY KEY (valid_from, page)",
    )
    .await;
    let wrong_order = prepare(&pool, &dimensions).await.unwrap_err().to_string();
    assert!(
        wrong_order.contains("unique index on (`page`, `valid_from`) alone"),
        "{wrong_order}"
    );
    run(
        &pool,
        "ALTER TABLE public.ads DROP CONSTRAINT ads_pkey, ADD PRIMARY KEY (page, valid_from)",
    )
    .await;
    prepare(&pool, &dimensions).await.unwrap();
    // Its start must be timestamptz NOT NULL.
    for (ddl, found) in [
        (
            "ALTER TABLE public.ads ALTER COLUMN valid_from TYPE timestamp",
            "timestamp without time zone NOT NULL",
        ),
        (
            "ALTER TABLE public.ads ALTER COLUMN valid_from TYPE text",
            "text NOT NULL",
        ),
    ] {
        run(&pool, ddl).await;
        let refused = prepare(&pool, &dimensions).await.unwrap_err().to_string();
        assert!(
            refused.contains(&format!(
                "column `valid_from` of table `public.ads` is {found}"
            )),
            "{refused}"
        );
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_kept_versioned_table_holds_each_version_and_a_tombstone_drops_them_all(pool: PgPool) {
    use crate::rows::{DimensionRows, RawValue};
    let extra = "[[dimensions]]\nname = \"ads\"\nkey = \"page\"\nversioned = true\n\
                 attributes = [{ name = \"section\", type = \"string\" }]\n\
                 source = { kafka_topic = \"ads\" }\n";
    let dimension = BraidConfig::load_from(
        Some(("test.toml", &format!("{DEMO}\n{extra}"))),
        std::iter::empty(),
    )
    .unwrap()
    .dimensions
    .remove(0);
    prepare(&pool, std::slice::from_ref(&dimension))
        .await
        .unwrap();
    let mut rows = DimensionRows::new(&dimension);
    for (page, section, from) in [
        ("/a", "s1", RawValue::Text("2026-01-01T00:00:00Z")),
        ("/a", "s2", RawValue::Int(1_767_229_200_000)), // 01:00 as epoch milliseconds
        ("/a", "s3", RawValue::Text("2026-01-01T01:00:00+00:00")), // the same version, last wins
        ("/b", "s1", RawValue::Int(1_767_225_600_000)),
    ] {
        rows.push(
            1,
            &dimension,
            RawValue::Text(page),
            &[RawValue::Text(section)],
            from,
        )
        .unwrap();
    }
    for (from, problem) in [
        (RawValue::Null, "needs valid_from"),
        (RawValue::Text("soon"), "is not a RFC 3339 time"),
        // Digits as text could be milliseconds, seconds or a date: refused.
        (RawValue::Text("20260303"), "is not a RFC 3339 time"),
        (RawValue::Text("1767225600000"), "is not a RFC 3339 time"),
        (RawValue::Int(i64::MAX), "is not a RFC 3339 time"),
        (
            RawValue::Int(300_000_000_000_000),
            "outside the years 1 to 9999",
        ),
        (RawValue::Bool(true), "is not a RFC 3339 time"),
    ] {
        let error = rows
            .push(
                2,
                &dimension,
                RawValue::Text("/c"),
                &[RawValue::Null],
                from.clone(),
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains(problem), "{from:?}: {error}");
        assert!(error.contains("valid_from"), "{error}");
    }
    let mut tx = pool.begin().await.unwrap();
    let written = super::upsert(
        &mut tx,
        &dimension,
        &rows.keys,
        &rows.attributes,
        &rows.valid_from,
    )
    .await;
    // Two rows of one key and version in one statement: the last is kept.
    assert!(written.is_ok(), "{written:?}");
    tx.commit().await.unwrap();
    let stored: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT page, section, (extract(epoch FROM valid_from) * 1000)::bigint \
         FROM braid_dimensions.ads ORDER BY 1, 3",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            ("/a".into(), "s1".into(), 1_767_225_600_000),
            ("/a".into(), "s3".into(), 1_767_229_200_000),
            ("/b".into(), "s1".into(), 1_767_225_600_000),
        ]
    );
    let mut tx = pool.begin().await.unwrap();
    let keys = crate::store::ColumnValues::Text(vec![Some("/a".into())]);
    assert_eq!(super::delete(&mut tx, &dimension, &keys).await.unwrap(), 2);
    tx.commit().await.unwrap();
}
