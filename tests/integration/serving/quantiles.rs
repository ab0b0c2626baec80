//! Quantiles and samples through the API and the SQL views (issue 40): `page_latency`'s
//! `quantile(duration_ms)` answered from speed ⊕ a batch run, per page and minute, per hour and
//! for all pages, every level within the declared relative accuracy of an exact sort of the
//! same records (read back from Kafka); `sample(5)` of any rollup is exactly the five records
//! of that rollup with the smallest position hashes.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgPool;

use crate::http::get;
use crate::latency::{self, Cell, K, within_accuracy};
use crate::support::{Pipeline, read_topic, speed_caught_up};

const RANGE: &str = "from=2025-12-31T00:00:00Z&to=2026-01-02T00:00:00Z";
/// The levels asked, with their answer columns.
const LEVELS: [(&str, &str); 5] = [
    ("0", "quantile_duration_ms_p0"),
    ("0.5", "quantile_duration_ms_p50"),
    ("0.9", "quantile_duration_ms_p90"),
    ("0.999", "quantile_duration_ms_p99_9"),
    ("1", "quantile_duration_ms_p100"),
];

/// The cells rolled up: page kept or not, buckets of `seconds` (0: the whole range).
fn rolled_up(
    cells: &BTreeMap<latency::Key, Cell>,
    keep_page: bool,
    seconds: i64,
) -> BTreeMap<(Option<String>, i64), Cell> {
    let mut rolled: BTreeMap<(Option<String>, i64), Cell> = BTreeMap::new();
    for ((page, bucket), cell) in cells {
        let key = (
            keep_page.then(|| page.clone()).flatten(),
            if seconds == 0 {
                0
            } else {
                crate::oracle::bucket(*bucket, seconds)
            },
        );
        let into = rolled.entry(key).or_default();
        into.count += cell.count;
        into.durations.extend(&cell.durations);
        into.records.extend(cell.records.iter().cloned());
    }
    for cell in rolled.values_mut() {
        cell.durations.sort_unstable();
    }
    rolled
}

