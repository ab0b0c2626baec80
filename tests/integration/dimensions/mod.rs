//! Dimensions on the real services: views grouped and filtered by attributes of a dimension,
//! answered by the API and the SQL views, checked against an independent fold over the records
//! and the dimension, for each source kind (a user's PostgreSQL table, CSV, Parquet, a followed
//! Kafka topic), across a dimension change between batch runs, with keys missing from the
//! dimension, and across a SIGKILL of the follower.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use sqlx::PgPool;

pub(crate) mod hostile;
mod outage;
mod up;
mod versioned;

use crate::oracle::{self, ViewRows};
use crate::serving::{RANGE, rows_of, serve_ready};
use crate::support::{
    Pipeline, Running, kafka_brokers, log_file, read_topic, run, stderr, wait_until,
};

/// page → attribute value; a page absent here is absent from the dimension.
type Mapping = BTreeMap<String, String>;

const METRICS: [&str; 4] = [
    "count",
    "sum_duration_ms",
    "max_duration_ms",
    "count_duration_ms",
];

/// The test's config file: the demo's plus `extra`, in a folder of its own (dimension files
/// are found relative to it).
pub(crate) fn write_config(pipeline: &Pipeline, extra: &str) -> PathBuf {
    let demo = std::fs::read_to_string(crate::support::repo_root().join("braid.toml")).unwrap();
    let folder = std::env::temp_dir().join(format!("{}-config", pipeline.topic));
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("braid.toml");
    std::fs::write(&path, format!("{demo}\n{extra}")).unwrap();
    path
}

pub(crate) fn migrate(pipeline: &Pipeline) -> std::process::Output {
    run(pipeline.braid().arg("migrate"))
}

/// The distinct pages of the valid page views on the topic.
pub(crate) fn pages_of(topic: &str) -> Vec<String> {
    let mut pages = BTreeSet::new();
    for m in read_topic(topic) {
        if oracle::refusal(&m.payload).is_some() {
            continue;
        }
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        if v["event_type"] == "page_view" {
            pages.insert(v["page"].as_str().unwrap().to_string());
        }
    }
    pages.into_iter().collect()
}

/// A mapping of about nine pages in ten to one of four sections (`salt` varies it); the rest
/// are missing from the dimension.
fn mapping(pages: &[String], salt: u64) -> Mapping {
    pages
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 3)
        .map(|(i, p)| (p.clone(), format!("s{}", (i as u64 + salt) % 4)))
        .collect()
}

/// The fold: page_views rows of the records below `positions`, rolled up by `mapping` (a page
/// it lacks under null) and to hours.
fn rolled_up(topic: &str, positions: &BTreeMap<i32, i64>, mapping: &Mapping) -> ViewRows {
    rolled_up_by(topic, positions, &|page, _| {
        page.and_then(|page| mapping.get(page)).cloned()
    })
}

/// The attribute of a page (none: a null page) for its bucket starting at a time in µs.
pub(crate) type AttributeOf<'a> = dyn Fn(Option<&String>, i64) -> Option<String> + 'a;

/// The fold: page_views rows of the records below `positions`, rolled up by the attribute
/// `attribute_of` gives each page minute and to hours.
pub(crate) fn rolled_up_by(
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    attribute_of: &AttributeOf<'_>,
) -> ViewRows {
    let messages = read_topic(topic);
    let covered = messages.iter().filter(|m| {
        positions
            .get(&m.partition)
            .is_some_and(|next| m.offset < *next)
    });
    let page_views = oracle::demo_views(covered).remove("page_views").unwrap();
    let mut rows = ViewRows::new();
    for ((key, bucket), metrics) in page_views {
        let section = attribute_of(key[0].as_ref(), bucket);
        let hour = oracle::bucket(bucket, 3600);
        let entry = rows
            .entry((vec![section], hour))
            .or_insert_with(|| vec![Some(0), Some(0), None, Some(0)]);
        entry[0] = Some(entry[0].unwrap() + metrics[0].unwrap());
        entry[1] = Some(entry[1].unwrap() + metrics[1].unwrap_or(0));
        entry[2] = match (entry[2], metrics[2]) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        entry[3] = Some(entry[3].unwrap() + metrics[3].unwrap());
    }
    rows
}

/// Checks GET page_views grouped by `attribute` per hour, and filtered to one of its values,
/// against the fold over the records below the positions each answer reports.
fn assert_rollups(address: &str, topic: &str, attribute: &str, mapping: &Mapping, when: &str) {
    assert_rollups_by(
        address,
        topic,
        attribute,
        &|page, _| page.and_then(|page| mapping.get(page)).cloned(),
        when,
    );
}

