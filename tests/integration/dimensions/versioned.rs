//! Versioned dimensions (issue 40): a page's region changes over time; each bucket joins the
//! version valid at its start. Versions before, inside (mid-bucket: from the next bucket on)
//! and after the data's range, some pages without any and some with one only from the middle
//! of the range, followed from a compacted topic with versions arriving late, out of order.
//! The API's answers grouped and filtered by the region, and serving.page_views, equal a fold
//! over the records with the version valid at each minute's start, before and after a batch
//! run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{
    AttributeOf, assert_rollups_by, counts_by_attribute, migrate, pages_of, rolled_up_by, send,
    served_counts_by, start_follower, wait_followed, write_config,
};
use crate::oracle;
use crate::serving::serve_ready;
use crate::support::{Pipeline, kafka_brokers, read_topic, run, stderr};

/// page → versions (valid from, in µs; region), in any order.
type Versions = BTreeMap<String, Vec<(i64, String)>>;

/// The region of `page` for the bucket starting at `bucket`: the latest version valid at or
/// before it.
fn region_at(versions: &Versions, page: Option<&String>, bucket: i64) -> Option<String> {
    versions
        .get(page?)?
        .iter()
        .filter(|(from, _)| *from <= bucket)
        .max_by_key(|(from, _)| *from)
        .map(|(_, region)| region.clone())
}

/// The minutes (starts in µs) with a valid view of each page.
fn page_minutes(topic: &str) -> BTreeMap<String, BTreeSet<i64>> {
    let mut minutes: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for m in read_topic(topic) {
        if oracle::refusal(&m.payload).is_some() {
            continue;
        }
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        if v["event_type"] == "page_view" {
            minutes
                .entry(v["page"].as_str().unwrap().to_string())
                .or_default()
                .insert(oracle::bucket(oracle::event_time(&v["ts"]).unwrap(), 60));
        }
    }
    minutes
}

/// Sends `versions` of `pages`, each keyed by page and start (so that compaction keeps every
/// version); every other one with its start as epoch milliseconds.
fn send_versions(producer: &BaseProducer, topic: &str, versions: &[(String, i64, String)]) {
    for (i, (page, from, region)) in versions.iter().enumerate() {
        let valid_from = if i % 2 == 0 {
            json!(from / 1_000)
        } else {
            json!(
                chrono::DateTime::from_timestamp_micros(*from)
                    .unwrap()
                    .to_rfc3339()
            )
        };
        let payload = json!({ "page": page, "region": region, "valid_from": valid_from });
        send(
            producer,
            topic,
            &format!("{page}@{from}"),
            Some(&payload.to_string()),
        );
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

#[sqlx::test(migrations = false)]
async fn each_bucket_joins_the_version_valid_at_its_start_before_and_after_a_batch_run(
    pool: PgPool,
) {
    let mut pipeline = Pipeline::new("dimensions-versioned", &pool).await;
    let dimension_topic = format!("{}.pages", pipeline.topic);
    crate::kafka_admin::create_topic_with(&dimension_topic, 2, &[("cleanup.policy", "compact")])
        .await;
    pipeline.config = Some(write_config(
        &pipeline,
        &format!(
            "[[dimensions]]\nname = \"pages\"\nkey = \"page\"\nversioned = true\n\
             attributes = [{{ name = \"region\", type = \"string\" }}]\n\
             source = {{ kafka_topic = \"{dimension_topic}\", format = \"json\" }}\n"
        ),
    ));
    let migrated = migrate(&pipeline);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    pipeline.produce(3_000, 76, 4);
    let pages = pages_of(&pipeline.topic);
    let minutes = page_minutes(&pipeline.topic);
    let all = minutes.values().flatten();
    let (first, last) = (*all.clone().min().unwrap(), *all.max().unwrap());
    assert!(
        last - first >= 600_000_000,
        "the data spans minutes: {first} to {last}"
    );
    // Inside the range, 30 s into a minute: it applies from the next minute on.
    let middle = oracle::bucket((first + last) / 2, 60) + 30_000_000;
    let region = |i: usize, n: usize| format!("s{}", (i + n) % 4);
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for (i, page) in pages.iter().enumerate() {
        match i % 10 {
            3 => {} // never in the dimension
            7 => on_time.push((page.clone(), middle, region(i, 1))),
            _ => {
                on_time.push((page.clone(), middle, region(i, 1)));
                // Before the range, arriving after the later version.
                late.push((page.clone(), first - 3_600_000_000, region(i, 0)));
                // Exactly at the start of a minute with a view of the page: that minute is
                // already the new version's.
                if let Some(&minute) = minutes
                    .get(page)
                    .and_then(|m| m.range(middle + 60_000_000..).next())
                    && i % 2 == 1
                {
                    on_time.push((page.clone(), minute, region(i, 3)));
                }
                if i % 3 == 0 {
                    // After the range: applies to no record.
                    on_time.push((page.clone(), last + 3_600_000_000, region(i, 2)));
                }
            }
        }
    }
    let mut versions = Versions::new();
    let mut learn = |sent: &[(String, i64, String)]| {
        for (page, from, region) in sent {
            versions
                .entry(page.clone())
                .or_default()
                .push((*from, region.clone()));
        }
        versions.clone()
    };
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    send_versions(&producer, &dimension_topic, &on_time);
    let known = learn(&on_time);
    let mut follower = start_follower(&pipeline, "versioned");
    wait_followed(&pool, &dimension_topic, &mut follower).await;

    let (mut speed, _sink) =
        crate::serving::caught_up_with_a_batch_run(&pool, &pipeline, "versioned").await;
    pipeline.produce(1_000, 77, 4);
    crate::support::speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;
    let (mut api, address) = serve_ready(&pipeline, "versioned", &[]).await;
    let attribute_of: &AttributeOf<'_> = &|page, bucket| region_at(&known, page, bucket);
    assert_rollups_by(
        &address,
        &pipeline.topic,
        "region",
        attribute_of,
        "versions from the middle of the range",
    );

    // Earlier versions arrive late: the buckets before the middle move to them.
    send_versions(&producer, &dimension_topic, &late);
    let known = learn(&late);
    wait_followed(&pool, &dimension_topic, &mut follower).await;
    let attribute_of: &AttributeOf<'_> = &|page, bucket| region_at(&known, page, bucket);
    assert_rollups_by(
        &address,
        &pipeline.topic,
        "region",
        attribute_of,
        "late versions, before a batch run",
    );
    let batch = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"]));
    assert!(batch.status.success(), "{}", stderr(&batch));
    assert_rollups_by(
        &address,
        &pipeline.topic,
        "region",
        attribute_of,
        "late versions, after a batch run",
    );

    // BI tools: serving.page_views joins the same versions (the producers are done, so the
    // positions are the topic's end).
    let ends = crate::support::committed_ends(&pipeline.topic);
    let expected = counts_by_attribute(rolled_up_by(&pipeline.topic, &ends, attribute_of));
    assert_eq!(
        served_counts_by(&pool, "region").await,
        expected,
        "serving.page_views by region"
    );
    assert!(
        expected.len() >= 4,
        "several regions and the pages without one: {expected:?}"
    );
    api.assert_running("braid serve");
    follower.assert_running("braid dimensions follow");
}
