//! Delivery against failing receivers: an instance's transitions reach each receiver in order
//! while one of them is retried; a rule is evaluated and sent to its webhook while Kafka is
//! away, and its Kafka receiver resumes when Kafka returns; a state that changed during a
//! silence is sent when the silence ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;

use super::receiver::Receiver;
use super::{Producer, pipeline_with, rule, start_evaluator, transitions};
use crate::support::{kafka_brokers, read_topic, wait_until};

/// Each value once, in the order first seen (a delivery may be repeated: at least once).
fn first_seen(ids: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut seen = Vec::new();
    for id in ids {
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    seen
}

/// Per instance, what a receiver got: transition ids in the order they arrived.
fn arrivals(messages: impl IntoIterator<Item = Value>, rule: &str) -> BTreeMap<String, Vec<i64>> {
    let mut by_instance: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for body in messages {
        let t = &body["braid"];
        if t["rule"] == rule {
            by_instance
                .entry(t["fingerprint"].as_str().unwrap().to_string())
                .or_default()
                .push(t["id"].as_i64().unwrap());
        }
    }
    by_instance
        .into_iter()
        .map(|(fp, ids)| (fp, first_seen(ids)))
        .collect()
}

async fn undelivered(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM braid_internal.alert_deliveries WHERE status <> 'delivered'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The status of transition `id`'s delivery to `receiver`.
async fn delivery_status(pool: &PgPool, id: i64, receiver: &str) -> String {
    sqlx::query_scalar(
        "SELECT status FROM braid_internal.alert_deliveries WHERE transition_id = $1 AND receiver = $2",
    )
    .bind(id)
    .bind(receiver)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn kafka_bodies(topic: &str) -> Vec<Value> {
    read_topic(topic)
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

/// A TCP proxy on `listen` to `target`, until dropped.
struct Proxy(tokio::task::JoinHandle<()>);

impl Drop for Proxy {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn proxy(listen: SocketAddr, target: String) -> Proxy {
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    Proxy(tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    }))
}

#[sqlx::test(migrations = false)]
async fn each_receiver_gets_an_instance_s_transitions_in_order_while_its_firing_is_refused(
    pool: PgPool,
) {
    // The webhook answers 503 to an instance's firing until the instance has resolved: a
    // delivery that sent `resolved` meanwhile would leave the receiver believing it fires.
    let receiver = Receiver::refusing_firing_until_resolved(pool.clone()).await;
    let (pipeline, alerts_topic) = pipeline_with(&pool, "alerts-order", &receiver.url(), |topic| {
        rule("order_page", "10s", 2, "0s", "0s", topic)
    })
    .await;
    let mut producer = Producer::new(&pipeline.topic, 2).await;
    let mut speed = pipeline.start_speed("a", "a");
    let mut evaluator = start_evaluator(&pipeline, "a", &[]);
    let pages = ["/a", "/b", "/c"];
    for page in pages {
        producer.send(page, Utc::now(), 4).await;
    }
    wait_until(
        "every page to fire, resolve and be delivered",
        Duration::from_secs(90),
        || {
            speed.assert_running("braid speed");
            evaluator.assert_running("braid alerts run");
            let pool = pool.clone();
            async move {
                let seen = transitions(&pool, "order_page").await;
                seen.iter().filter(|t| t.to == "resolved").count() == pages.len()
                    && undelivered(&pool).await == 0
            }
        },
    )
    .await;
    let seen = transitions(&pool, "order_page").await;
    let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for t in &seen {
        expected
            .entry(t.fingerprint.clone())
            .or_default()
            .push(t.id);
    }
    let paths: Vec<Vec<&str>> = expected
        .values()
        .map(|ids| {
            ids.iter()
                .map(|id| seen.iter().find(|t| t.id == *id).unwrap().to.as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        paths,
        vec![vec!["firing", "resolved"]; pages.len()],
        "{seen:#?}"
    );
    assert!(
        !receiver.refused().is_empty(),
        "the webhook refused some firing, so a delivery was retried"
    );
    let by_webhook = arrivals(
        receiver.received().into_iter().map(|d| d.body),
        "order_page",
    );
    assert_eq!(
        by_webhook, expected,
        "the webhook got each instance's transitions in the order they happened"
    );
    let by_kafka = arrivals(kafka_bodies(&alerts_topic), "order_page");
    assert_eq!(
        by_kafka, expected,
        "the Kafka topic holds each instance's transitions in order"
    );
}

#[sqlx::test(migrations = false)]
async fn a_rule_is_evaluated_and_sent_to_its_webhook_while_kafka_is_away_and_kafka_resumes(
    pool: PgPool,
) {
    let receiver = Receiver::start().await;
    let (pipeline, alerts_topic) =
        pipeline_with(&pool, "alerts-kafka-away", &receiver.url(), |topic| {
            rule("away_page", "10s", 2, "0s", "5m", topic)
        })
        .await;
    // The evaluator's brokers: a port nothing listens on, until the proxy below opens it.
    let closed: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut producer = Producer::new(&pipeline.topic, 2).await;
    let mut speed = pipeline.start_speed("a", "a");
    let mut evaluator = start_evaluator(&pipeline, "a", &[("KAFKA_BROKERS", &closed.to_string())]);
    producer.send("/away", Utc::now(), 4).await;
    wait_until(
        "the webhook to get the firing while Kafka is away",
        Duration::from_secs(60),
        || {
            speed.assert_running("braid speed");
            evaluator.assert_running("braid alerts run");
            let received = receiver.received();
            async move {
                received.iter().any(|d| {
                    d.body["braid"]["rule"] == "away_page" && d.body["braid"]["to"] == "firing"
                })
            }
        },
    )
    .await;
    let seen = transitions(&pool, "away_page").await;
    let firing = seen.iter().find(|t| t.to == "firing").unwrap().id;
    let kafka_receiver = format!("kafka:{alerts_topic}");
    assert_eq!(
        delivery_status(&pool, firing, &kafka_receiver).await,
        "pending",
        "the Kafka delivery waits for Kafka"
    );
    // Kafka returns: the evaluator's bootstrap address now leads to the broker.
    let broker = kafka_brokers().split(',').next().unwrap().to_string();
    let _proxy = proxy(closed, broker).await;
    wait_until(
        "the Kafka receiver to resume",
        Duration::from_secs(60),
        || {
            evaluator.assert_running("braid alerts run");
            let (pool, kafka_receiver) = (pool.clone(), kafka_receiver.clone());
            async move { delivery_status(&pool, firing, &kafka_receiver).await == "delivered" }
        },
    )
    .await;
    let on_topic = arrivals(kafka_bodies(&alerts_topic), "away_page");
    assert!(
        on_topic.values().flatten().any(|&id| id == firing),
        "the topic holds the firing: {on_topic:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn a_state_that_changed_during_a_silence_is_sent_when_the_silence_ends(pool: PgPool) {
    let receiver = Receiver::start().await;
    let (pipeline, alerts_topic) =
        pipeline_with(&pool, "alerts-silence-end", &receiver.url(), |topic| {
            rule("quiet_page", "10s", 2, "0s", "5m", topic)
        })
        .await;
    alerts::store::silence(
        &pool,
        "quiet_page",
        Utc::now() + chrono::Duration::minutes(10),
    )
    .await
    .unwrap();
    let mut producer = Producer::new(&pipeline.topic, 2).await;
    let mut speed = pipeline.start_speed("a", "a");
    let mut evaluator = start_evaluator(&pipeline, "a", &[]);
    producer.send("/quiet", Utc::now(), 4).await;
    wait_until(
        "the firing to be recorded during the silence",
        Duration::from_secs(60),
        || {
            speed.assert_running("braid speed");
            evaluator.assert_running("braid alerts run");
            let pool = pool.clone();
            async move {
                transitions(&pool, "quiet_page")
                    .await
                    .iter()
                    .any(|t| t.to == "firing")
            }
        },
    )
    .await;
    let firing = transitions(&pool, "quiet_page")
        .await
        .into_iter()
        .find(|t| t.to == "firing")
        .unwrap()
        .id;
    let receivers = ["webhook:test".to_string(), format!("kafka:{alerts_topic}")];
    for r in &receivers {
        assert_eq!(delivery_status(&pool, firing, r).await, "silenced", "{r}");
    }
    // The silence ends (replaced by one that is over), while the instance still fires.
    alerts::store::silence(
        &pool,
        "quiet_page",
        Utc::now() - chrono::Duration::seconds(1),
    )
    .await
    .unwrap();
    wait_until(
        "the firing to reach every receiver after the silence",
        Duration::from_secs(30),
        || {
            evaluator.assert_running("braid alerts run");
            let (pool, receivers) = (pool.clone(), receivers.clone());
            async move {
                for r in &receivers {
                    if delivery_status(&pool, firing, r).await != "delivered" {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    let by_webhook = arrivals(
        receiver.received().into_iter().map(|d| d.body),
        "quiet_page",
    );
    let by_kafka = arrivals(kafka_bodies(&alerts_topic), "quiet_page");
    let expected = BTreeMap::from([(
        transitions(&pool, "quiet_page").await[0]
            .fingerprint
            .clone(),
        vec![firing],
    )]);
    assert_eq!(by_webhook, expected, "the webhook got the firing, once");
    assert_eq!(by_kafka, expected, "the topic holds the firing, once");
}
