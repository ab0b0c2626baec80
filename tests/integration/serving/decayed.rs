//! Decayed trending scores (issue 17, second half): `decayed(count, H)` and
//! `decayed(sum(field), H)` from the speed layer ⊕ a batch run equal an independent fold over
//! the records in Kafka, decayed to the time the answer names (`decayed_to`), to within 1e-9
//! relative, per page and bucket, over a rolling window, and in the top-k order.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::http::get;
use crate::oracle::{self, RawMessage};
use crate::support::{Pipeline, read_topic, run, speed_caught_up, stderr};

const HALF_LIFE_S: f64 = 600.0;
/// How far back readers decay at most, in half-lives (schemas::view::MAX_DECAY_HALF_LIVES).
const MAX_DECAY: f64 = 600.0;

/// Per (page, bucket start µs): the undecayed scores (count, sum of duration_ms), each
/// record weighted by 2^((t − bucket_start) / H).
type Scores = BTreeMap<(Option<String>, i64), (f64, f64)>;

fn fold(messages: &[RawMessage]) -> Scores {
    let mut scores = Scores::new();
    for message in messages {
        if oracle::refusal(&message.payload).is_some() {
            continue;
        }
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        let object = value.as_object().unwrap();
        let t = oracle::event_time(&object["ts"]).unwrap();
        let bucket = oracle::bucket(t, 60);
        let weight = ((t - bucket) as f64 / (HALF_LIFE_S * 1e6)).exp2();
        let entry = scores
            .entry((oracle::text(object, "page"), bucket))
            .or_default();
        entry.0 += weight;
        if let Some(d) = oracle::int(object, "duration_ms") {
            entry.1 += d as f64 * weight;
        }
    }
    scores
}

/// A bucket's scores decayed from its start to `now`, as the API defines it: by at most
/// MAX_DECAY half-lives, and never grown (a bucket after `now` counts as of its start).
fn decayed(bucket: i64, now: i64, score: f64) -> f64 {
    let half_lives = ((bucket - now) as f64 / 1e6 / HALF_LIFE_S).clamp(-MAX_DECAY, 0.0);
    score * half_lives.exp2()
}

fn close(actual: f64, expected: f64, what: &str) {
    let scale = actual.abs().max(expected.abs()).max(f64::MIN_POSITIVE);
    assert!(
        (actual - expected).abs() <= 1e-9 * scale,
        "{what}: the API says {actual:e}, the fold {expected:e}"
    );
}

fn micros(text: &Value) -> i64 {
    DateTime::parse_from_rfc3339(text.as_str().expect("a time"))
        .expect("RFC 3339")
        .timestamp_micros()
}

/// Pages and their decayed scores over [from, to), decayed to `now`.
fn totals(scores: &Scores, from: i64, to: i64, now: i64) -> BTreeMap<Option<String>, (f64, f64)> {
    let mut totals: BTreeMap<Option<String>, (f64, f64)> = BTreeMap::new();
    for ((page, bucket), (count, sum)) in scores {
        if (from..to).contains(bucket) {
            let total = totals.entry(page.clone()).or_default();
            total.0 += decayed(*bucket, now, *count);
            total.1 += decayed(*bucket, now, *sum);
        }
    }
    totals
}

/// Checks every row of `answer` against `expected`, finding each row's entry by `key`.
fn check_rows<K: Ord + std::fmt::Debug>(
    answer: &Value,
    expected: &BTreeMap<K, (f64, f64)>,
    key: impl Fn(&Value) -> K,
    what: &str,
) {
    let rows = answer["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {answer}"));
    assert_eq!(rows.len(), expected.len(), "{what}: {answer}");
    for row in rows {
        let key = key(row);
        let (count, sum) = expected[&key];
        close(
            row["decayed_count"].as_f64().unwrap(),
            count,
            &format!("{what}, {key:?}: decayed_count"),
        );
        close(
            row["decayed_sum_duration_ms"].as_f64().unwrap(),
            sum,
            &format!("{what}, {key:?}: decayed_sum_duration_ms"),
        );
    }
}

/// A row's page.
fn page(row: &Value) -> Option<String> {
    row["page"].as_str().map(str::to_string)
}

