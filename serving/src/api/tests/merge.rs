//! Answers equal an independent fold over the records, per key and bucket.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::fixture::{Sale, Totals, add, get, sales, start, state, store, store_positions};

/// (kept group values, bucket start in micros or None) -> totals.
type Expected = BTreeMap<(Vec<String>, Option<i64>), Totals>;

struct Ask<'a> {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity_s: Option<i64>,
    group_by: &'a [&'a str],
    countries: Option<&'a [&'a str]>,
    stores: Option<&'a [i64]>,
}

fn fold(sales: &[Sale], ask: &Ask) -> Expected {
    let mut out = Expected::new();
    for sale in sales {
        // Whole one-minute buckets inside [from, to): the view's bucket is 1m.
        let bucket = sale.micros.div_euclid(60_000_000) * 60_000_000;
        if bucket < ask.from.timestamp_micros() || bucket >= ask.to.timestamp_micros() {
            continue;
        }
        if ask.countries.is_some_and(|c| !c.contains(&sale.country))
            || ask.stores.is_some_and(|s| !s.contains(&sale.store))
        {
            continue;
        }
        let key: Vec<String> = ask
            .group_by
            .iter()
            .map(|g| match *g {
                "country" => sale.country.to_string(),
                _ => sale.store.to_string(),
            })
            .collect();
        let rolled = ask
            .granularity_s
            .map(|g| bucket.div_euclid(g * 1_000_000) * g * 1_000_000);
        add(out.entry((key, rolled)).or_default(), sale.cents);
    }
    out
}

