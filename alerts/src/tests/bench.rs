//! Evaluation latency with 100,000 resolved instances stored for the rule (docs/benchmarks.md):
//! `cargo test -p alerts --release evaluation_latency -- --ignored --nocapture`. It prints the
//! figures; it asserts nothing about time.

use std::time::Instant;

use schemas::alert::CompareOp;
use sqlx::PgPool;

use super::*;

const RESOLVED: i64 = 100_000;
const LIVE_KEYS: usize = 50;
const ROUNDS: usize = 30;

#[ignore = "a measurement: run it by name with --ignored --nocapture"]
#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn evaluation_latency_with_100k_resolved_instances(pool: PgPool) {
    let view = view(&pool).await;
    let rule = rule(CompareOp::Gt, 5.0, 60);
    sqlx::query(
        "INSERT INTO braid_internal.alert_instances \
           (fingerprint, rule, labels, state, value, active_since, last_true_at, evaluated_at) \
         SELECT 'old' || i, $1, jsonb_build_object('page', '/old/' || i), 'resolved', 1, NULL, $2, $2 \
         FROM generate_series(1, $3) AS i",
    )
    .bind(&rule.name)
    .bind(t0() - Duration::days(1))
    .bind(RESOLVED)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE braid_internal.alert_instances")
        .execute(&pool)
        .await
        .unwrap();
    for key in 0..LIVE_KEYS {
        // Half the keys breach (10 > 5), half do not (1).
        let count = if key % 2 == 0 { 10 } else { 1 };
        add(&pool, &view, 1, t0(), &format!("/live/{key:03}"), count).await;
    }
    let lock = lead(&pool).await;
    let mut times = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let now = at(30.0 + round as f64);
        let started = Instant::now();
        evaluate_and_record(&pool, &lock, &view, &rule, now, 10_000).await;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "evaluation latency, {RESOLVED} resolved instances, {LIVE_KEYS} keys in the window, {ROUNDS} rounds: \
         median {:.1} ms, mean {mean:.1} ms, min {:.1} ms, max {:.1} ms",
        times[ROUNDS / 2],
        times[0],
        times[ROUNDS - 1]
    );
}