/// [`assert_rollups`] with the attribute of each page minute from `attribute_of`.
pub(crate) fn assert_rollups_by(
    address: &str,
    topic: &str,
    attribute: &str,
    attribute_of: &AttributeOf<'_>,
    when: &str,
) {
    let (status, answer) = crate::http::get(
        address,
        &format!("/v1/views/page_views?{RANGE}&group_by={attribute}&granularity=1h&limit=10000"),
    );
    assert_eq!(status, 200, "{when}: {answer}");
    let positions = crate::support::reported_positions(&answer["provenance"]["speed"]);
    let expected = rolled_up_by(topic, &positions, attribute_of);
    assert!(
        expected.keys().any(|(k, _)| k[0].is_none()),
        "{when}: some pages are missing from the dimension"
    );
    assert!(expected.len() > 4, "{when}: several sections and hours");
    crate::compare::assert_rows_equal(
        &BTreeMap::from([("page_views", expected.clone())]),
        &BTreeMap::from([(
            "page_views".to_string(),
            rows_of(&answer, &[attribute], &METRICS),
        )]),
        &format!("{when}: group_by={attribute}"),
    );
    let (status, answer) = crate::http::get(
        address,
        &format!(
            "/v1/views/page_views?{RANGE}&group_by={attribute}&granularity=1h&filter.{attribute}=s1&limit=10000"
        ),
    );
    assert_eq!(status, 200, "{when}: {answer}");
    let positions = crate::support::reported_positions(&answer["provenance"]["speed"]);
    let expected: ViewRows = rolled_up_by(topic, &positions, attribute_of)
        .into_iter()
        .filter(|((k, _), _)| k[0].as_deref() == Some("s1"))
        .collect();
    assert!(!expected.is_empty());
    crate::compare::assert_rows_equal(
        &BTreeMap::from([("page_views", expected)]),
        &BTreeMap::from([(
            "page_views".to_string(),
            rows_of(&answer, &[attribute], &METRICS),
        )]),
        &format!("{when}: filter.{attribute}=s1"),
    );
}

/// The page views of `rows` per attribute, over all hours.
pub(crate) fn counts_by_attribute(rows: ViewRows) -> BTreeMap<Option<String>, i128> {
    rows.into_iter()
        .fold(BTreeMap::new(), |mut m, ((k, _), v)| {
            *m.entry(k[0].clone()).or_default() += v[0].unwrap();
            m
        })
}

/// serving.page_views' page views per value of `attribute` (a validated name), as a BI tool
/// reads them.
pub(crate) async fn served_counts_by(
    pool: &PgPool,
    attribute: &str,
) -> BTreeMap<Option<String>, i128> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {attribute}, sum(count)::bigint FROM serving.page_views GROUP BY 1"
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().map(|(a, c)| (a, i128::from(c))).collect()
}

