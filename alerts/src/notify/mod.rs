//! Delivery: every transition to each of its rule's receivers, at least once. The evaluator
//! records a `pending` delivery per receiver in the transaction that records the transition
//! (an outbox), and one worker per receiver sends what is due, oldest first, recording each
//! attempt; a failure is retried with doubling backoff. A receiver that is down delays only its
//! own deliveries, never an evaluation (a Kafka receiver's topic and producer are set up by its
//! own worker, retried with backoff while Kafka is away); a SIGKILL between the send and its record means one more
//! send after the next evaluator takes over, which the idempotency key lets a receiver recognise.

mod kafka;
pub mod payload;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::{self, Transition};
use chrono::{DateTime, Utc};
use schemas::alert::Receiver;
use schemas::config::KafkaConfig;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::error::AlertError;
use crate::settings::{AlertSettings, RetryPolicy};

/// Deliveries read per round.
const BATCH: i64 = 100;

/// Longest wait between two looks at the outbox, in case a wake-up was missed.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// A receiver's sender.
enum Sender {
    Webhook(webhook::Webhook),
    Kafka(kafka::KafkaTopic),
}

impl Sender {
    async fn send(&self, transition: &Transition) -> Result<(), String> {
        match self {
            Sender::Webhook(w) => w.send(transition).await,
            Sender::Kafka(k) => k.send(transition).await,
        }
    }
}

