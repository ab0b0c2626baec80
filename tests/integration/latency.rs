//! The test's own answer for the demo view `page_latency` (count, `quantile(duration_ms)`,
//! `sample(5)` per page and minute), folded from the records read back from Kafka, and its
//! comparison with the merged rows (active batch run ⊕ speed rows at or above its covered
//! epoch): the count and the sketch's count exactly (a lost or doubled record shows), every
//! quantile within the relative accuracy of an exact sort, and the sample exactly the records
//! with the five smallest position hashes.

use std::collections::BTreeMap;

use schemas::quantile::QuantileSketch;
use schemas::sample::position_hash;
use serde_json::Value;
use sqlx::PgConnection;

use crate::oracle::{RawMessage, bucket, event_time, int, refusal, text};

/// The relative accuracy `quantile(duration_ms)` declares (the default).
pub const ACCURACY: f64 = schemas::quantile::DEFAULT_ACCURACY;
/// The records `sample(5)` keeps per page and minute.
pub const K: usize = 5;
/// The levels every comparison checks.
pub const LEVELS: [f64; 9] = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0];

/// One page minute as the records give it.
#[derive(Debug, Default, Clone)]
pub struct Cell {
    /// Page views.
    pub count: i64,
    /// Their durations (those that have one), sorted.
    pub durations: Vec<i64>,
    /// Every page view.
    pub records: Vec<PageView>,
}

/// One page view: where it is in Kafka, and what a sample keeps of it that the test checks.
#[derive(Debug, Clone)]
pub struct PageView {
    /// The hash of its position.
    pub hash: i64,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its page.
    pub page: Option<String>,
    /// Its duration, if any.
    pub duration: Option<i64>,
}

impl Cell {
    /// The exact `q`-quantile: the value at rank ⌊q·(n−1)⌋ of the sorted durations.
    pub fn exact(&self, q: f64) -> Option<f64> {
        let n = self.durations.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * (n - 1) as f64).floor() as usize).min(n - 1);
        Some(self.durations[rank] as f64)
    }

    /// The positions a sample of K keeps: the K smallest (hash, partition, offset).
    pub fn sampled(&self) -> Vec<(i32, i64)> {
        let mut records = self.records.clone();
        records.sort_by_key(|r| (r.hash, r.partition, r.offset));
        records
            .iter()
            .take(K)
            .map(|r| (r.partition, r.offset))
            .collect()
    }
}

/// Key: (page, bucket start in µs).
pub type Key = (Option<String>, i64);

/// `page_latency` folded from the valid `messages`.
pub fn page_latency<'a>(messages: impl IntoIterator<Item = &'a RawMessage>) -> BTreeMap<Key, Cell> {
    let mut cells: BTreeMap<Key, Cell> = BTreeMap::new();
    for message in messages {
        if refusal(&message.payload).is_some() {
            continue;
        }
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        let o = value.as_object().unwrap();
        if text(o, "event_type").as_deref() != Some("page_view") {
            continue;
        }
        let ts = event_time(&o["ts"]).unwrap();
        let page = text(o, "page");
        let duration = int(o, "duration_ms").map(|d| i64::try_from(d).unwrap());
        let cell = cells.entry((page.clone(), bucket(ts, 60))).or_default();
        cell.count += 1;
        cell.durations.extend(duration);
        cell.records.push(PageView {
            hash: position_hash(message.partition, message.offset),
            partition: message.partition,
            offset: message.offset,
            page,
            duration,
        });
    }
    for cell in cells.values_mut() {
        cell.durations.sort_unstable();
    }
    cells
}

/// Whether `answered` is within the relative accuracy of `exact` (a float's last bit aside).
pub fn within_accuracy(answered: f64, exact: f64) -> bool {
    (answered - exact).abs() <= ACCURACY * exact.abs() * (1.0 + 1e-9)
}

