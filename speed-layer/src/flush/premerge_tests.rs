//! The quantile and sample rows the writer merges in Rust (`writer::Premerge`): flushed in
//! several micro-batches, each stored row equals the row of one micro-batch holding every
//! record (no merge at all), and equals what PostgreSQL's own unions make of the same parts.

use std::collections::BTreeMap;

use schemas::pg_layout::ViewLayout;
use schemas::validation_rules::ValidationRules;
use sqlx::PgPool;

use super::{ViewWriter, flush};
use crate::aggregate::{MicroBatch, SketchState};
use crate::error::SpeedError;

fn config() -> schemas::BraidConfig {
    schemas::BraidConfig::load_from(
        Some(("braid.toml", include_str!("../../../braid.toml"))),
        [],
    )
    .unwrap()
}

/// Page view `i`: one of three pages, in one of two minutes, with a duration spread over six
/// orders of magnitude (zero included), so the sketches hold many buckets.
fn page_view(i: i64) -> String {
    let duration = match i % 7 {
        0 => 0,
        k => (i * 7919 % 1_000) * 10_i64.pow(k as u32 % 6),
    };
    format!(
        r#"{{"event_id":"e{i}","ts":"2026-01-01T00:0{}:{:02}Z","event_type":"page_view","user_id":"u{i}","page":"/p{}","country":"US","device":"mobile","duration_ms":{duration}}}"#,
        i % 2,
        i % 60,
        i % 3
    )
}

fn batch_of(config: &schemas::BraidConfig, offsets: std::ops::Range<i64>) -> MicroBatch {
    let mut batch = MicroBatch::new(&config.views, &config.schema);
    add_records(config, &mut batch, 0, offsets);
    batch
}

/// Adds page views `offsets` of `partition` (the same records on every partition; a sample
/// ranks them by position, so each partition's are different records to it).
fn add_records(
    config: &schemas::BraidConfig,
    batch: &mut MicroBatch,
    partition: i32,
    offsets: std::ops::Range<i64>,
) {
    for offset in offsets {
        let record = config
            .schema
            .validate(page_view(offset).as_bytes())
            .unwrap();
        batch.add_record(partition, offset, &record);
    }
}

/// A stored page_latency row: page, bucket (µs), count, quantile sketch, sample.
type StoredRow = (
    String,
    i64,
    i64,
    Vec<i64>,
    sqlx::types::Json<serde_json::Value>,
);

fn latency_index(config: &schemas::BraidConfig) -> usize {
    config
        .views
        .iter()
        .position(|v| v.name == "page_latency")
        .expect("the demo config has page_latency")
}

/// Every stored row of page_latency: (page, bucket) → (count, quantile sketch, sample).
async fn stored_rows(
    pool: &PgPool,
    config: &schemas::BraidConfig,
) -> BTreeMap<(String, i64), (i64, Vec<i64>, serde_json::Value)> {
    let table = ViewLayout::of(&config.views[latency_index(config)]).speed_table;
    let rows: Vec<StoredRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT page, (extract(epoch FROM bucket_start) * 1000000)::bigint, count, \
             quantile_duration_ms, sample FROM {table}"
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(page, bucket, count, q, s)| ((page, bucket), (count, q, s.0)))
        .collect()
}

/// What one micro-batch of every record holds per row, in the stored forms.
fn folded_rows(
    config: &schemas::BraidConfig,
    all: &MicroBatch,
) -> BTreeMap<(String, i64), (i64, Vec<i64>, serde_json::Value)> {
    let deltas = &all.views[latency_index(config)];
    deltas
        .groups
        .iter()
        .map(|((key, bucket), values)| {
            let page = match &key[0] {
                Some(crate::aggregate::KeyValue::String(page)) => page.clone(),
                other => panic!("{other:?}"),
            };
            let count = match values[0] {
                crate::aggregate::MetricValue::Int(Some(n)) => n,
                other => panic!("{other:?}"),
            };
            let sketch = |at: usize| match values[at] {
                crate::aggregate::MetricValue::Sketch(Some(i)) => &deltas.sketches[i as usize],
                other => panic!("{other:?}"),
            };
            let SketchState::Quantile(q) = sketch(1) else {
                panic!("a quantile sketch")
            };
            let SketchState::Sample(s) = sketch(2) else {
                panic!("a sample")
            };
            ((page, *bucket), (count, q.to_array(), s.to_json()))
        })
        .collect()
}