/// Every receiver the rules name, once.
pub fn receivers(settings: &AlertSettings) -> Vec<Receiver> {
    let mut all: Vec<Receiver> = settings
        .rules
        .iter()
        .flat_map(|r| r.notify.iter().cloned())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Checks that every webhook's token variable is set.
pub fn check_tokens(settings: &AlertSettings) -> Result<(), AlertError> {
    for receiver in receivers(settings) {
        if let Receiver::Webhook(name) = receiver
            && let Some(var) = settings
                .receivers
                .webhooks
                .get(&name)
                .and_then(|w| w.token_env.as_ref())
            && std::env::var_os(var).is_none()
        {
            return Err(AlertError::MissingToken {
                webhook: name,
                var: var.clone(),
            });
        }
    }
    Ok(())
}

/// How long one attempt to set up a Kafka receiver (create its topic, build its producer) may
/// take before it counts as failed and is retried.
const KAFKA_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A receiver's sender, or what its worker needs to build one: a Kafka receiver is set up by
/// its own worker, retried with backoff, so that Kafka being away delays only its deliveries,
/// never an evaluation or another receiver's.
enum Setup {
    Ready(Sender),
    Kafka {
        kafka: KafkaConfig,
        topic: String,
        timeout: Duration,
    },
}

/// A worker per receiver, ready to run.
pub struct Workers {
    senders: Vec<(String, Setup)>,
}

impl Workers {
    /// Builds each webhook's client; a Kafka receiver is set up later, by its worker. Fails
    /// only for the operator's errors (a webhook not declared, or its token not set).
    pub fn new(settings: &AlertSettings) -> Result<Self, AlertError> {
        let timeout = settings.receivers.timeout;
        let mut senders = Vec::new();
        for receiver in receivers(settings) {
            let setup = match &receiver {
                Receiver::Webhook(name) => {
                    let webhook = settings.receivers.webhooks.get(name).ok_or_else(|| {
                        AlertError::Receiver {
                            receiver: receiver.to_string(),
                            reason: "not declared".into(),
                        }
                    })?;
                    Setup::Ready(Sender::Webhook(webhook::Webhook::new(
                        name, webhook, timeout,
                    )?))
                }
                Receiver::Kafka(topic) => Setup::Kafka {
                    kafka: settings.receivers.kafka.clone(),
                    topic: topic.clone(),
                    timeout,
                },
            };
            senders.push((receiver.to_string(), setup));
        }
        Ok(Self { senders })
    }

    /// Runs one task per receiver until `stop`; `wake` makes them look at once.
    pub fn spawn(
        self,
        pool: PgPool,
        retry: RetryPolicy,
        wake: Arc<Notify>,
        stop: Arc<AtomicBool>,
    ) -> Running {
        let handles = self
            .senders
            .into_iter()
            .map(|(name, setup)| {
                let (pool, wake, stop) = (pool.clone(), wake.clone(), stop.clone());
                tokio::spawn(async move {
                    let sender = match setup {
                        Setup::Ready(sender) => sender,
                        Setup::Kafka {
                            kafka,
                            topic,
                            timeout,
                        } => match set_up_kafka(&kafka, &topic, timeout, retry, &wake, &stop).await
                        {
                            Some(sender) => sender,
                            None => return,
                        },
                    };
                    deliver(&pool, &name, &sender, retry, &wake, &stop).await
                })
            })
            .collect();
        Running {
            handles,
            stop: stop.clone(),
            wake: wake.clone(),
        }
    }
}

/// The running workers of one leadership. [`Running::stop`] ends them and waits; dropped
/// without it (a leader that panicked or was cancelled), it stops them all the same and aborts
/// them, so that they never run on beside the workers of the next leadership, two workers of one
/// receiver sending the same delivery twice.
pub struct Running {
    handles: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl Running {
    /// Tells the workers to stop and waits for them.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_waiters();
        for handle in std::mem::take(&mut self.handles) {
            let _ = handle.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_waiters();
        for handle in &self.handles {
            handle.abort();
        }
    }
}

/// Creates the topic and the producer of a Kafka receiver, trying again with the retry
/// policy's backoff until it succeeds; `None` if `stop` came first.
async fn set_up_kafka(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    retry: RetryPolicy,
    wake: &Notify,
    stop: &AtomicBool,
) -> Option<Sender> {
    let mut attempts = 0;
    while !stop.load(Ordering::Relaxed) {
        attempts += 1;
        let attempt = tokio::time::timeout(
            KAFKA_SETUP_TIMEOUT,
            kafka::KafkaTopic::new(kafka, topic, timeout),
        )
        .await;
        let error = match attempt {
            Ok(Ok(sender)) => {
                if attempts > 1 {
                    tracing::info!(topic, attempts, "the Kafka alert receiver is set up");
                }
                return Some(Sender::Kafka(sender));
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("timed out after {KAFKA_SETUP_TIMEOUT:?}"),
        };
        let wait = retry.backoff(attempts);
        tracing::warn!(topic, attempt = attempts, retry_in_ms = wait.as_millis() as u64, %error, "cannot set up the Kafka alert receiver; its deliveries wait, the other receivers and the evaluations go on");
        // A wake-up (new transitions, or the evaluator stepping down) ends the wait early only
        // to look at `stop`; the backoff still spaces the attempts.
        let deadline = tokio::time::Instant::now() + wait;
        while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
    None
}

async fn deliver(
    pool: &PgPool,
    receiver: &str,
    sender: &Sender,
    retry: RetryPolicy,
    wake: &Notify,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let due = match store::due_deliveries(pool, receiver, Utc::now(), BATCH).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(receiver, %error, "cannot read the alert outbox; trying again");
                tokio::time::sleep(IDLE_LOOK).await;
                continue;
            }
        };
        for delivery in &due {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let id = delivery.transition.id;
            let result = sender.send(&delivery.transition).await;
            let recorded = match result {
                Ok(()) => {
                    metrics::counter!("braid_alerts_notifications_total", "receiver" => receiver.to_string()).increment(1);
                    tracing::info!(receiver, transition = id, rule = delivery.transition.evaluation.rule, to = %delivery.transition.to, "alert transition delivered");
                    store::mark_delivered(pool, id, receiver).await
                }
                Err(error) => {
                    metrics::counter!("braid_alerts_notification_failures_total", "receiver" => receiver.to_string()).increment(1);
                    let wait = retry.backoff(delivery.attempts + 1);
                    tracing::warn!(receiver, transition = id, attempt = delivery.attempts + 1, retry_in_ms = wait.as_millis() as u64, %error, "alert delivery failed; retrying");
                    let next: DateTime<Utc> =
                        Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    store::mark_failed(pool, id, receiver, &error, next).await
                }
            };
            if let Err(error) = recorded {
                tracing::warn!(receiver, transition = id, %error, "cannot record a delivery attempt; it will be attempted again");
            }
        }
        if !due.is_empty() {
            continue;
        }
        let until_due = match store::next_due(pool, receiver).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or_default()
                .min(IDLE_LOOK),
            _ => IDLE_LOOK,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(until_due) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Running;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    use tokio::sync::Notify;

    /// A leader that panics drops its workers: they must end, not deliver on beside the next
    /// leader's workers.
    #[tokio::test]
    async fn the_workers_of_a_leader_that_panicked_end() {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        // A worker that runs until told to stop (as `deliver` does).
        let worker = tokio::spawn({
            let stop = stop.clone();
            async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            }
        });
        let running = Running {
            handles: vec![worker],
            stop: stop.clone(),
            wake,
        };
        let leader = tokio::spawn(async move {
            let _running = running;
            panic!("a leader that panics while its workers run");
        });
        assert!(leader.await.unwrap_err().is_panic());
        let deadline = Instant::now() + Duration::from_secs(10);
        // The worker holds a clone of the flag until its future is dropped (ended or aborted).
        while !stop.load(Ordering::Relaxed) || Arc::strong_count(&stop) > 1 {
            assert!(
                Instant::now() < deadline,
                "the panicked leader's worker still runs"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