/// Checks every row of an answer against the rolled-up records; returns how many levels were
/// compared.
fn check(
    answer: &Value,
    expected: &BTreeMap<(Option<String>, i64), Cell>,
    keep_page: bool,
    what: &str,
) -> usize {
    let rows = answer["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {answer}"));
    assert_eq!(rows.len(), expected.len(), "{what}: {answer}");
    let mut compared = 0;
    for row in rows {
        let page = if keep_page {
            row["page"].as_str().map(str::to_string)
        } else {
            None
        };
        let bucket = row["bucket_start"]
            .as_str()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .unwrap()
                    .timestamp_micros()
            })
            .unwrap_or(0);
        let cell = &expected[&(page.clone(), bucket)];
        assert_eq!(
            row["count"].as_i64(),
            Some(cell.count),
            "{what} {page:?} {bucket}"
        );
        for (level, column) in LEVELS {
            let q: f64 = level.parse().unwrap();
            match cell.exact(q) {
                None => assert!(row[column].is_null(), "{what} {page:?} {bucket}: {row}"),
                Some(exact) => {
                    let answered = row[column]
                        .as_f64()
                        .unwrap_or_else(|| panic!("{what}: {row}"));
                    assert!(
                        within_accuracy(answered, exact),
                        "{what} {page:?} {bucket} {column}: {answered}, the exact value is {exact}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(
            row.get("sample").is_none(),
            "{what}: series answers leave samples to /sample: {row}"
        );
    }
    compared
}

#[sqlx::test(migrations = false)]
async fn quantiles_and_samples_of_batch_and_speed_match_the_records_for_any_rollup(pool: PgPool) {
    let pipeline = Pipeline::new("quantiles", &pool).await;
    pipeline.produce(3000, 23, 2);
    let (mut speed, _sink) = super::caught_up_with_a_batch_run(&pool, &pipeline, "quantiles").await;
    // The same event times again after the cut: page minutes that batch and speed rows share.
    pipeline.produce(1500, 24, 2);
    speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;
    let (mut api, address) = super::serve_ready(
        &pipeline,
        "quantiles",
        &[("BRAID__SERVING__MAX_LIMIT", "100000")],
    )
    .await;
    let records = read_topic(&pipeline.topic);
    let cells = latency::page_latency(&records);
    assert!(cells.len() > 100, "{} page minutes", cells.len());
    let q = LEVELS.map(|(level, _)| level).join(",");

    let (status, minutes) = get(
        &address,
        &format!("/v1/views/page_latency?{RANGE}&limit=100000&q={q}"),
    );
    assert_eq!(status, 200, "{minutes}");
    assert!(
        minutes["provenance"]["batch"]["covered_epoch"].is_i64(),
        "a batch run is part of the answer: {minutes}"
    );
    let compared = check(
        &minutes,
        &rolled_up(&cells, true, 60),
        true,
        "per page and minute",
    );
    assert!(compared > 500, "only {compared} quantiles compared");

    let (status, hours) = get(
        &address,
        &format!("/v1/views/page_latency?{RANGE}&granularity=1h&limit=100000&q={q}"),
    );
    assert_eq!(status, 200, "{hours}");
    let _ = check(
        &hours,
        &rolled_up(&cells, true, 3600),
        true,
        "per page and hour",
    );

    let (status, all) = get(
        &address,
        &format!("/v1/views/page_latency?{RANGE}&granularity=1d&group_by=&q={q}"),
    );
    assert_eq!(status, 200, "{all}");
    let _ = check(
        &all,
        &rolled_up(&cells, false, 86_400),
        false,
        "all pages per day",
    );

    // The sample route: for page minutes, page hours and one page over the whole range, the
    // records of that rollup with the K smallest position hashes.
    let rfc3339 = |micros: i64| {
        chrono::DateTime::from_timestamp_micros(micros)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let mut rollups: Vec<(String, i64, i64)> = Vec::new();
    for (seconds, how_many) in [(60, 25), (3600, 10)] {
        for ((page, start), _) in rolled_up(&cells, true, seconds).iter().take(how_many) {
            rollups.push((page.clone().unwrap(), *start, start + seconds * 1_000_000));
        }
    }
    let first_page = cells.keys().find_map(|(page, _)| page.clone()).unwrap();
    rollups.push((first_page, 1_767_139_200_000_000, 1_767_312_000_000_000));
    for (page, from, to) in rollups {
        let (status, sample) = get(
            &address,
            &format!(
                "/v1/views/page_latency/sample?from={}&to={}&filter.page={}",
                rfc3339(from),
                rfc3339(to),
                super::fuzz::encode(page.as_bytes())
            ),
        );
        assert_eq!(status, 200, "{sample}");
        let mut of_rollup = Cell::default();
        for ((p, bucket), cell) in &cells {
            if p.as_deref() == Some(page.as_str()) && (from..to).contains(bucket) {
                of_rollup.records.extend(cell.records.iter().cloned());
            }
        }
        let kept: Vec<(i32, i64)> = sample["sample"]["records"]
            .as_array()
            .unwrap_or_else(|| panic!("{sample}"))
            .iter()
            .map(|r| (r["p"].as_i64().unwrap() as i32, r["o"].as_i64().unwrap()))
            .collect();
        assert_eq!(kept.len(), K.min(of_rollup.records.len()));
        assert_eq!(
            kept,
            of_rollup.sampled(),
            "the sample of {page} over [{from}, {to})"
        );
    }
    let (status, missing) = get(&address, "/v1/views/page_views/sample");
    assert_eq!(status, 400, "a view without sample(K): {missing}");
    assert_eq!(missing["error"]["parameter"], "view", "{missing}");

    // A level named by an order or a top metric is answered without `q`; a sample is no metric
    // to rank by.
    let (status, rolling) = get(
        &address,
        "/v1/views/page_latency/rolling?window=1h&order=quantile_duration_ms_p95:desc",
    );
    assert_eq!(status, 200, "{rolling}");
    assert!(
        rolling["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "quantile_duration_ms_p95"),
        "{rolling}"
    );
    let (status, top) = get(
        &address,
        "/v1/views/page_latency/top?window=1h&metric=quantile_duration_ms_p95",
    );
    assert_eq!(status, 200, "{top}");
    let (status, top) = get(
        &address,
        "/v1/views/page_latency/top?window=1h&metric=sample",
    );
    assert_eq!(status, 400, "{top}");

    // Levels the API refuses, naming `q`.
    for bad in ["1.5", "0.5,0.5", "x", "-0.1", "0.1234567", ""] {
        let (status, refused) = get(&address, &format!("/v1/views/page_latency?{RANGE}&q={bad}"));
        assert_eq!(status, 400, "q={bad}: {refused}");
        assert_eq!(refused["error"]["parameter"], "q", "q={bad}: {refused}");
    }

    // BI tools: serving.page_latency's default levels, and any level of any rollup from the
    // merged sketches.
    let per_page: Vec<(Option<String>, Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT page, \
                serving.quantile(serving.quantile_union_agg(quantile_duration_ms_sketch), 0.99), \
                serving.quantile(serving.quantile_union_agg(quantile_duration_ms_sketch), 0.5) \
         FROM serving.page_latency GROUP BY page",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected = rolled_up(&cells, true, 0);
    assert_eq!(per_page.len(), expected.len());
    for (page, p99, p50) in per_page {
        let cell = &expected[&(page.clone(), 0)];
        for (answered, q) in [(p99, 0.99), (p50, 0.5)] {
            match (answered, cell.exact(q)) {
                (None, None) => {}
                (Some(answered), Some(exact)) => assert!(
                    within_accuracy(answered, exact),
                    "serving.page_latency {page:?} q {q}: {answered}, exact {exact}"
                ),
                other => panic!("serving.page_latency {page:?} q {q}: {other:?}"),
            }
        }
    }
    let p99: Vec<(Option<String>, Option<f64>)> =
        sqlx::query_as("SELECT page, quantile_duration_ms_p99 FROM serving.page_latency LIMIT 50")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!p99.is_empty());
    api.assert_running("braid serve");
}
