//! The speed layer and the sink must validate alike. A layer started with other validation
//! rules than the recorded ones refuses to run, naming the config keys that differ; after
//! `braid migrate` records changed rules, a layer still running the old ones stops at its next
//! commit; and every Delta commit names the rules its records passed.

use std::time::Duration;

use sqlx::PgPool;

use crate::support::{Pipeline, repo_root, run, sink_caught_up, stderr, wait_until};

const CHANGED: (&str, &str) = ("BRAID__SCHEMA__MAX_RECORD_BYTES", "2048");

#[sqlx::test(migrations = false)]
async fn layers_refuse_validation_rules_that_differ_from_the_recorded_ones(pool: PgPool) {
    let pipeline = Pipeline::new("rules-drift", &pool).await;
    pipeline.produce(200, 95, 2);
    let mut sink = pipeline.start_sink("a", "a");
    sink_caught_up(&pipeline, &mut sink).await;

    // The Delta commits carry the fingerprint of the rules the sink ran.
    let config = schemas::BraidConfig::load(Some(&repo_root().join("braid.toml"))).unwrap();
    let rules = schemas::validation_rules::ValidationRules::of(&config.schema);
    let mut table = pipeline
        .lake
        .open(&config.schema)
        .await
        .expect("the table opens");
    table.update_state().await.unwrap();
    let last = futures::StreamExt::next(&mut table.history(Some(1)))
        .await
        .expect("a commit")
        .unwrap();
    assert_eq!(
        last.info
            .get("braidValidationRules")
            .and_then(|v| v.as_str()),
        Some(rules.fingerprint().as_str()),
        "{last:?}"
    );

    // A speed layer with another record size limit would accept other records: it refuses.
    let mut speed = pipeline
        .braid()
        .arg("speed")
        .env(CHANGED.0, CHANGED.1)
        .stdout(std::process::Stdio::null())
        .stderr(crate::support::log_file(&format!(
            "{}-speed-a",
            pipeline.topic
        )))
        .spawn()
        .map(crate::support::Running)
        .unwrap();
    wait_until(
        "the speed layer with other rules to stop",
        Duration::from_secs(60),
        || {
            let ended = speed.0.try_wait().unwrap();
            async move { ended.is_some() }
        },
    )
    .await;
    assert!(!speed.wait_success(), "the speed layer ran other rules");
    let text = crate::support::log_of(&pipeline, "speed", "a");
    assert!(
        text.contains("schema.max_record_bytes: recorded 65536, this process 2048"),
        "{text}"
    );

    // The operator records the new rules; the sink still running the old ones stops.
    let migrated = run(pipeline.braid().arg("migrate").env(CHANGED.0, CHANGED.1));
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    pipeline.produce(50, 96, 2);
    wait_until(
        "the sink with the old rules to stop",
        Duration::from_secs(60),
        || {
            let ended = sink.0.try_wait().unwrap();
            async move { ended.is_some() }
        },
    )
    .await;
    assert!(!sink.wait_success(), "the sink stops with an error");
    let log = crate::support::log_of(&pipeline, "sink", "a");
    assert!(log.contains("schema.max_record_bytes"), "{log}");

    // Layers with the recorded rules run.
    let mut sink = pipeline
        .braid()
        .arg("sink")
        .env(CHANGED.0, CHANGED.1)
        .stdout(std::process::Stdio::null())
        .stderr(crate::support::log_file(&format!(
            "{}-sink-b",
            pipeline.topic
        )))
        .spawn()
        .map(crate::support::Running)
        .unwrap();
    sink_caught_up(&pipeline, &mut sink).await;
}
