//! Floats across the whole f64 range, subnormals included: what validation accepts stays
//! readable by every reader (the API's series, rollups, `rolling`, `top`, and `serving.<view>`),
//! and rows stored before validation refused tiny values do not make a view unreadable.
//! PostgreSQL raises an error where a float product or quotient of non-zero values rounds to
//! zero, so one such row would fail every read of its view until it aged out.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, TimeZone, Utc};
use schemas::BraidConfig;
use schemas::pg_layout::ViewLayout;
use serde_json::Value;
use sqlx::PgPool;

use super::fixture::{get, state_of};

const TOPIC: &str = "floats.events";

const CONFIG: &str = r#"
[kafka]
topic = "floats.events"
[schema]
event_time = "ts"
fields = [
  { name = "ts", type = "timestamp" },
  { name = "k", type = "string" },
  { name = "v", type = "f64", required = false },
  { name = "n", type = "i64", required = false },
]
[[views]]
name = "by_k"
group_by = ["k"]
bucket = "1m"
metrics = ["count", "sum(v)", "count(v)", "min(v)", "max(v)", "decayed(sum(n), 10m)"]
"#;

fn config() -> BraidConfig {
    BraidConfig::load_from(Some(("floats.toml", CONFIG)), []).unwrap()
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

/// One stored speed row of `by_k`: what the speed layer upserts for a key and bucket.
#[derive(Debug, Default, Clone)]
struct Row {
    count: i64,
    sum_v: Option<f64>,
    count_v: i64,
    min_v: Option<f64>,
    max_v: Option<f64>,
    decayed_sum_n: f64,
    /// Σ|v|, to bound the rounding of a float sum whatever the order of its additions.
    magnitude_v: f64,
}

impl Row {
    fn add(&mut self, v: Option<f64>, n: Option<i64>, weight: f64) {
        self.count += 1;
        if let Some(v) = v {
            self.sum_v = Some(self.sum_v.unwrap_or(0.0) + v);
            self.count_v += 1;
            self.min_v = Some(self.min_v.map_or(v, |m| m.min(v)));
            self.max_v = Some(self.max_v.map_or(v, |m| m.max(v)));
            self.magnitude_v += v.abs();
        }
        if let Some(n) = n {
            self.decayed_sum_n += n as f64 * weight;
        }
    }

    fn merge(&mut self, other: &Row) {
        self.count += other.count;
        self.sum_v = match (self.sum_v, other.sum_v) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.count_v += other.count_v;
        self.min_v = [self.min_v, other.min_v]
            .into_iter()
            .flatten()
            .reduce(f64::min);
        self.max_v = [self.max_v, other.max_v]
            .into_iter()
            .flatten()
            .reduce(f64::max);
        self.decayed_sum_n += other.decayed_sum_n;
        self.magnitude_v += other.magnitude_v;
    }
}

async fn insert(pool: &PgPool, epoch: i64, key: &str, bucket: i64, row: &Row) {
    let layout = ViewLayout::of(&config().views[0]);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} (epoch, bucket_start, k, count, sum_v, count_v, min_v, max_v, decayed_sum_n) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        layout.speed_table
    )))
    .bind(epoch)
    .bind(Utc.timestamp_micros(bucket).unwrap())
    .bind(key)
    .bind(row.count)
    .bind(row.sum_v)
    .bind(row.count_v)
    .bind(row.min_v)
    .bind(row.max_v)
    .bind(row.decayed_sum_n)
    .execute(pool)
    .await
    .unwrap();
}

async fn prepare(pool: &PgPool) -> BraidConfig {
    let config = config();
    schemas::pg::ensure_view_tables(pool, &config.views)
        .await
        .unwrap();
    crate::sql::install(pool, &config.views, &config.serving, None)
        .await
        .unwrap();
    config
}