async fn write_pg_mapping(pool: &PgPool, mapping: &Mapping) {
    let pages: Vec<&String> = mapping.keys().collect();
    let sections: Vec<&String> = mapping.values().collect();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("DELETE FROM public.test_pages")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO public.test_pages (page, section) SELECT * FROM unnest($1::text[], $2::text[])")
        .bind(&pages)
        .bind(&sections)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

const PG_DIMENSION: &str = r#"
[[dimensions]]
name = "pages"
key = "page"
attributes = [{ name = "section", type = "string" }]
source = { postgres_table = "public.test_pages" }
"#;

#[sqlx::test(migrations = false)]
async fn a_users_table_rolls_up_exactly_across_a_change_between_batch_runs(pool: PgPool) {
    let mut pipeline = Pipeline::new("dimensions-pg", &pool).await;
    pipeline.config = Some(write_config(&pipeline, PG_DIMENSION));
    let missing = migrate(&pipeline);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains(
            "dimensions[0].source.postgres_table: table `public.test_pages` does not exist"
        ),
        "{}",
        stderr(&missing)
    );
    sqlx::query("CREATE TABLE public.test_pages (page text, section text)")
        .execute(&pool)
        .await
        .unwrap();
    let not_unique = migrate(&pipeline);
    assert!(stderr(&not_unique).contains("dimensions[0].key: table `public.test_pages` has no primary key or unique index on `page`"), "{}", stderr(&not_unique));
    sqlx::query("ALTER TABLE public.test_pages ADD PRIMARY KEY (page)")
        .execute(&pool)
        .await
        .unwrap();
    let migrated = migrate(&pipeline);
    assert!(migrated.status.success(), "{}", stderr(&migrated));

    pipeline.produce(3_000, 71, 4);
    let first = mapping(&pages_of(&pipeline.topic), 0);
    write_pg_mapping(&pool, &first).await;
    let (mut speed, _sink) =
        crate::serving::caught_up_with_a_batch_run(&pool, &pipeline, "pg").await;
    pipeline.produce(1_000, 72, 4);
    crate::support::speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;
    let (_api, address) = serve_ready(&pipeline, "pg", &[]).await;
    assert_rollups(
        &address,
        &pipeline.topic,
        "section",
        &first,
        "batch and speed, first mapping",
    );

    // The dimension changes: it applies to all history at once, before and after a batch run.
    let second = mapping(&pages_of(&pipeline.topic), 1);
    write_pg_mapping(&pool, &second).await;
    assert_rollups(
        &address,
        &pipeline.topic,
        "section",
        &second,
        "changed mapping, before a batch run",
    );
    let batch = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"]));
    assert!(batch.status.success(), "{}", stderr(&batch));
    assert_rollups(
        &address,
        &pipeline.topic,
        "section",
        &second,
        "changed mapping, after a batch run",
    );

    // BI tools see the attribute in serving.page_views.
    let (status, answer) =
        crate::http::get(&address, &format!("/v1/views/page_views?{RANGE}&limit=1"));
    assert_eq!(status, 200);
    let positions = crate::support::reported_positions(&answer["provenance"]["speed"]);
    let expected = counts_by_attribute(rolled_up(&pipeline.topic, &positions, &second));
    assert_eq!(
        served_counts_by(&pool, "section").await,
        expected,
        "serving.page_views by section (the producers are done, so the positions are the end)"
    );
    let (status, answer) = crate::http::get(
        &address,
        &format!("/v1/views/page_views?{RANGE}&group_by=nope"),
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("section"),
        "the attribute is listed: {answer}"
    );
}

fn write_parquet(path: &Path, mapping: &Mapping) {
    use polars::prelude::*;
    let pages: Vec<&str> = mapping.keys().map(String::as_str).collect();
    let sections: Vec<&str> = mapping.values().map(String::as_str).collect();
    let mut frame = df!("page" => pages, "pq_section" => sections).unwrap();
    let file = std::fs::File::create(path).unwrap();
    ParquetWriter::new(file).finish(&mut frame).unwrap();
}

#[sqlx::test(migrations = false)]
async fn csv_and_parquet_files_load_whole_or_not_at_all_and_roll_up_exactly(pool: PgPool) {
    let mut pipeline = Pipeline::new("dimensions-files", &pool).await;
    let config = write_config(
        &pipeline,
        r#"
[[dimensions]]
name = "pages_csv"
key = "page"
attributes = [{ name = "csv_section", type = "string" }, { name = "csv_rank", type = "i64" }]
source = { csv = "pages.csv" }

[[dimensions]]
name = "pages_pq"
key = "page"
attributes = [{ name = "pq_section", type = "string" }]
source = { file = "pages.parquet" }
"#,
    );
    let folder = config.parent().unwrap().to_path_buf();
    pipeline.config = Some(config);
    let missing = migrate(&pipeline);
    assert!(
        stderr(&missing).contains("dimensions[0].source.csv"),
        "{}",
        stderr(&missing)
    );
    pipeline.produce(3_000, 73, 4);
    let pages = pages_of(&pipeline.topic);
    let csv_mapping = mapping(&pages, 2);
    let pq_mapping = mapping(&pages, 3);
    let csv_text = |rows: &Mapping, bad: bool| {
        let mut text = String::from("csv_rank,page,csv_section,ignored\n");
        for (i, (page, section)) in rows.iter().enumerate() {
            let rank = if bad && i == 5 {
                "five".to_string()
            } else {
                i.to_string()
            };
            text.push_str(&format!("{rank},\"{page}\",{section},x\n"));
        }
        text
    };
    std::fs::write(folder.join("pages.csv"), csv_text(&csv_mapping, true)).unwrap();
    write_parquet(&folder.join("pages.parquet"), &pq_mapping);
    assert!(migrate(&pipeline).status.success());
    let refused = run(pipeline.braid().args(["dimensions", "load", "pages_csv"]));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("row 6, column `csv_rank`: `five` is not a i64 value"),
        "{}",
        stderr(&refused)
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM braid_dimensions.pages_csv")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "a refused load changes nothing");
    std::fs::write(folder.join("pages.csv"), csv_text(&csv_mapping, false)).unwrap();
    for name in ["pages_csv", "pages_pq"] {
        let loaded = run(pipeline.braid().args(["dimensions", "load", name]));
        assert!(loaded.status.success(), "{name}: {}", stderr(&loaded));
    }
    let (_speed, _sink) =
        crate::serving::caught_up_with_a_batch_run(&pool, &pipeline, "files").await;
    let (_api, address) = serve_ready(&pipeline, "files", &[]).await;
    assert_rollups(
        &address,
        &pipeline.topic,
        "csv_section",
        &csv_mapping,
        "csv",
    );
    assert_rollups(
        &address,
        &pipeline.topic,
        "pq_section",
        &pq_mapping,
        "parquet",
    );

    // A changed declaration is refused rather than read with the old columns.
    let config = pipeline.config.clone().unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "name = \"csv_rank\", type = \"i64\"",
            "name = \"csv_rank\", type = \"string\"",
        ),
    )
    .unwrap();
    let changed = migrate(&pipeline);
    assert!(!changed.status.success());
    assert!(
        stderr(&changed).contains("dimensions[0].attributes: table `braid_dimensions.pages_csv` was created with (page text, csv_section text, csv_rank bigint) but dimension `pages_csv` now declares (page text, csv_section text, csv_rank text)"),
        "{}",
        stderr(&changed)
    );
}

