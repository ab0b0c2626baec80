//! Test data over the merged read (for its own tests, and for its clients' with the feature
//! `fixture`): a small sales stream, stored as speed rows in three epochs and a batch run
//! covering the first two, and the fold over records that every answer is checked against.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use schemas::BraidConfig;
use schemas::pg_layout::ViewLayout;
use sqlx::PgPool;

pub const TOPIC: &str = "sales.events";

const CONFIG: &str = r#"
[kafka]
topic = "sales.events"

[schema]
event_time = "ts"

[[schema.fields]]
name = "ts"
type = "timestamp"

[[schema.fields]]
name = "country"
type = "string"

[[schema.fields]]
name = "store"
type = "i64"

[[schema.fields]]
name = "cents"
type = "i64"
required = false

[[views]]
name = "sales"
group_by = ["country", "store"]
bucket = "1m"
metrics = ["count", "sum(cents)", "min(cents)", "max(cents)", "count(cents)"]

[[views]]
name = "all_events"
bucket = "10s"
metrics = ["count"]
"#;

/// One record of the stream, with the epoch the speed layer counted it in.
#[derive(Debug, Clone)]
pub struct Sale {
    pub micros: i64,
    pub country: &'static str,
    pub store: i64,
    pub cents: Option<i64>,
    pub epoch: i64,
}

/// The start of the stream: 2026-03-01T10:00:00Z.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

/// 900 records over two hours, pseudo-random but fixed, spread over epochs 1 to 3.
pub fn sales() -> Vec<Sale> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    (0..900)
        .map(|i| {
            let micros = start().timestamp_micros() + (next() % 7_200_000_000) as i64;
            Sale {
                micros,
                country: ["DE", "FR", "US", "it's"][(next() % 4) as usize],
                store: (next() % 3) as i64,
                cents: (next() % 5 != 0).then(|| (next() % 10_000) as i64 - 500),
                epoch: 1 + (i % 3) as i64,
            }
        })
        .collect()
}

/// Config with the test views.
pub fn config() -> BraidConfig {
    BraidConfig::load_from(Some(("test.toml", CONFIG)), []).unwrap()
}

/// The metrics of a group: count, sum, min, max, and the count of records with cents.
pub type Totals = (i64, Option<i64>, Option<i64>, Option<i64>, i64);

/// Adds one record's cents to `totals`.
pub fn add(totals: &mut Totals, cents: Option<i64>) {
    totals.0 += 1;
    if let Some(c) = cents {
        totals.1 = Some(totals.1.unwrap_or(0) + c);
        totals.2 = Some(totals.2.map_or(c, |m| m.min(c)));
        totals.3 = Some(totals.3.map_or(c, |m| m.max(c)));
        totals.4 += 1;
    }
}

/// (country, store, bucket start in micros) -> totals, over `sales`.
fn fold_rows<'a>(sales: impl Iterator<Item = &'a Sale>) -> BTreeMap<(String, i64, i64), Totals> {
    let mut rows = BTreeMap::new();
    for sale in sales {
        let bucket = sale.micros.div_euclid(60_000_000) * 60_000_000;
        add(
            rows.entry((sale.country.to_string(), sale.store, bucket))
                .or_default(),
            sale.cents,
        );
    }
    rows
}

/// Stores `sales` as the layers would: speed rows per epoch for every epoch, and, when
/// `covered_epoch` is given, an active batch run holding the records of the earlier epochs.
/// Speed rows below the covered epoch are left in place: the merge must skip them.
pub async fn store(pool: &PgPool, sales: &[Sale], covered_epoch: Option<i64>) {
    let config = config();
    schemas::pg::ensure_view_tables(pool, &config.views)
        .await
        .unwrap();
    let sales_view = ViewLayout::of(&config.views[0]);
    let all_view = ViewLayout::of(&config.views[1]);
    for epoch in 1..=3 {
        let rows = fold_rows(sales.iter().filter(|s| s.epoch == epoch));
        insert(pool, &sales_view.speed_table, "epoch", epoch, &rows).await;
        let mut all: BTreeMap<i64, i64> = BTreeMap::new();
        for sale in sales.iter().filter(|s| s.epoch == epoch) {
            *all.entry(sale.micros.div_euclid(10_000_000) * 10_000_000)
                .or_default() += 1;
        }
        for (bucket, count) in all {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {} (epoch, bucket_start, count) VALUES ($1, $2, $3)",
                all_view.speed_table
            )))
            .bind(epoch)
            .bind(Utc.timestamp_micros(bucket).unwrap())
            .bind(count)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    // A superseded run whose rows must never show.
    let superseded = run(pool, &config.views[0], "superseded", 1).await;
    let noise = fold_rows(sales.iter().take(50));
    insert(pool, &sales_view.batch_table, "run_id", superseded, &noise).await;
    if let Some(covered) = covered_epoch {
        let active = run(pool, &config.views[0], "active", covered).await;
        let rows = fold_rows(sales.iter().filter(|s| s.epoch < covered));
        insert(pool, &sales_view.batch_table, "run_id", active, &rows).await;
    }
}

async fn run(pool: &PgPool, view: &schemas::View, status: &str, covered: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO braid_internal.batch_runs (view_name, fingerprint, status, cut_epoch, covered_epoch, delta_version, finished_at) \
         VALUES ($1, $2, $3, $4 - 1, $4, 7, now()) RETURNING run_id",
    )
    .bind(&view.name)
    .bind(&view.fingerprint)
    .bind(status)
    .bind(covered)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn insert(
    pool: &PgPool,
    table: &str,
    id_column: &str,
    id: i64,
    rows: &BTreeMap<(String, i64, i64), Totals>,
) {
    for ((country, store, bucket), t) in rows {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({id_column}, bucket_start, country, store, count, sum_cents, min_cents, max_cents, count_cents) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )))
        .bind(id)
        .bind(Utc.timestamp_micros(*bucket).unwrap())
        .bind(country)
        .bind(store)
        .bind(t.0)
        .bind(t.1)
        .bind(t.2)
        .bind(t.3)
        .bind(t.4)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// Positions stored for the topic, as the speed layer leaves them.
pub async fn store_positions(pool: &PgPool) {
    sqlx::query(
        "INSERT INTO braid_internal.speed_positions (topic, partition, next_offset, newest_event_time) \
         VALUES ($1, 0, 450, $2), ($1, 1, 450, $2)",
    )
    .bind(TOPIC)
    .bind(start() + chrono::Duration::hours(2))
    .execute(pool)
    .await
    .unwrap();
}