async fn set_up(pool: &PgPool, config: &schemas::BraidConfig) -> Vec<ViewWriter> {
    schemas::pg::ensure_view_tables(pool, &config.views)
        .await
        .unwrap();
    schemas::pg::store_start_if_absent(pool, "t", 0, 0)
        .await
        .unwrap();
    config.views.iter().map(ViewWriter::new).collect()
}

/// Flushes page views `offsets` of partition 0 as one micro-batch, from `offsets.start`.
async fn flush_range(
    pool: &PgPool,
    config: &schemas::BraidConfig,
    writers: &[ViewWriter],
    offsets: std::ops::Range<i64>,
) {
    let rules = ValidationRules::of(&config.schema);
    let from = BTreeMap::from([(0, offsets.start)]);
    flush(
        pool,
        "t",
        &rules,
        writers,
        &batch_of(config, offsets),
        &from,
    )
    .await
    .unwrap();
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn rows_merged_in_rust_across_flushes_equal_one_batch_of_every_record(pool: PgPool) {
    let config = config();
    let writers = set_up(&pool, &config).await;
    // Four flushes over the same six rows, of uneven sizes: every row is stored by the first and
    // merged by the later ones.
    let cuts = [0, 40, 41, 300, 900];
    for window in cuts.windows(2) {
        flush_range(&pool, &config, &writers, window[0]..window[1]).await;
    }
    let stored = stored_rows(&pool, &config).await;
    let expected = folded_rows(&config, &batch_of(&config, 0..900));
    assert_eq!(stored.len(), 6, "three pages in two minutes");
    assert_eq!(stored, expected);
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn the_rust_merge_equals_postgresqls_unions_of_the_same_parts(pool: PgPool) {
    let config = config();
    let writers = set_up(&pool, &config).await;
    let (first, second) = (0..200, 200..500);
    flush_range(&pool, &config, &writers, first.clone()).await;
    flush_range(&pool, &config, &writers, second.clone()).await;
    let stored = stored_rows(&pool, &config).await;
    let (parts_a, parts_b) = (
        folded_rows(&config, &batch_of(&config, first)),
        folded_rows(&config, &batch_of(&config, second)),
    );
    for (key, (count, quantile, sample)) in &stored {
        let (a, b) = (&parts_a[key], &parts_b[key]);
        let (union_q, union_s): (Vec<i64>, sqlx::types::Json<serde_json::Value>) = sqlx::query_as(
            "SELECT serving.quantile_union($1, $2), serving.sample_union($3::jsonb, $4::jsonb)",
        )
        .bind(&a.1)
        .bind(&b.1)
        .bind(sqlx::types::Json(&a.2))
        .bind(sqlx::types::Json(&b.2))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(*count, a.0 + b.0, "{key:?}");
        assert_eq!(quantile, &union_q, "{key:?}");
        assert_eq!(sample, &union_s.0, "{key:?}");
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_stored_sketch_the_writer_cannot_read_is_refused_by_the_sql_union_as_before(
    pool: PgPool,
) {
    let config = config();
    let writers = set_up(&pool, &config).await;
    let rules = ValidationRules::of(&config.schema);
    flush_range(&pool, &config, &writers, 0..10).await;
    let table = ViewLayout::of(&config.views[latency_index(&config)]).speed_table;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET quantile_duration_ms = '{{1,6,999,0,0,0}}'"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let refused = flush(
        &pool,
        "t",
        &rules,
        &writers,
        &batch_of(&config, 10..20),
        &BTreeMap::from([(0, 10)]),
    )
    .await
    .unwrap_err();
    match &refused {
        SpeedError::Database(e) => assert!(e.to_string().contains("different settings"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        schemas::pg::load_positions(&pool, "t").await.unwrap()[&0],
        10,
        "nothing of the refused flush was committed"
    );
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn two_processes_flushing_the_same_rows_at_once_lose_nothing(pool: PgPool) {
    let config = config();
    let writers = set_up(&pool, &config).await;
    schemas::pg::store_start_if_absent(&pool, "t", 1, 0)
        .await
        .unwrap();
    let rules = ValidationRules::of(&config.schema);
    // Two speed processes, one per partition, flushing the same six rows in the same instant,
    // five times: each flush reads, merges and rewrites rows the other may have just written.
    let cuts = [0, 50, 120, 300, 310, 600];
    for window in cuts.windows(2) {
        let mut mine = MicroBatch::new(&config.views, &config.schema);
        let mut theirs = MicroBatch::new(&config.views, &config.schema);
        add_records(&config, &mut mine, 0, window[0]..window[1]);
        add_records(&config, &mut theirs, 1, window[0]..window[1]);
        let (from_mine, from_theirs) = (
            BTreeMap::from([(0, window[0])]),
            BTreeMap::from([(1, window[0])]),
        );
        let (a, b) = tokio::join!(
            flush(&pool, "t", &rules, &writers, &mine, &from_mine),
            flush(&pool, "t", &rules, &writers, &theirs, &from_theirs),
        );
        a.unwrap();
        b.unwrap();
    }
    let mut all = MicroBatch::new(&config.views, &config.schema);
    add_records(&config, &mut all, 0, 0..600);
    add_records(&config, &mut all, 1, 0..600);
    let stored = stored_rows(&pool, &config).await;
    assert_eq!(stored.len(), 6, "three pages in two minutes");
    assert_eq!(stored, folded_rows(&config, &all));
}

/// Runs `sql` on page_latency's row of `key` (`$1` page, `$2` bucket in µs).
fn on_row(table: &str, set: &str) -> String {
    format!(
        "UPDATE {table} SET {set} WHERE page = $1 AND bucket_start = to_timestamp($2::double precision / 1000000)"
    )
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn rows_left_to_the_upsert_between_rows_updated_by_tuple_id_keep_every_key_its_own(
    pool: PgPool,
) {
    let config = config();
    let writers = set_up(&pool, &config).await;
    flush_range(&pool, &config, &writers, 0..300).await;
    let table = ViewLayout::of(&config.views[latency_index(&config)]).speed_table;
    let keys: Vec<(String, i64)> = stored_rows(&pool, &config).await.keys().cloned().collect();
    assert_eq!(keys.len(), 6);
    // The second and fifth rows' samples no longer decode in Rust (a record's hash is not its
    // position's) but PostgreSQL's union still takes them: they go through the upsert, the
    // four others are updated by tuple id around them.
    for tampered in [&keys[1], &keys[4]] {
        sqlx::query(sqlx::AssertSqlSafe(on_row(
            &table,
            "sample = jsonb_set(sample, '{records,0,h}', to_jsonb((sample->'records'->0->>'h')::bigint + 1))",
        )))
        .bind(&tampered.0)
        .bind(tampered.1)
        .execute(&pool)
        .await
        .unwrap();
    }
    flush_range(&pool, &config, &writers, 300..600).await;
    let stored = stored_rows(&pool, &config).await;
    let expected = folded_rows(&config, &batch_of(&config, 0..600));
    for (i, key) in keys.iter().enumerate() {
        let (count, quantile, sample) = &stored[key];
        assert_eq!(*count, expected[key].0, "{key:?}");
        assert_eq!(quantile, &expected[key].1, "{key:?}");
        if i != 1 && i != 4 {
            assert_eq!(sample, &expected[key].2, "{key:?}");
        }
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_row_another_transaction_updates_while_the_flush_waits_is_merged_in_its_new_version(
    pool: PgPool,
) {
    let config = config();
    let writers = set_up(&pool, &config).await;
    flush_range(&pool, &config, &writers, 0..300).await;
    let table = ViewLayout::of(&config.views[latency_index(&config)]).speed_table;
    let key = stored_rows(&pool, &config)
        .await
        .keys()
        .nth(2)
        .unwrap()
        .clone();
    // Another transaction moves the row to a new version and holds it.
    let mut other = pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(on_row(&table, "count = count + 1000")))
        .bind(&key.0)
        .bind(key.1)
        .execute(&mut *other)
        .await
        .unwrap();
    let flushing = {
        let (pool, writers, config) = (pool.clone(), writers.clone(), config.clone());
        tokio::spawn(async move { flush_range(&pool, &config, &writers, 300..600).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(!flushing.is_finished(), "the flush waits for the held row");
        assert!(
            std::time::Instant::now() < deadline,
            "the flush never waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    other.commit().await.unwrap();
    flushing.await.unwrap();
    let stored = stored_rows(&pool, &config).await;
    let expected = folded_rows(&config, &batch_of(&config, 0..600));
    for (k, (count, quantile, sample)) in &stored {
        let extra = if *k == key { 1000 } else { 0 };
        assert_eq!(*count, expected[k].0 + extra, "{k:?}");
        assert_eq!(quantile, &expected[k].1, "{k:?}");
        assert_eq!(sample, &expected[k].2, "{k:?}");
    }
}