pub(crate) fn send(producer: &BaseProducer, topic: &str, key: &str, payload: Option<&str>) {
    let mut record = BaseRecord::<str, str>::to(topic).key(key);
    if let Some(p) = payload {
        record = record.payload(p);
    }
    producer.send(record).map_err(|(e, _)| e).unwrap();
}

pub(crate) fn start_follower(pipeline: &Pipeline, name: &str) -> Running {
    let child = pipeline
        .braid()
        .args(["dimensions", "follow"])
        .stdout(std::process::Stdio::null())
        .stderr(log_file(&format!("{}-follow-{name}", pipeline.topic)))
        .spawn()
        .expect("braid dimensions follow starts");
    Running(child)
}

pub(crate) async fn wait_followed(pool: &PgPool, dimension_topic: &str, follower: &mut Running) {
    let ends = crate::support::committed_ends(dimension_topic);
    wait_until(
        "the follower to reach the end of the dimension topic",
        Duration::from_secs(60),
        || {
            follower.assert_running("braid dimensions follow");
            let (pool, ends, topic) = (pool.clone(), ends.clone(), dimension_topic.to_string());
            async move {
                let stored = dimensions::store::load_positions(&pool, "pages", &topic)
                    .await
                    .unwrap();
                ends.iter()
                    .all(|(p, end)| stored.get(p).is_some_and(|at| at >= end))
            }
        },
    )
    .await;
}