#[sqlx::test(migrations = false)]
async fn decayed_scores_of_batch_and_speed_equal_a_fold_and_rank_like_it(pool: PgPool) {
    let pipeline = Pipeline::new("decayed", &pool).await;
    // Event times over the last 40 minutes (late ones up to 30 minutes earlier), so that the
    // scores decay by a few half-lives, not by the clamp.
    let produce = |seed: u64, start: DateTime<Utc>| {
        let output = run(pipeline.braid().args([
            "generate",
            "--rate",
            "0",
            "--count",
            "1500",
            "--seed",
            &seed.to_string(),
            "--start",
            &start.to_rfc3339_opts(SecondsFormat::Secs, true),
            "--event-interval-us",
            "800000",
            "--late-fraction",
            "0.1",
            "--malformed-fraction",
            "0.02",
            "--partitions",
            "2",
        ]));
        assert!(output.status.success(), "generate: {}", stderr(&output));
    };
    produce(7, Utc::now() - chrono::Duration::minutes(40));
    let (mut speed, _sink) = super::caught_up_with_a_batch_run(&pool, &pipeline, "decayed").await;
    // More records after the batch's cut: the answer is batch ⊕ speed.
    produce(8, Utc::now() - chrono::Duration::minutes(20));
    speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;

    let (mut api, address) = super::serve_ready(&pipeline, "decayed", &[]).await;
    let scores = fold(&read_topic(&pipeline.topic));
    assert!(
        scores.len() > 50,
        "the fold has {} page buckets",
        scores.len()
    );

    // Rolling: one total per page over the last 2 hours.
    let (status, rolling) = get(&address, "/v1/views/trending_pages/rolling?window=2h");
    assert_eq!(status, 200, "{rolling}");
    assert!(
        rolling["provenance"]["batch"]["covered_epoch"].is_i64(),
        "a batch run is part of the answer: {rolling}"
    );
    let now = micros(&rolling["decayed_to"]);
    let window = (
        micros(&rolling["window_start"]),
        micros(&rolling["window_end"]),
    );
    check_rows(
        &rolling,
        &totals(&scores, window.0, window.1, now),
        page,
        "rolling",
    );

    // The SQL view BI tools read decays to the database's now(), read in the same statement.
    let rows: Vec<(Option<String>, f64, f64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT page, sum(decayed_count), sum(decayed_sum_duration_ms), now() FROM serving.trending_pages \
         WHERE bucket_start >= $1 AND bucket_start < $2 GROUP BY page",
    )
    .bind(DateTime::<Utc>::from_timestamp_micros(window.0).unwrap())
    .bind(DateTime::<Utc>::from_timestamp_micros(window.1).unwrap())
    .fetch_all(&pool)
    .await
    .unwrap();
    let sql_now = rows
        .first()
        .expect("rows in serving.trending_pages")
        .3
        .timestamp_micros();
    let expected = totals(&scores, window.0, window.1, sql_now);
    assert_eq!(rows.len(), expected.len());
    for (page, count, sum, _) in &rows {
        close(
            *count,
            expected[page].0,
            &format!("serving.trending_pages, {page:?}: decayed_count"),
        );
        close(
            *sum,
            expected[page].1,
            &format!("serving.trending_pages, {page:?}: decayed_sum_duration_ms"),
        );
    }

    // Top 5 pages by decayed count: the fold's order.
    let (status, top) = get(
        &address,
        "/v1/views/trending_pages/top?window=2h&metric=decayed_count&k=5",
    );
    assert_eq!(status, 200, "{top}");
    let now = micros(&top["decayed_to"]);
    let expected = totals(
        &scores,
        micros(&top["window_start"]),
        micros(&top["window_end"]),
        now,
    );
    let mut ranked: Vec<(&Option<String>, f64)> =
        expected.iter().map(|(p, (c, _))| (p, *c)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let answered: Vec<Option<String>> = top["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["page"].as_str().map(str::to_string))
        .collect();
    assert_eq!(answered.len(), 5, "{top}");
    for (i, page) in answered.iter().enumerate() {
        close(
            expected[page].0,
            ranked[i].1,
            &format!(
                "top: rank {} is {page:?}, the fold's is {:?}",
                i + 1,
                ranked[i].0
            ),
        );
    }

    // Decayed to another time (`at=`): twenty minutes on, every score as the fold decays it.
    let at =
        (Utc::now() + chrono::Duration::minutes(20)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (status, later) = get(
        &address,
        &format!("/v1/views/trending_pages/rolling?window=2h&at={at}"),
    );
    assert_eq!(status, 200, "{later}");
    assert_eq!(later["decayed_to"], at.replace('Z', ".000000Z"), "{later}");
    let expected = totals(
        &scores,
        micros(&later["window_start"]),
        micros(&later["window_end"]),
        micros(&later["decayed_to"]),
    );
    check_rows(&later, &expected, page, "rolling at=");

    // Per bucket, and rolled up to 10 minutes: each bucket decayed to the same time.
    let from = Utc::now() - chrono::Duration::minutes(90);
    let range = format!(
        "from={}&to={}",
        from.format("%Y-%m-%dT%H:%M:00Z"),
        (Utc::now() + chrono::Duration::minutes(10)).format("%Y-%m-%dT%H:%M:00Z")
    );
    for granularity in ["1m", "10m"] {
        let (status, series) = get(
            &address,
            &format!("/v1/views/trending_pages?{range}&granularity={granularity}&limit=5000"),
        );
        assert_eq!(status, 200, "{series}");
        let now = micros(&series["decayed_to"]);
        let width = if granularity == "1m" { 60 } else { 600 };
        let mut expected: BTreeMap<(Option<String>, i64), (f64, f64)> = BTreeMap::new();
        for ((page, bucket), (count, sum)) in &scores {
            if (micros(&series["from"])..micros(&series["to"])).contains(bucket) {
                let total = expected
                    .entry((page.clone(), oracle::bucket(*bucket, width)))
                    .or_default();
                total.0 += decayed(*bucket, now, *count);
                total.1 += decayed(*bucket, now, *sum);
            }
        }
        check_rows(
            &series,
            &expected,
            |row| (page(row), micros(&row["bucket_start"])),
            granularity,
        );
    }
    api.assert_running("braid serve");
}