fn parse(rows: &Value, group_by: &[&str], bucketed: bool) -> Expected {
    let mut out = Expected::new();
    for row in rows.as_array().expect("rows is an array") {
        let key: Vec<String> = group_by
            .iter()
            .map(|g| match &row[*g] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let bucket = bucketed.then(|| {
            DateTime::parse_from_rfc3339(row["bucket_start"].as_str().unwrap())
                .unwrap()
                .timestamp_micros()
        });
        let totals = (
            row["count"].as_i64().unwrap(),
            row["sum_cents"].as_i64(),
            row["min_cents"].as_i64(),
            row["max_cents"].as_i64(),
            row["count_cents"].as_i64().unwrap(),
        );
        // The average divides by the records that have cents, not by every record.
        match (totals.1, row["avg_cents"].as_f64()) {
            (Some(sum), Some(avg)) => assert!((avg - sum as f64 / totals.4 as f64).abs() < 1e-9),
            (None, avg) => assert_eq!(avg, None, "no sum, no avg"),
            (Some(_), None) => panic!("avg_cents missing in {row}"),
        }
        assert!(
            out.insert((key, bucket), totals).is_none(),
            "duplicate row {row}"
        );
    }
    out
}

fn query(ask: &Ask) -> String {
    let mut uri = format!(
        "/v1/views/sales?from={}&to={}&group_by={}",
        ask.from.to_rfc3339().replace('+', "%2B"),
        ask.to.to_rfc3339().replace('+', "%2B"),
        ask.group_by.join(",")
    );
    if let Some(g) = ask.granularity_s {
        uri += &format!("&granularity={g}s");
    }
    for c in ask.countries.unwrap_or_default() {
        uri += &format!("&filter.country={}", c.replace('\'', "%27"));
    }
    for s in ask.stores.unwrap_or_default() {
        uri += &format!("&filter.store={s}");
    }
    uri
}

async fn check_series(pool: &PgPool, covered: Option<i64>) {
    let all = sales();
    store(pool, &all, covered).await;
    store_positions(pool).await;
    let state = state(pool.clone(), start() + Duration::hours(3), None);
    let h = |hours: i64| start() + Duration::hours(hours);
    let asks = [
        Ask {
            from: h(0),
            to: h(2),
            granularity_s: None,
            group_by: &["country", "store"],
            countries: None,
            stores: None,
        },
        Ask {
            from: h(0),
            to: h(2),
            granularity_s: Some(300),
            group_by: &["country"],
            countries: None,
            stores: None,
        },
        Ask {
            from: h(0) + Duration::minutes(17),
            to: h(1) + Duration::minutes(43),
            granularity_s: Some(600),
            group_by: &["store"],
            countries: None,
            stores: None,
        },
        Ask {
            from: h(-1),
            to: h(3),
            granularity_s: Some(3600),
            group_by: &[],
            countries: None,
            stores: None,
        },
        Ask {
            from: h(0),
            to: h(2),
            granularity_s: Some(1200),
            group_by: &["country", "store"],
            countries: Some(&["DE", "it's"]),
            stores: Some(&[0, 2]),
        },
    ];
    for ask in &asks {
        let (status, body) = get(&state, &query(ask)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let granularity = ask.granularity_s.unwrap_or(60);
        // The API rounds the range out to its granularity; the fold does the same.
        let rounded = Ask {
            from: DateTime::from_timestamp(
                ask.from.timestamp().div_euclid(granularity) * granularity,
                0,
            )
            .unwrap(),
            to: DateTime::from_timestamp(
                (ask.to.timestamp() + granularity - 1).div_euclid(granularity) * granularity,
                0,
            )
            .unwrap(),
            granularity_s: Some(granularity),
            ..*ask
        };
        let expected = fold(&all, &rounded);
        assert!(!expected.is_empty());
        assert_eq!(
            parse(&body["rows"], ask.group_by, true),
            expected,
            "{}",
            query(ask)
        );
        assert_eq!(body["truncated"], false);
        let batch = &body["provenance"]["batch"];
        match covered {
            Some(epoch) => assert_eq!(batch["covered_epoch"], epoch, "{batch}"),
            None => assert!(batch.is_null(), "{batch}"),
        }
        assert_eq!(
            body["provenance"]["speed"]["positions"][1]["next_offset"],
            450
        );
        assert_eq!(body["provenance"]["speed"]["event_lag_seconds"], 3600.0);
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn before_any_batch_run_the_answer_is_the_speed_rows_alone(pool: PgPool) {
    check_series(&pool, None).await;
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn the_answer_is_the_active_batch_run_plus_the_speed_rows_it_does_not_cover(pool: PgPool) {
    check_series(&pool, Some(3)).await;
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_batch_run_covering_one_epoch_merges_exactly_too(pool: PgPool) {
    check_series(&pool, Some(2)).await;
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn order_and_limit_pick_the_first_rows_and_say_that_more_matched(pool: PgPool) {
    let all = sales();
    store(&pool, &all, Some(2)).await;
    let state = state(pool.clone(), start(), None);
    let ask = Ask {
        from: start(),
        to: start() + Duration::hours(2),
        granularity_s: Some(3600),
        group_by: &["country"],
        countries: None,
        stores: None,
    };
    let mut expected: Vec<_> = fold(&all, &ask).into_iter().collect();
    expected.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let (status, body) = get(&state, &(query(&ask) + "&order=count:desc&limit=3")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (row, ((key, bucket), totals)) in rows.iter().zip(&expected) {
        assert_eq!(row["country"], key[0].as_str());
        assert_eq!(row["count"], totals.0);
        let at = DateTime::parse_from_rfc3339(row["bucket_start"].as_str().unwrap()).unwrap();
        assert_eq!(Some(at.timestamp_micros()), *bucket);
    }
    assert_eq!(body["truncated"], true);
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn rolling_and_top_total_the_window_ending_now(pool: PgPool) {
    let all = sales();
    store(&pool, &all, Some(3)).await;
    let now = start() + Duration::minutes(75) + Duration::seconds(30);
    let state = state(pool.clone(), now, None);
    // The window ends with the bucket holding now: [10:66 - 10m, 10:76).
    let end = start() + Duration::minutes(76);
    let ask = Ask {
        from: end - Duration::minutes(10),
        to: end,
        granularity_s: None,
        group_by: &["country"],
        countries: None,
        stores: None,
    };
    let expected = fold(&all, &ask);
    let (status, body) = get(
        &state,
        "/v1/views/sales/rolling?window=10m&group_by=country",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(parse(&body["rows"], &["country"], false), expected);
    assert_eq!(
        body["window_end"],
        end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    let mut ranked: Vec<_> = expected.into_iter().collect();
    ranked.sort_by(|a, b| {
        // Largest sum first, keys without a sum last, then by key.
        b.1.1
            .is_some()
            .cmp(&a.1.1.is_some())
            .then(b.1.1.cmp(&a.1.1))
            .then(a.0.cmp(&b.0))
    });
    let (status, body) = get(
        &state,
        "/v1/views/sales/top?metric=sum_cents&k=2&window=10m&group_by=country",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let top: Vec<(String, Option<i64>)> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["country"].as_str().unwrap().to_string(),
                r["sum_cents"].as_i64(),
            )
        })
        .collect();
    let want: Vec<(String, Option<i64>)> = ranked
        .iter()
        .take(2)
        .map(|((k, _), t)| (k[0].clone(), t.1))
        .collect();
    assert_eq!(top, want);
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn the_catalog_lists_definitions_and_the_active_run(pool: PgPool) {
    store(&pool, &sales(), Some(3)).await;
    store_positions(&pool).await;
    let config = super::fixture::config();
    // Both definitions were first seen after records were consumed; only `sales` has a run.
    for view in &config.views {
        sqlx::query(
            "INSERT INTO braid_internal.view_definitions (view_name, fingerprint, needs_backfill) VALUES ($1, $2, true) \
             ON CONFLICT (view_name, fingerprint) DO UPDATE SET needs_backfill = true",
        )
            .bind(&view.name)
            .bind(&view.fingerprint)
            .execute(&pool)
            .await
            .unwrap();
    }
    let state = state(pool.clone(), start() + Duration::hours(2), None);
    let (status, body) = get(&state, "/v1/views").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let views = body["views"].as_array().unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!(views[0]["name"], "sales");
    assert_eq!(views[0]["batch"]["covered_epoch"], 3);
    assert_eq!(views[0]["averages"], serde_json::json!(["avg_cents"]));
    assert!(views[1]["batch"].is_null(), "no run of all_events");
    assert_eq!(views[0]["backfilling"], false, "sales has an active run");
    assert_eq!(views[1]["backfilling"], true, "all_events lacks history");
    assert_eq!(body["speed"]["newest_event_time"], "2026-03-01T12:00:00Z");
    assert_eq!(body["speed"]["event_lag_seconds"], 0.0);

    // A view without group fields answers one row per bucket.
    let (status, body) = get(
        &state,
        "/v1/views/all_events?from=2026-03-01T10:00:00Z&to=2026-03-01T12:00:00Z&granularity=2h",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["count"], 900, "{body}");
    assert_eq!(body["provenance"]["backfilling"], true);
    let (_, body) = get(
        &state,
        "/v1/views/sales?from=2026-03-01T10:00:00Z&to=2026-03-01T12:00:00Z",
    )
    .await;
    assert_eq!(body["provenance"]["backfilling"], false);
}
