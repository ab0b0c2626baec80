//! Distinct counts (issue 17, first half): `distinct(user_id)` from the speed layer ⊕ a batch
//! run equals, per page and bucket and for rollups over hours, days and all pages, the
//! cardinality of the sketch that PostgreSQL's own `hll_add_agg` builds over the same records
//! (an independent engine, fed the records the test read from Kafka), and that estimate is
//! within the documented error of the exact distinct count.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::http::get;
use crate::support::{Pipeline, read_topic, speed_caught_up};

const RANGE: &str = "from=2025-12-31T00:00:00Z&to=2026-01-02T00:00:00Z";
/// 1.04 / √2048: the relative standard error of the default precision.
const STANDARD_ERROR: f64 = 0.023;
/// Sets of at most this many distinct values are answered exactly (EXPLICIT holds 160 at
/// the default precision; hash collisions aside, which 64-bit hashes make negligible here).
const EXACT_UP_TO: i64 = 100;

/// (page or none, bucket start as RFC 3339 or none) -> (PostgreSQL's estimate, exact count).
type Reference = BTreeMap<(Option<String>, Option<String>), (f64, i64)>;

/// PostgreSQL's answer over the records: `hll_add_agg` at the extension's own defaults (what
/// `distinct(user_id)` means), grouped by `groups` (SQL over the table `visits`).
async fn reference(connection: &mut PgConnection, page: &str, bucket: &str) -> Reference {
    let sql = format!(
        "SELECT {page}, {bucket}, \
                coalesce(hll_cardinality(hll_add_agg(hll_hash_text(user_id))), 0), \
                count(DISTINCT user_id) \
         FROM visits GROUP BY 1, 2"
    );
    let rows: Vec<(Option<String>, Option<String>, f64, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(connection)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(page, bucket, estimate, exact)| ((page, bucket), (estimate, exact)))
        .collect()
}

/// Checks every row against PostgreSQL's answer; returns how many rows had at most
/// [`EXACT_UP_TO`] distinct values (each of which must be answered exactly).
fn check(answer: &Value, expected: &Reference, bucketed: bool, what: &str) -> usize {
    let rows = answer["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {answer}"));
    assert_eq!(rows.len(), expected.len(), "{what}: {answer}");
    let mut small = 0;
    for row in rows {
        let key = (
            row["page"].as_str().map(str::to_string),
            bucketed.then(|| row["bucket_start"].as_str().unwrap().to_string()),
        );
        let (estimate, exact) = expected
            .get(&key)
            .unwrap_or_else(|| panic!("{what}: {key:?} is not in PostgreSQL's answer"));
        let answered = row["distinct_user_id"].as_f64().unwrap();
        assert_eq!(
            answered, *estimate,
            "{what} {key:?}: Braid's merged sketch against hll_add_agg's"
        );
        let bound = 3.0 * STANDARD_ERROR * *exact as f64 + 1.0;
        assert!(
            (answered - *exact as f64).abs() <= bound,
            "{what} {key:?}: the estimate {answered} is further than {bound} from the exact {exact}"
        );
        if *exact <= EXACT_UP_TO {
            // Small sets stay EXPLICIT (the distinct hashes): their count is exact.
            assert_eq!(
                answered, *exact as f64,
                "{what} {key:?}: a small set answered inexactly"
            );
            small += 1;
        }
    }
    small
}

#[sqlx::test(migrations = false)]
async fn distinct_counts_of_batch_and_speed_equal_postgresqls_own_sketches(pool: PgPool) {
    let pipeline = Pipeline::new("distinct", &pool).await;
    pipeline.produce(3000, 17, 2);
    let (mut speed, _sink) = super::caught_up_with_a_batch_run(&pool, &pipeline, "distinct").await;
    // The same event times again after the cut: buckets that batch and speed rows share.
    pipeline.produce(1500, 18, 2);
    speed_caught_up(&pool, &pipeline, &mut [&mut speed]).await;

    let (mut api, address) = super::serve_ready(
        &pipeline,
        "distinct",
        &[("BRAID__SERVING__MAX_LIMIT", "100000")],
    )
    .await;

    // The records, into PostgreSQL, for hll_add_agg and count(DISTINCT).
    let mut db = pool.acquire().await.unwrap();
    crate::compare::load_visits(&mut db, &read_topic(&pipeline.topic)).await;
    let utc = |expression: &str| {
        format!("to_char({expression} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
    };

    let (status, minutes) = get(
        &address,
        &format!("/v1/views/unique_visitors?{RANGE}&limit=100000"),
    );
    assert_eq!(status, 200, "{minutes}");
    assert!(
        minutes["provenance"]["batch"]["covered_epoch"].is_i64(),
        "a batch run is part of the answer: {minutes}"
    );
    let per_minute = reference(
        &mut db,
        "page",
        &utc("date_bin('1 minute', ts, timestamptz 'epoch')"),
    )
    .await;
    assert!(per_minute.len() > 100, "{} page minutes", per_minute.len());
    let small = check(&minutes, &per_minute, true, "per page and minute");
    assert!(
        small > 50,
        "only {small} page minutes had at most {EXACT_UP_TO} users"
    );

    let (status, hours) = get(
        &address,
        &format!("/v1/views/unique_visitors?{RANGE}&granularity=1h&limit=100000"),
    );
    assert_eq!(status, 200, "{hours}");
    let _ = check(
        &hours,
        &reference(
            &mut db,
            "page",
            &utc("date_bin('1 hour', ts, timestamptz 'epoch')"),
        )
        .await,
        true,
        "per page and hour",
    );

    let (status, days) = get(
        &address,
        &format!("/v1/views/unique_visitors?{RANGE}&granularity=1d&group_by="),
    );
    assert_eq!(status, 200, "{days}");
    let _ = check(
        &days,
        &reference(
            &mut db,
            "NULL::text",
            &utc("date_bin('1 day', ts, timestamptz 'epoch')"),
        )
        .await,
        true,
        "all pages per day",
    );

    // BI tools roll the merged sketches of serving.<view> up themselves.
    let rolled: Vec<(Option<String>, f64)> = sqlx::query_as(
        "SELECT page, coalesce(hll_cardinality(hll_union_agg(distinct_user_id_sketch)), 0) \
         FROM serving.unique_visitors GROUP BY page",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let per_page = reference(&mut db, "page", "NULL::text").await;
    assert_eq!(rolled.len(), per_page.len());
    for (page, estimate) in rolled {
        assert_eq!(
            estimate,
            per_page[&(page.clone(), None)].0,
            "serving.unique_visitors, {page:?}"
        );
    }
    api.assert_running("braid serve");
}
