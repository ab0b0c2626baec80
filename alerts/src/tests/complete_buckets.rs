//! Item 9 of issue 35: an `lt` rule over a window of one bucket on a steady stream. Alerts
//! compare complete buckets only, so the value is the same all through a bucket and the rule
//! never fires at a bucket boundary.

use crate::store::AlertState;
use schemas::alert::CompareOp;
use sqlx::PgPool;

use super::*;

/// A record every half second of page `/steady` from `t0`: 20 per 10-second bucket.
const EVERY: f64 = 0.5;

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn an_lt_rule_on_steady_traffic_never_fires_across_bucket_boundaries(pool: PgPool) {
    let view = view(&pool).await;
    let bucket = view.bucket.seconds() as f64;
    let per_bucket = (bucket / EVERY) as i64;
    // Holds only when a bucket has fewer records than a steady bucket has.
    let rule = rule(CompareOp::Lt, per_bucket as f64, view.bucket.seconds());
    let lock = lead(&pool).await;
    // The speed layer flushes, then the evaluator runs, at times on, just after and between
    // bucket boundaries, over five buckets.
    let mut times: Vec<f64> = (0..20)
        .map(|k| 10.0 + k as f64 * 2.5)
        .chain([20.001, 30.2, 40.9])
        .collect();
    times.sort_by(f64::total_cmp);
    let mut records: Vec<f64> = Vec::new();
    let mut sent_until = 0.0;
    let mut seen = Vec::new();
    for (epoch, &now) in times.iter().enumerate() {
        // The records produced since the last flush (event time before now), as a new epoch's
        // speed rows, one per bucket.
        let mut flushed: std::collections::BTreeMap<i64, i64> = Default::default();
        let mut t = sent_until;
        while t < now {
            records.push(t);
            *flushed.entry((t / bucket).floor() as i64).or_default() += 1;
            t += EVERY;
        }
        sent_until = t;
        for (b, count) in flushed {
            add(
                &pool,
                &view,
                epoch as i64 + 1,
                at(b as f64 * bucket),
                "/steady",
                count,
            )
            .await;
        }
        let evaluation = evaluate_and_record(&pool, &lock, &view, &rule, at(now), 100).await;
        // The independent count: the records in the window the evaluation reports.
        let (start, end) = (evaluation.record.window_start, evaluation.record.window_end);
        let expected = records
            .iter()
            .filter(|&&r| (start..end).contains(&at(r)))
            .count() as f64;
        seen.push((now, start, end, evaluation.instances, expected));
    }
    let transitions: Vec<(String, String, Option<f64>)> = sqlx::query_as(
        "SELECT to_state, window_end::text, value FROM braid_internal.alert_transitions ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(transitions, [], "an lt rule fired on a steady stream");
    for (now, start, end, instances, expected) in seen {
        assert!(
            end <= at(now),
            "at {now} s the window ends at {end}, after now"
        );
        assert_eq!(
            instances.iter().map(|i| i.value).collect::<Vec<_>>(),
            [Some(expected)],
            "at {now} s over [{start}, {end})"
        );
        assert_eq!(
            expected, per_bucket as f64,
            "a complete bucket of the steady stream"
        );
        assert!(instances.iter().all(|i| i.after == AlertState::Inactive));
    }
}
