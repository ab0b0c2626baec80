//! Round trips through the real PostgreSQL: each test gets a fresh database, migrated.

use std::collections::BTreeMap;

use sqlx::PgPool;

use super::*;
use crate::record::Rejection;

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn migrations_create_the_metadata_and_epoch_one(pool: PgPool) {
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'braid_internal' ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    let names: Vec<_> = tables.iter().map(|(t,)| t.as_str()).collect();
    assert_eq!(
        names,
        [
            "alert_deliveries",
            "alert_evaluations",
            "alert_instances",
            "alert_silences",
            "alert_transitions",
            "batch_runs",
            "cuts",
            "dead_letter_counts",
            "dead_letters",
            "dimension_positions",
            "epoch",
            "job_runs",
            "speed_positions",
            "validation_rules",
            "view_definitions"
        ]
    );
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(current_epoch_for_share(&mut tx).await.unwrap(), 1);
}

/// `braid migrate` runs at the start of every long-running command, so it must be idempotent.
#[sqlx::test(migrations = false)]
async fn migrate_applies_once_and_then_does_nothing(pool: PgPool) {
    migrate(&pool).await.unwrap();
    migrate(&pool).await.expect("migrating twice is a no-op");
    let (epochs,): (i64,) = sqlx::query_as("SELECT count(*) FROM braid_internal.epoch")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(epochs, 1);
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn positions_round_trip_and_a_start_is_stored_once(pool: PgPool) {
    assert_eq!(store_start_if_absent(&pool, "t", 0, 5).await.unwrap(), 5);
    assert_eq!(
        store_start_if_absent(&pool, "t", 0, 9).await.unwrap(),
        5,
        "an existing start wins"
    );
    let mut tx = pool.begin().await.unwrap();
    store_positions(&mut tx, "t", &BTreeMap::from([(0, 12), (3, 40)]))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        load_positions(&pool, "t").await.unwrap(),
        BTreeMap::from([(0, 12), (3, 40)])
    );
    assert!(load_positions(&pool, "other").await.unwrap().is_empty());
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn a_cut_records_stored_offsets_and_advances_the_epoch(pool: PgPool) {
    let mut tx = pool.begin().await.unwrap();
    store_positions(&mut tx, "t", &BTreeMap::from([(0, 7), (1, 3)]))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let cut = take_cut(&pool, "t").await.unwrap();
    assert_eq!(
        cut,
        Cut {
            epoch: 1,
            next_epoch: 2,
            offsets: BTreeMap::from([(0, 7), (1, 3)])
        }
    );
    let second = take_cut(&pool, "t").await.unwrap();
    assert_eq!((second.epoch, second.next_epoch), (2, 3));
    let stored: Vec<(i64, i32, i64)> = sqlx::query_as(
        "SELECT epoch, partition, cut_offset FROM braid_internal.cuts ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored, [(1, 0, 7), (1, 1, 3), (2, 0, 7), (2, 1, 3)]);
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn a_cut_waits_for_a_flush_holding_the_epoch(pool: PgPool) {
    let mut flush = pool.begin().await.unwrap();
    assert_eq!(current_epoch_for_share(&mut flush).await.unwrap(), 1);
    let cut = tokio::spawn({
        let pool = pool.clone();
        async move { take_cut(&pool, "t").await.unwrap() }
    });
    // The cut must block on the flush's shared lock: wait until PostgreSQL reports it waiting.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cut never waited on the flush"
        );
        tokio::task::yield_now().await;
    }
    store_positions(&mut flush, "t", &BTreeMap::from([(0, 100)]))
        .await
        .unwrap();
    flush.commit().await.unwrap();
    let cut = cut.await.unwrap();
    assert_eq!(
        cut.offsets,
        BTreeMap::from([(0, 100)]),
        "the cut sees the whole flush"
    );
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn dead_letters_keep_reason_position_and_bounded_payload(pool: PgPool) {
    let letters = [
        DeadLetter::new(
            2,
            10,
            Rejection::NotJson {
                detail: "eof".into(),
            },
            b"{not json at all",
            4,
        ),
        DeadLetter::new(
            2,
            11,
            Rejection::MissingField { field: "ts".into() },
            b"{}",
            4,
        ),
    ];
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(
        insert_dead_letters(&mut tx, Layer::Speed, "t", &letters)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        insert_dead_letters(&mut tx, Layer::Speed, "t", &letters)
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    tx.commit().await.unwrap();
    type StoredDeadLetter = (String, i32, i64, String, String, Vec<u8>, i32);
    let rows: Vec<StoredDeadLetter> = sqlx::query_as(
        "SELECT layer, partition, \"offset\", reason_code, reason, payload, payload_len FROM braid_internal.dead_letters ORDER BY \"offset\"",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows[0],
        (
            "speed".into(),
            2,
            10,
            "not_json".into(),
            "not JSON: eof".into(),
            b"{not".to_vec(),
            16
        )
    );
    assert_eq!(rows[1].3, "missing_field");
    assert_eq!(rows[1].4, "missing required field `ts`");
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn advancing_positions_is_fenced_against_other_writers(pool: PgPool) {
    store_start_if_absent(&pool, "t", 0, 10).await.unwrap();
    store_start_if_absent(&pool, "t", 1, 20).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    advance_positions(
        &mut tx,
        "t",
        &[
            PositionMove {
                partition: 0,
                expected: 10,
                next: 15,
            },
            PositionMove {
                partition: 1,
                expected: 20,
                next: 21,
            },
        ],
        Some(1_700_000_000_000_000),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut stale = pool.begin().await.unwrap();
    match advance_positions(
        &mut stale,
        "t",
        &[
            PositionMove {
                partition: 0,
                expected: 10,
                next: 18,
            },
            PositionMove {
                partition: 1,
                expected: 21,
                next: 22,
            },
        ],
        None,
    )
    .await
    {
        Err(AdvanceError::Fenced(fenced)) => assert_eq!(fenced.partitions, [0]),
        other => panic!("expected a fence, got {other:?}"),
    }
    stale.rollback().await.unwrap();
    assert_eq!(
        load_positions(&pool, "t").await.unwrap(),
        BTreeMap::from([(0, 15), (1, 21)])
    );
    let (newest,): (i64,) = sqlx::query_as(
        "SELECT (extract(epoch FROM max(newest_event_time)) * 1e6)::bigint FROM braid_internal.speed_positions",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        newest, 1_700_000_000_000_000,
        "the flush's newest event time is kept"
    );
}

#[sqlx::test(migrations = false)]
async fn a_connection_prefers_lz4_and_reads_back_what_it_compressed(pool: PgPool) {
    let mut connection = pool.acquire().await.unwrap();
    let supported: bool = sqlx::query_scalar(
        "SELECT 'lz4' = ANY(enumvals) AND source = 'default' FROM pg_settings WHERE name = 'default_toast_compression'",
    )
    .fetch_one(&mut *connection)
    .await
    .unwrap();
    let before: String = sqlx::query_scalar("SHOW default_toast_compression")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    prefer_lz4_compression(&mut connection).await.unwrap();
    let after: String = sqlx::query_scalar("SHOW default_toast_compression")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    // A server without lz4, or whose setting someone chose, keeps it; the statement never fails.
    assert_eq!(after, if supported { "lz4".to_string() } else { before });
    // A value large enough to be compressed, stored and read back unchanged.
    let text: String = (0..4000).map(|i| format!("{{\"n\": {}}}", i % 7)).collect();
    let json = format!("[{}]", text.replace("}{", "},{"));
    sqlx::query("CREATE TABLE t (v jsonb)")
        .execute(&mut *connection)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES ($1::text::jsonb)")
        .bind(&json)
        .execute(&mut *connection)
        .await
        .unwrap();
    let (method, back): (Option<String>, String) =
        sqlx::query_as("SELECT pg_column_compression(v), v::text FROM t")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
    assert_eq!(method.as_deref(), Some(after.as_str()));
    let parsed: serde_json::Value = serde_json::from_str(&back).unwrap();
    assert_eq!(
        parsed,
        serde_json::from_str::<serde_json::Value>(&json).unwrap()
    );
}

#[sqlx::test(migrations = false)]
async fn an_operators_choice_of_compression_is_kept_and_a_refusal_never_fails_a_connection(
    pool: PgPool,
) {
    let mut connection = pool.acquire().await.unwrap();
    // Chosen for this session (as ALTER ROLE or ALTER DATABASE would): left as it is.
    sqlx::query("SET default_toast_compression = 'pglz'")
        .execute(&mut *connection)
        .await
        .unwrap();
    prefer_lz4_compression(&mut connection).await.unwrap();
    let kept: String = sqlx::query_scalar("SHOW default_toast_compression")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    assert_eq!(kept, "pglz");
    // A server that refuses the statement (here: the catalog read denied to a role): the
    // connection stays usable and the preference is skipped.
    sqlx::raw_sql(
        "CREATE ROLE braid_no_settings NOLOGIN; REVOKE ALL ON pg_catalog.pg_settings FROM PUBLIC; \
         SET ROLE braid_no_settings",
    )
    .execute(&mut *connection)
    .await
    .unwrap();
    let denied = sqlx::raw_sql(PREFER_LZ4_COMPRESSION)
        .execute(&mut *connection)
        .await
        .map(|_| ());
    let refused = prefer_lz4_compression(&mut connection).await;
    sqlx::raw_sql(
        "RESET ROLE; GRANT SELECT ON pg_catalog.pg_settings TO PUBLIC; DROP ROLE braid_no_settings",
    )
    .execute(&mut *connection)
    .await
    .unwrap();
    assert!(
        matches!(denied, Err(sqlx::Error::Database(_))),
        "the statement itself is refused: {denied:?}"
    );
    refused.unwrap();
    let answers: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    assert_eq!(answers, 1);
}