#[sqlx::test(migrations = false)]
async fn a_followed_topic_survives_a_sigkill_and_dead_letters_malformed_messages(pool: PgPool) {
    let mut pipeline = Pipeline::new("dimensions-kafka", &pool).await;
    let dimension_topic = format!("{}.pages", pipeline.topic);
    crate::kafka_admin::create_topic_with(&dimension_topic, 2, &[("cleanup.policy", "compact")])
        .await;
    pipeline.config = Some(write_config(
        &pipeline,
        &format!(
            "[[dimensions]]\nname = \"pages\"\nkey = \"page\"\n\
             attributes = [{{ name = \"section\", type = \"string\" }}, {{ name = \"weight\", type = \"i64\" }}]\n\
             source = {{ kafka_topic = \"{dimension_topic}\", format = \"json\" }}\n"
        ),
    ));
    let migrated = migrate(&pipeline);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    pipeline.produce(3_000, 74, 4);
    let pages = pages_of(&pipeline.topic);
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let mut expected = mapping(&pages, 0);
    for (i, (page, section)) in expected.iter().enumerate() {
        let payload =
            serde_json::json!({ "page": page, "section": section, "weight": i }).to_string();
        send(&producer, &dimension_topic, page, Some(&payload));
    }
    let malformed = [
        ("bad-1", "not json"),
        ("bad-2", "[1, 2]"),
        ("bad-3", r#"{"section": "s9"}"#),
        (
            "bad-4",
            r#"{"page": "/w", "section": "s9", "weight": "heavy"}"#,
        ),
    ];
    for (key, payload) in malformed {
        send(&producer, &dimension_topic, key, Some(payload));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let mut follower = start_follower(&pipeline, "first");
    wait_followed(&pool, &dimension_topic, &mut follower).await;

    // A second round (every other page moves to another section, one page is deleted) while the
    // follower is SIGKILLed at a random moment and restarted.
    let mut second = Vec::new();
    for (i, page) in expected.keys().enumerate().filter(|(i, _)| i % 2 == 0) {
        second.push((page.clone(), Some(format!("s{}", (i + 1) % 4))));
    }
    let deleted = expected.keys().nth(1).unwrap().clone();
    second.push((deleted.clone(), None));
    for (page, section) in &second {
        match section {
            Some(section) => {
                let payload = serde_json::json!({ "page": page, "section": section }).to_string();
                send(&producer, &dimension_topic, page, Some(&payload));
            }
            None => send(&producer, &dimension_topic, page, None),
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..400))).await;
    follower.kill();
    let mut follower = start_follower(&pipeline, "second");
    wait_followed(&pool, &dimension_topic, &mut follower).await;
    for (page, section) in second {
        match section {
            Some(section) => {
                expected.insert(page, section);
            }
            None => {
                expected.remove(&page);
            }
        }
    }
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT page, section FROM braid_dimensions.pages")
            .fetch_all(&pool)
            .await
            .unwrap();
    let table: Mapping = rows.into_iter().map(|(p, s)| (p, s.unwrap())).collect();
    assert_eq!(
        table, expected,
        "the table is the last message of each key, without the deleted one"
    );
    let weights: i64 =
        sqlx::query_scalar("SELECT count(*) FROM braid_dimensions.pages WHERE weight IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        weights > 0,
        "a message without an attribute sets it to null"
    );
    let letters: Vec<(String, String)> = sqlx::query_as(
        "SELECT reason_code, reason FROM braid_internal.dead_letters WHERE layer = 'dimension' ORDER BY partition, \"offset\"",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let codes: BTreeSet<&str> = letters.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        codes,
        BTreeSet::from(["missing_field", "not_json", "not_object", "wrong_type"]),
        "{letters:?}"
    );
    assert_eq!(
        letters.len(),
        4,
        "each refused once, across the SIGKILL: {letters:?}"
    );
    assert!(
        letters
            .iter()
            .any(|(_, r)| r.contains("`weight` must be i64")),
        "{letters:?}"
    );

    let (_speed, _sink) =
        crate::serving::caught_up_with_a_batch_run(&pool, &pipeline, "kafka").await;
    let (_api, address) = serve_ready(&pipeline, "kafka", &[]).await;
    assert_rollups(
        &address,
        &pipeline.topic,
        "section",
        &expected,
        "followed topic",
    );
    let _ = follower;
}

#[test]
fn bad_dimension_config_stops_the_start_naming_the_key() {
    let demo = std::fs::read_to_string(crate::support::repo_root().join("braid.toml")).unwrap();
    let cases = [
        ("key = \"ad_id\"", "dimensions[0].key", "not a field"),
        (
            "key = \"page\"\nattributes = [{ name = \"country\", type = \"string\" }]",
            "dimensions[0].attributes",
            "also a field",
        ),
        (
            "key = \"page\"\nattributes = [{ name = \"count\", type = \"i64\" }]",
            "dimensions[0].attributes",
            "column of view",
        ),
        (
            "key = \"page\"\nsource = { csv = \"a.csv\", kafka_topic = \"t\" }",
            "dimensions[0].source",
            "exactly one",
        ),
    ];
    for (part, key, reason) in cases {
        let mut fields: BTreeMap<&str, String> = BTreeMap::from([
            ("name", "\"d\"".to_string()),
            (
                "attributes",
                "[{ name = \"section\", type = \"string\" }]".to_string(),
            ),
            ("source", "{ postgres_table = \"public.t\" }".to_string()),
        ]);
        for line in part.lines() {
            let (k, v) = line.split_once(" = ").unwrap();
            fields.insert(k, v.to_string());
        }
        let body: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let path = std::env::temp_dir().join(format!(
            "braid-bad-dimension-{}-{}.toml",
            std::process::id(),
            reason.replace(' ', "-")
        ));
        std::fs::write(&path, format!("{demo}\n[[dimensions]]\n{body}")).unwrap();
        let output = run(crate::support::braid()
            .args(["dimensions", "list"])
            .env("BRAID_CONFIG", &path));
        assert!(!output.status.success(), "{part}: refused");
        let text = stderr(&output);
        assert!(
            text.contains(key) && text.contains(reason),
            "{part}: names {key}: {text}"
        );
    }
}
