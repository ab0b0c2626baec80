//! `braid migrate` records other validation rules only between sink commits: a commit checks
//! the recorded rules in a transaction that holds their row until the Delta commit has ended,
//! so a commit never lands under rules that were replaced while it was on its way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schemas::BraidConfig;
use schemas::validation_rules::ValidationRules;
use sqlx::PgPool;

use super::SinkError;
use super::columns::BatchBuilder;
use super::commit::{Committer, Pending};
use crate::lake::Lake;

const CONFIG: &str = r#"
[kafka]
topic = "rules-window"
[schema]
event_time = "ts"
fields = [{ name = "ts", type = "timestamp" }, { name = "n", type = "i64" }]
"#;

async fn waiting_on_locks(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_commit_waits_for_rules_being_recorded_and_then_stops(pool: PgPool) {
    let config = BraidConfig::load_from(Some(("sink.toml", CONFIG)), []).unwrap();
    let topic = "rules-window";
    let rules = schemas::pg::agreed_rules(&pool, topic, &config.schema)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "braid-rules-window-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut table = Lake::in_folder(&dir, &config).open().await.unwrap();
    let version = table.version();

    // `braid migrate` is recording a changed schema: it holds the row and has not committed.
    let mut changed = config.schema.clone();
    changed.max_record_bytes += 1;
    let changed = ValidationRules::of(&changed);
    let mut migrate = pool.begin().await.unwrap();
    sqlx::query("SELECT rules FROM braid_internal.validation_rules WHERE topic = $1 FOR UPDATE")
        .bind(topic)
        .execute(&mut *migrate)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE braid_internal.validation_rules SET fingerprint = $2, rules = $3::jsonb WHERE topic = $1",
    )
    .bind(topic)
    .bind(changed.fingerprint())
    .bind(changed.to_json())
    .execute(&mut *migrate)
    .await
    .unwrap();

    let committer = Committer {
        pool: pool.clone(),
        topic: topic.into(),
        writer_properties: super::writer_properties(schemas::config::Compression::Zstd),
        rules,
    };
    let pending = Pending {
        batch: BatchBuilder::new(&config.schema).finish().unwrap(),
        next_offsets: BTreeMap::from([(0, 5)]),
        dead_letters: Vec::new(),
        input_bytes: 0,
    };
    let committing = tokio::spawn(async move {
        let result = committer
            .commit(
                &mut table,
                &pending,
                &ingest::Expected::assigned(BTreeMap::from([(0, None)])),
            )
            .await;
        (table, result)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !committing.is_finished() && waiting_on_locks(&pool).await == 0 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the commit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !committing.is_finished(),
        "the commit went ahead while other rules were being recorded"
    );
    migrate.commit().await.unwrap();
    let (table, result) = committing.await.unwrap();
    assert!(
        matches!(
            result,
            Err(SinkError::Rules(schemas::pg::RulesError::Differ(_)))
        ),
        "{result:?}"
    );
    assert_eq!(table.version(), version, "nothing was committed");
    std::fs::remove_dir_all(&dir).ok();
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_commit_with_no_rules_recorded_records_its_own(pool: PgPool) {
    let config = BraidConfig::load_from(Some(("sink.toml", CONFIG)), []).unwrap();
    let topic = "rules-window";
    let dir = std::env::temp_dir().join(format!(
        "braid-rules-record-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut table = Lake::in_folder(&dir, &config).open().await.unwrap();
    let rules = ValidationRules::of(&config.schema);
    let committer = Committer {
        pool: pool.clone(),
        topic: topic.into(),
        writer_properties: super::writer_properties(schemas::config::Compression::Zstd),
        rules: rules.clone(),
    };
    let pending = Pending {
        batch: BatchBuilder::new(&config.schema).finish().unwrap(),
        next_offsets: BTreeMap::from([(0, 1)]),
        dead_letters: Vec::new(),
        input_bytes: 0,
    };
    committer
        .commit(
            &mut table,
            &pending,
            &ingest::Expected::assigned(BTreeMap::from([(0, None)])),
        )
        .await
        .unwrap();
    let recorded: Option<String> = sqlx::query_scalar(
        "SELECT fingerprint FROM braid_internal.validation_rules WHERE topic = $1",
    )
    .bind(topic)
    .fetch_optional(&pool)
    .await
    .unwrap();
    assert_eq!(
        recorded,
        Some(rules.fingerprint()),
        "the commit's rules are recorded"
    );
    std::fs::remove_dir_all(&dir).ok();
}
