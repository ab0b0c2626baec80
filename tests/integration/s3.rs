//! The S3-compatible server of scripts/services.sh (versitygw): the self-test that it refuses a
//! second put of the same Delta log version (without it, the sink's concurrency tests on S3
//! would prove nothing), and Braid's own check of the store at start.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use crate::support::{S3Lake, unique_topic};

fn store(lake: &S3Lake) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(&lake.endpoint)
        .with_bucket_name(std::env::var("BRAID_S3_BUCKET").unwrap())
        .with_region("us-east-1")
        .with_access_key_id(&lake.access_key_id)
        .with_secret_access_key(&lake.secret_access_key)
        .with_allow_http(true)
        .build()
        .expect("an S3 client for the local server")
}

#[tokio::test]
async fn the_s3_server_refuses_a_second_put_of_the_same_delta_log_version() {
    let lake = S3Lake::new(&unique_topic("s3-conditional-put"));
    let prefix = lake.uri.rsplit_once('/').unwrap().1;
    let store = store(&lake);
    let commit = Path::from(format!("{prefix}/_delta_log/00000000000000000000.json"));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(
            &commit,
            PutPayload::from_static(b"{\"writer\":\"first\"}\n"),
            create(),
        )
        .await
        .expect("the first commit of version 0");
    let second = store
        .put_opts(
            &commit,
            PutPayload::from_static(b"{\"writer\":\"second\"}\n"),
            create(),
        )
        .await;
    assert!(
        matches!(
            second,
            Err(object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. })
        ),
        "a second commit of version 0 must be refused, got {second:?}"
    );
    let kept = store.get(&commit).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        &kept[..],
        b"{\"writer\":\"first\"}\n",
        "the first commit is kept"
    );

    // A plain put still overwrites (the server is not refusing every second write).
    let scratch = Path::from(format!("{prefix}/scratch"));
    store
        .put(&scratch, PutPayload::from_static(b"1"))
        .await
        .unwrap();
    store
        .put(&scratch, PutPayload::from_static(b"2"))
        .await
        .unwrap();
    assert_eq!(
        &store.get(&scratch).await.unwrap().bytes().await.unwrap()[..],
        b"2"
    );

    // Braid's start-up probe reaches the same verdict.
    assert_eq!(
        batch_layer::lake::store::probe_conditional_put(&store)
            .await
            .unwrap(),
        batch_layer::lake::store::ConditionalPut::Enforced
    );
}

/// A table on S3 opens (and is created) through the same path as the layers take, with the
/// endpoint from `[lake.storage_options]` and the keys from the options (as the environment
/// gives them to processes).
#[tokio::test]
async fn a_table_on_s3_is_created_and_reopened_at_its_version() {
    let lake = crate::support::TestLake::S3(S3Lake::new(&unique_topic("s3-open")));
    let config =
        schemas::BraidConfig::load(Some(&crate::support::repo_root().join("braid.toml"))).unwrap();
    let created = lake.open(&config.schema).await.expect("created on S3");
    assert_eq!(created.version(), Some(0));
    let reopened = lake.open(&config.schema).await.expect("reopened");
    assert_eq!(reopened.version(), Some(0));
    let S3Lake { uri, .. } = match &lake {
        crate::support::TestLake::S3(s3) => s3.clone(),
        crate::support::TestLake::Local(_) => unreachable!(),
    };
    let listed: Vec<_> =
        futures::TryStreamExt::try_collect::<Vec<_>>(store(&S3Lake::new("unused")).list(Some(
            &Path::from(format!("{}/_delta_log", uri.rsplit_once('/').unwrap().1)),
        )))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "one commit on the server: {listed:?}");
}

/// A sink started while the lake's store cannot be reached waits for it, saying so, and commits
/// every record once the store answers (it used to exit at start, which the soak found).
#[sqlx::test(migrations = false)]
async fn a_sink_started_while_the_store_is_down_waits_for_it(pool: sqlx::PgPool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let down = Arc::new(AtomicBool::new(true));
    let real = S3Lake::new("unused").endpoint;
    let proxy = crate::support::tcp_proxy(
        real.trim_start_matches("http://").to_string(),
        Arc::clone(&down),
    )
    .await;
    // No retries inside object_store: each failure reaches the sink at once.
    let env = vec![(
        "BRAID__LAKE__STORAGE_OPTIONS__max_retries".to_string(),
        "0".to_string(),
    )];
    let pipeline = crate::support::Pipeline::on_s3_through(
        "s3_down_at_start",
        &pool,
        &format!("http://{proxy}"),
        env,
    )
    .await;
    pipeline.produce(500, 3, 2);
    let mut sink = pipeline.start_sink("0", "sink");
    let waiting = {
        let pipeline = pipeline.clone();
        move || {
            let log = crate::support::log_of(&pipeline, "sink", "0");
            async move { log.matches("cannot open the lake").count() >= 2 }
        }
    };
    crate::support::wait_until(
        "the sink to wait for the store",
        std::time::Duration::from_secs(60),
        waiting,
    )
    .await;
    sink.assert_running("braid sink");
    down.store(false, Ordering::Relaxed);
    crate::support::sink_caught_up(&pipeline, &mut sink).await;
    sink.assert_running("braid sink");
}
