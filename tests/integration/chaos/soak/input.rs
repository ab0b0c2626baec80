//! The soak's own input beside the demo generator, on a thread of its own until told to stop:
//! a transactional producer (five records per transaction, every fourth transaction aborted,
//! one record in ten late and one in twenty malformed), bursts that make the two alert rules
//! fire and resolve, and a dimension topic whose values change (upserts, tombstones and
//! messages that are not JSON). Kafka may be down at any moment: a failed send or transaction
//! is given up (what reached the topic is the truth the checks read) and the transactional
//! producer is made again, fencing its predecessor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rand::{Rng, SeedableRng};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::support::kafka_brokers;

/// The dimension's keys: the demo's most viewed pages and a few of the soak's own.
pub const DIMENSION_KEYS: usize = 40;

/// Counts of what the thread did.
#[derive(Default)]
pub struct InputCounts {
    pub committed: AtomicU64,
    pub aborted: AtomicU64,
    pub failed: AtomicU64,
    pub bursts: AtomicU64,
    pub dimension_messages: AtomicU64,
}

pub struct Input {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub counts: Arc<InputCounts>,
}

impl Input {
    pub fn start(topic: &str, dimension_topic: &str, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(InputCounts::default());
        let (topic, dimension_topic) = (topic.to_string(), dimension_topic.to_string());
        let thread = {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::spawn(move || run(&topic, &dimension_topic, seed, &stop, &counts))
        };
        Self {
            stop,
            thread: Some(thread),
            counts,
        }
    }

    /// Stops the thread once its current transaction has ended.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the input thread does not panic");
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn plain_producer() -> BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap()
}

fn transactional_producer(topic: &str) -> Option<BaseProducer> {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("transactional.id", format!("{topic}.soak-txn"))
        .set("transaction.timeout.ms", "30000")
        .set("message.timeout.ms", "20000")
        .create()
        .ok()?;
    producer
        .init_transactions(Duration::from_secs(15))
        .ok()
        .map(|()| producer)
}

/// A demo record of `event_type` stamped `micros`, with `country` and `device`.
fn record(id: &str, micros: i64, event_type: &str, country: &str, device: &str) -> String {
    let ts = chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut value = serde_json::json!({
        "event_id": id, "ts": ts, "event_type": event_type, "user_id": format!("t{}", micros % 97),
        "page": format!("/txn/{}", micros % 13), "country": country, "device": device,
    });
    if event_type == "purchase" {
        value["price_cents"] = (micros % 50_000).into();
    }
    value.to_string()
}

fn run(topic: &str, dimension_topic: &str, seed: u64, stop: &AtomicBool, counts: &InputCounts) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let plain = plain_producer();
    let mut transactional: Option<BaseProducer> = None;
    let mut transactions = 0u64;
    let mut next_dimension = Instant::now();
    let mut next_burst = Instant::now() + Duration::from_secs(20);
    let mut bursts = 0u64;
    let timeout = Duration::from_secs(15);
    while !stop.load(Ordering::SeqCst) {
        // One transaction.
        if transactional.is_none() {
            transactional = transactional_producer(topic);
        }
        if let Some(producer) = &transactional {
            transactions += 1;
            let abort = transactions.is_multiple_of(4);
            let result = (|| -> Result<(), rdkafka::error::KafkaError> {
                producer.begin_transaction()?;
                for i in 0..5 {
                    let now = Utc::now().timestamp_micros();
                    let micros = if rng.random_bool(0.1) {
                        now - rng.random_range(1..1_800) * 1_000_000
                    } else {
                        now
                    };
                    let id = format!("txn-{transactions}-{i}");
                    let payload = if rng.random_bool(0.05) {
                        format!("{{\"event_id\":\"{id}\",\"ts\":")
                    } else {
                        record(&id, micros, "click", "NL", "txn")
                    };
                    producer
                        .send(BaseRecord::to(topic).key(&id).payload(&payload))
                        .map_err(|(e, _)| e)?;
                }
                if abort {
                    // Aborted records reach the log before the abort marker.
                    producer.flush(timeout)?;
                    producer.abort_transaction(timeout)
                } else {
                    producer.commit_transaction(timeout)
                }
            })();
            match result {
                Ok(()) if abort => counts.aborted.fetch_add(1, Ordering::Relaxed),
                Ok(()) => counts.committed.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    // Kafka away or the transaction fenced: start a new producer.
                    transactional = None;
                    counts.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
        // A dimension change every second or so.
        if Instant::now() >= next_dimension {
            next_dimension = Instant::now() + Duration::from_millis(rng.random_range(500..2_000));
            let key = format!("/soak/{}", rng.random_range(0..DIMENSION_KEYS));
            let roll = rng.random_range(0..10);
            // The follower takes the key of an upsert from its `page` field, a tombstone's from
            // the message key.
            let payload = match roll {
                0 => None,
                1 => Some("{not json".to_string()),
                2 => Some(serde_json::json!({"page": key, "weight": "heavy"}).to_string()),
                _ => Some(
                    serde_json::json!({
                        "page": key,
                        "section": format!("s{}", rng.random_range(0..5)),
                        "weight": rng.random_range(-1_000i64..1_000),
                    })
                    .to_string(),
                ),
            };
            let mut message = BaseRecord::<str, str>::to(dimension_topic).key(&key);
            if let Some(payload) = &payload {
                message = message.payload(payload);
            }
            if plain.send(message).is_ok() {
                counts.dimension_messages.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A burst for the alert rules every 40-80 s: 30 purchases of one device in country
        // ZZ (rule soak_burst) or 30 events of type soak_probe (rule soak_probe).
        if Instant::now() >= next_burst {
            next_burst = Instant::now() + Duration::from_secs(rng.random_range(40..80));
            bursts += 1;
            let device = format!("soak-{}", rng.random_range(0..3));
            for i in 0..30 {
                let id = format!("burst-{bursts}-{i}");
                let now = Utc::now().timestamp_micros();
                let payload = if bursts.is_multiple_of(2) {
                    record(&id, now, "soak_probe", "NL", "probe")
                } else {
                    record(&id, now, "purchase", "ZZ", &device)
                };
                let _ = plain.send(BaseRecord::to(topic).key(&id).payload(&payload));
            }
            counts.bursts.fetch_add(1, Ordering::Relaxed);
        }
        plain.poll(Duration::ZERO);
        // The pace of the transactions (about 20 records a second), not a synchronisation.
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = plain.flush(timeout);
}