/// Compares the merged `page_latency` rows with the fold of `messages`; returns what differs
/// (at most a few lines of it).
pub async fn latency_sketches_match(
    connection: &mut PgConnection,
    messages: &[RawMessage],
) -> Result<(), String> {
    let config =
        schemas::BraidConfig::load(Some(&crate::support::repo_root().join("braid.toml"))).unwrap();
    let view = config
        .views
        .iter()
        .find(|v| v.name == "page_latency")
        .expect("the demo view page_latency");
    let layout = schemas::pg_layout::ViewLayout::of(view);
    let sql = format!(
        "WITH active AS (SELECT run_id, covered_epoch FROM braid_internal.batch_runs \
                         WHERE view_name = $1 AND fingerprint = $2 AND status = 'active') \
         SELECT page, (extract(epoch FROM bucket_start) * 1000000)::bigint, sum(count)::bigint, \
                serving.quantile_union_agg(quantile_duration_ms), \
                serving.sample_union_agg(sample)::text \
         FROM ( \
             SELECT page, bucket_start, count, quantile_duration_ms, sample FROM {batch} \
               WHERE run_id = (SELECT run_id FROM active) \
             UNION ALL \
             SELECT page, bucket_start, count, quantile_duration_ms, sample FROM {speed} \
               WHERE epoch >= coalesce((SELECT covered_epoch FROM active), 0) \
         ) AS r GROUP BY 1, 2",
        batch = layout.batch_table,
        speed = layout.speed_table,
    );
    type Row = (Option<String>, i64, i64, Option<Vec<i64>>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&view.name)
        .bind(&view.fingerprint)
        .fetch_all(&mut *connection)
        .await
        .unwrap();
    let expected = page_latency(messages);
    let mut problems: Vec<String> = Vec::new();
    if rows.len() != expected.len() {
        problems.push(format!(
            "{} page minutes merged, {} in the records",
            rows.len(),
            expected.len()
        ));
    }
    for (page, bucket_start, count, sketch, sample) in rows {
        let key = (page, bucket_start);
        let Some(cell) = expected.get(&key) else {
            problems.push(format!("{key:?} is not in the records"));
            continue;
        };
        if let Err(problem) = compare_cell(cell, count, sketch.as_deref(), sample.as_deref()) {
            problems.push(format!("{key:?}: {problem}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(5);
        Err(format!("page_latency: {}", problems.join("; ")))
    }
}

/// One merged page minute against the records' fold.
pub fn compare_cell(
    cell: &Cell,
    count: i64,
    sketch: Option<&[i64]>,
    sample: Option<&str>,
) -> Result<(), String> {
    if count != cell.count {
        return Err(format!("count {count}, the records have {}", cell.count));
    }
    match sketch {
        None if cell.durations.is_empty() => {}
        None => return Err("no quantile sketch".into()),
        Some(array) => {
            let sketch = QuantileSketch::from_array(array).map_err(|e| e.to_string())?;
            if sketch.count() != cell.durations.len() as u128 {
                return Err(format!(
                    "the sketch counts {} durations, the records have {}",
                    sketch.count(),
                    cell.durations.len()
                ));
            }
            for q in LEVELS {
                let (answered, exact) = (sketch.quantile(q).unwrap(), cell.exact(q).unwrap());
                if !within_accuracy(answered, exact) {
                    return Err(format!(
                        "quantile {q}: {answered}, the exact value is {exact}"
                    ));
                }
            }
        }
    }
    let sample: Value = serde_json::from_str(sample.ok_or("no sample")?).unwrap();
    let kept: Vec<(i32, i64)> = sample["records"]
        .as_array()
        .ok_or("a sample without records")?
        .iter()
        .map(|r| (r["p"].as_i64().unwrap() as i32, r["o"].as_i64().unwrap()))
        .collect();
    if kept != cell.sampled() {
        return Err(format!(
            "the sample keeps {kept:?}, the {K} smallest position hashes are {:?}",
            cell.sampled()
        ));
    }
    // The kept records' fields are the records' own.
    for record in sample["records"].as_array().unwrap() {
        let (p, o) = (record["p"].as_i64().unwrap(), record["o"].as_i64().unwrap());
        let PageView { page, duration, .. } = cell
            .records
            .iter()
            .find(|r| i64::from(r.partition) == p && r.offset == o)
            .unwrap();
        let fields = &record["f"];
        if fields.is_null() {
            // Omitted: its fields were larger than the bound (`n` says how large).
            if record["n"].as_u64().unwrap_or(0) <= sample["b"].as_u64().unwrap_or(u64::MAX) {
                return Err(format!(
                    "the record at {p}/{o} is omitted though it fits: {record}"
                ));
            }
            continue;
        }
        if fields["page"].as_str() != page.as_deref() || fields["duration_ms"].as_i64() != *duration
        {
            return Err(format!(
                "the record at {p}/{o} is kept as {fields}, not page {page:?} and duration {duration:?}"
            ));
        }
    }
    Ok(())
}
