//! Evaluations against a real PostgreSQL database per test (`#[sqlx::test]`): speed rows are
//! stored the way the speed layer stores them (one row per key, bucket and epoch), and what an
//! evaluation reads and writes is compared with an independent count over those rows.

mod attributes;
mod bench;
mod complete_buckets;
mod max_instances;

use chrono::{DateTime, Duration, TimeZone, Utc};
use schemas::BraidConfig;
use schemas::alert::{AlertRule, CompareOp};
use schemas::duration::HumanDuration;
use schemas::pg::leader::LeaderLock;
use schemas::pg_layout::ViewLayout;
use schemas::view::View;
use sqlx::PgPool;

use crate::evaluate::{RuleEvaluation, evaluate, record};

pub const TOPIC: &str = "alerts.events";

const CONFIG: &str = r#"
[kafka]
topic = "alerts.events"

[schema]
event_time = "ts"

[[schema.fields]]
name = "ts"
type = "timestamp"

[[schema.fields]]
name = "page"
type = "string"

[[views]]
name = "pages"
group_by = ["page"]
bucket = "10s"
metrics = ["count"]
"#;

/// The test view (`pages`: count per page, 10 s buckets), its tables created.
pub async fn view(pool: &PgPool) -> View {
    let config = BraidConfig::load_from(Some(("test.toml", CONFIG)), []).unwrap();
    schemas::pg::ensure_view_tables(pool, &config.views)
        .await
        .unwrap();
    config.views[0].clone()
}

/// A time on a bucket boundary, far from the Unix epoch.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

/// A rule on `pages`' count per page.
pub fn rule(op: CompareOp, threshold: f64, window_seconds: i64) -> AlertRule {
    AlertRule {
        name: "pages_rule".into(),
        view: "pages".into(),
        filters: vec![],
        metric: "count".into(),
        window: HumanDuration::from_seconds(window_seconds).unwrap(),
        op,
        threshold,
        for_seconds: 0,
        keep_firing_for_seconds: 0,
        group_by: vec![0],
        notify: vec![],
    }
}

/// Adds one speed row: `count` records of `page` in the bucket starting at `bucket`, counted in
/// `epoch`.
pub async fn add(
    pool: &PgPool,
    view: &View,
    epoch: i64,
    bucket: DateTime<Utc>,
    page: &str,
    count: i64,
) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} (epoch, bucket_start, page, count) VALUES ($1, $2, $3, $4)",
        ViewLayout::of(view).speed_table
    )))
    .bind(epoch)
    .bind(bucket)
    .bind(page)
    .bind(count)
    .execute(pool)
    .await
    .unwrap();
}

/// The evaluator's lock, as the active evaluator holds it.
pub async fn lead(pool: &PgPool) -> LeaderLock {
    LeaderLock::try_take(pool, crate::evaluator::EVALUATOR_LOCK)
        .await
        .unwrap()
        .expect("no other evaluator in a fresh database")
}

/// Evaluates `rule` at `now` and records the outcome.
pub async fn evaluate_and_record(
    pool: &PgPool,
    lock: &LeaderLock,
    view: &View,
    rule: &AlertRule,
    now: DateTime<Utc>,
    max_instances: u32,
) -> RuleEvaluation {
    let evaluation = evaluate(pool, view, TOPIC, rule, now, max_instances)
        .await
        .unwrap();
    record(pool, lock.backend_pid(), &evaluation, &[])
        .await
        .unwrap();
    evaluation
}

/// `seconds` after `t0`.
pub fn at(seconds: f64) -> DateTime<Utc> {
    t0() + Duration::microseconds((seconds * 1e6) as i64)
}