/// Every read of the view answers: the series, a rollup, `rolling`, `top` by the decayed score,
/// and `serving.by_k`. Returns the series' rows.
async fn read_everything(pool: &PgPool, config: &BraidConfig, now: DateTime<Utc>) -> Vec<Value> {
    let state = state_of(config, TOPIC, pool.clone(), now, None);
    let range = format!(
        "from={}&to={}",
        start().to_rfc3339().replace('+', "%2B"),
        (start() + Duration::hours(1))
            .to_rfc3339()
            .replace('+', "%2B")
    );
    let mut series = Vec::new();
    for uri in [
        format!("/v1/views/by_k?{range}&group_by=k"),
        format!("/v1/views/by_k?{range}&granularity=3600s"),
        "/v1/views/by_k/rolling?window=1h&group_by=k".to_string(),
        "/v1/views/by_k/top?metric=decayed_sum_n&k=3&window=1h&group_by=k".to_string(),
        "/v1/views/by_k/top?metric=avg_v&k=3&window=1h&group_by=k".to_string(),
    ] {
        let (status, body) = get(&state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        if series.is_empty() {
            series = body["rows"].as_array().unwrap().clone();
        }
    }
    let bi: Vec<(String, Option<f64>, Option<f64>)> =
        sqlx::query_as("SELECT k, avg_v, decayed_sum_n FROM serving.by_k")
            .fetch_all(pool)
            .await
            .expect("serving.by_k is readable");
    assert!(!bi.is_empty());
    series
}

/// The issue's reproduction, stored as an older version of the layers stored it: three records
/// with v = 5e-324, 0, 0 in one key and minute (a sum of 5e-324 over a count of 3 underflows),
/// and a decayed score of 5e-324 (which underflows when decayed).
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn rows_with_subnormal_values_stored_by_older_versions_stay_readable(pool: PgPool) {
    let config = prepare(&pool).await;
    let row = Row {
        count: 3,
        sum_v: Some(5e-324),
        count_v: 3,
        min_v: Some(0.0),
        max_v: Some(5e-324),
        decayed_sum_n: 5e-324,
        magnitude_v: 5e-324,
    };
    insert(&pool, 1, "a", start().timestamp_micros(), &row).await;
    let rows = read_everything(&pool, &config, start() + Duration::minutes(30)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["count_v"], 3);
    assert_eq!(rows[0]["max_v"].as_f64(), Some(5e-324));
    // A sum below 1e-300 averages as 0 (it differs from the true average by less than 1e-300).
    assert_eq!(rows[0]["avg_v"].as_f64(), Some(0.0));
}

/// A tiny xorshift generator: the test's values are the same on every run.
struct Bits(u64);

impl Bits {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Values over the whole f64 range (random bit patterns: every exponent alike, subnormals
/// included), the bounds and their neighbours, validated as the layers validate them; what is
/// accepted is stored in two epochs and every read answers, equal to a fold of the records.
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn floats_across_the_whole_range_are_refused_or_readable_by_every_reader(pool: PgPool) {
    let config = prepare(&pool).await;
    let mut bits = Bits(0x2545_f491_4f6c_dd1d);
    let mut values: Vec<f64> = vec![
        5e-324,
        -5e-324,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        f64::from_bits(0x000f_ffff_ffff_ffff), // the largest subnormal
        1e-300,
        f64::from_bits(1e-200f64.to_bits() - 1), // the largest below 1e-200
        1e-200,
        -1e-200,
        f64::from_bits(1e-200f64.to_bits() + 1),
        0.0,
        -0.0,
        1.0,
        f64::from_bits(1e200f64.to_bits() - 1), // the largest below 1e200
        -f64::from_bits(1e200f64.to_bits() - 1),
        1e200,
        1e308,
        f64::MAX,
        f64::MIN,
    ];
    while values.len() < 600 {
        let v = f64::from_bits(bits.next());
        if v.is_finite() {
            values.push(v);
        }
    }
    let now = start() + Duration::minutes(30);
    let half_life = 600_000_000;
    let mut stored: BTreeMap<(i64, String, i64), Row> = BTreeMap::new();
    let mut accepted = 0;
    for (i, v) in values.iter().enumerate() {
        let key = ["a", "b", "c"][i % 3];
        let micros = start().timestamp_micros() + (bits.next() % 1_800_000_000) as i64;
        let n = match bits.next() % 4 {
            0 => i64::MAX,
            1 => i64::MIN,
            2 => (bits.next() % 2001) as i64 - 1000,
            _ => 0,
        };
        let time = Utc.timestamp_micros(micros).unwrap().to_rfc3339();
        let payload = format!(
            r#"{{"ts":"{time}","k":"{key}","v":{},"n":{n}}}"#,
            serde_json::to_string(v).unwrap()
        );
        // The rule, stated independently of the validator: 0, or a magnitude in [1e-200, 1e200).
        let storable = *v == 0.0 || (v.abs() >= 1e-200 && v.abs() < 1e200);
        match config.schema.validate(payload.as_bytes()) {
            Ok(record) => {
                assert!(storable, "{v:e} was accepted");
                accepted += 1;
                let Some(schemas::Value::F64(v)) = record.get(2).cloned() else {
                    panic!("{payload}: v is read back")
                };
                let bucket = micros.div_euclid(60_000_000) * 60_000_000;
                let weight = schemas::view::Metric::decay_weight(half_life, micros, bucket);
                let epoch = 1 + (i % 2) as i64;
                stored
                    .entry((epoch, key.to_string(), bucket))
                    .or_default()
                    .add(Some(v), Some(n), weight);
            }
            Err(rejection) => {
                assert!(!storable, "{v:e} was refused: {rejection}");
                assert_eq!(rejection.code(), "number_out_of_range", "{v:e}");
            }
        }
    }
    assert!(accepted > 50, "the generator gives storable values too");
    let mut expected: BTreeMap<(String, i64), Row> = BTreeMap::new();
    for ((epoch, key, bucket), row) in &stored {
        insert(&pool, *epoch, key, *bucket, row).await;
        expected
            .entry((key.clone(), *bucket))
            .or_default()
            .merge(row);
    }

    let rows = read_everything(&pool, &config, now).await;
    assert_eq!(rows.len(), expected.len());
    for row in rows {
        let key = row["k"].as_str().unwrap().to_string();
        let bucket = DateTime::parse_from_rfc3339(row["bucket_start"].as_str().unwrap())
            .unwrap()
            .timestamp_micros();
        let want = &expected[&(key, bucket)];
        assert_eq!(row["count"], want.count, "{row}");
        assert_eq!(row["count_v"], want.count_v, "{row}");
        assert_eq!(row["min_v"].as_f64(), want.min_v, "{row}");
        assert_eq!(row["max_v"].as_f64(), want.max_v, "{row}");
        // Float sums depend on the order of their additions: within n·ε·Σ|v| of the fold.
        let bound = 1e-12 * want.magnitude_v;
        let sum = row["sum_v"].as_f64().unwrap();
        assert!(
            (sum - want.sum_v.unwrap()).abs() <= bound,
            "{row}: {want:?}"
        );
        let avg = row["avg_v"].as_f64().unwrap();
        let want_avg = want.sum_v.unwrap() / want.count_v as f64;
        assert!(
            (avg - want_avg).abs() <= bound / want.count_v as f64 + f64::MIN_POSITIVE,
            "{row}: {want:?}"
        );
    }
}
