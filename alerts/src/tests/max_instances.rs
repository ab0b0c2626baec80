//! Item 6 of issue 35: more keys than `alerting.max_instances`. The keys nearest to holding
//! are read first, so a key that sorts past the page in label order still fires, and a firing
//! instance outside the page is evaluated on its own value, never resolved for want of it.
//! Keys left out are said in a metric and a warning.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::store::AlertState;
use schemas::alert::{CompareOp, Labels};
use sqlx::PgPool;

use super::*;
use crate::evaluator::report_left_out;

const MAX: u32 = 3;

/// Stored states by page.
async fn states(pool: &PgPool) -> BTreeMap<String, (AlertState, Option<f64>)> {
    crate::store::instances(pool, None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| {
            let labels: Labels = serde_json::from_str(&i.labels).unwrap();
            (
                labels["page"].as_str().unwrap().to_string(),
                (i.state, i.value),
            )
        })
        .collect()
}

/// The pages the test's own fold says hold (`count > threshold`) among `counts`.
fn holding(counts: &[(&str, i64)], threshold: f64) -> Vec<String> {
    counts
        .iter()
        .filter(|(_, c)| *c as f64 > threshold)
        .map(|(p, _)| p.to_string())
        .collect()
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn keys_past_max_instances_fire_and_a_firing_instance_outside_the_page_stays_firing(
    pool: PgPool,
) {
    let view = view(&pool).await;
    let threshold = 5.0;
    let rule = rule(CompareOp::Gt, threshold, 10);
    let lock = lead(&pool).await;

    // First bucket: six keys, only /f (last in label order, past a page of 3) holds.
    let first = [
        ("/a", 1),
        ("/b", 1),
        ("/c", 1),
        ("/d", 1),
        ("/e", 1),
        ("/f", 10),
    ];
    for (page, count) in first {
        add(&pool, &view, 1, at(0.0), page, count).await;
    }
    let evaluation = evaluate_and_record(&pool, &lock, &view, &rule, at(15.0), MAX).await;
    assert!(evaluation.truncated, "six keys, a page of {MAX}");
    let firing: Vec<String> = states(&pool)
        .await
        .into_iter()
        .filter(|(_, (s, _))| *s == AlertState::Firing)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        firing,
        holding(&first, threshold),
        "the key past the page fires"
    );

    // Second bucket: three keys hold more than /f does and fill the page; /f still holds.
    let second = [("/a", 20), ("/b", 20), ("/c", 20), ("/e", 1), ("/f", 10)];
    for (page, count) in second {
        add(&pool, &view, 2, at(10.0), page, count).await;
    }
    let evaluation = evaluate_and_record(&pool, &lock, &view, &rule, at(25.0), MAX).await;
    assert!(evaluation.truncated);
    assert_eq!(evaluation.unread_live, 0);
    let stored = states(&pool).await;
    for page in holding(&second, threshold) {
        let count = second.iter().find(|(p, _)| *p == page).unwrap().1;
        assert_eq!(
            stored.get(&page),
            Some(&(AlertState::Firing, Some(count as f64))),
            "{page} holds with {count} and must be firing on its own value: {stored:?}"
        );
    }
    let resolved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM braid_internal.alert_transitions WHERE to_state = 'resolved'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(resolved, 0, "nothing that still holds is resolved");

    // A metric and a warning say keys were left out.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || report_left_out(&rule.name, MAX, &evaluation))
    });
    let rendered = handle.render();
    assert!(
        rendered.contains("braid_alerts_keys_left_out_total{rule=\"pages_rule\"} 1"),
        "{rendered}"
    );
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("WARN") && logged.contains("keys were left out"),
        "{logged}"
    );
}
