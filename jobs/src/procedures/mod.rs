//! Operators' procedures on history, run as jobs (recorded in the job history) from the CLI and
//! the admin API alike:
//!
//! - [`replay_speed`]: rebuild the speed rows from the last cut;
//! - [`recover`]: move a speed layer that Kafka's retention left behind to the sink's positions;
//! - [`republish`]: records from the lake back into a Kafka topic, resumable, each once;
//! - [`prune`]: old alert history and dead letters deleted in bounded chunks.

pub mod prune;
pub mod recover;
pub mod replay_speed;
pub mod republish;

use std::collections::BTreeMap;

use batch_layer::lake::LakeError;
use ingest::kafka::{KafkaSetupError, Watermarks};
use schemas::config::KafkaConfig;
use schemas::position::Partition;

/// Why a procedure failed. Nothing half-done is left: each either changed nothing or did its
/// whole step (a republish resumes where it stopped).
#[derive(Debug, thiserror::Error)]
pub enum ProcedureError {
    /// Kafka could not be asked about a topic.
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    /// Producing or reading back records failed.
    #[error("kafka error: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The speed replay was refused (see its message).
    #[error(transparent)]
    Replay(#[from] schemas::pg::ReplayError),
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A blocking step ended without reporting (it panicked).
    #[error("a step of the job failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Kafka no longer holds the records a speed replay would read again.
    #[error(
        "cannot replay partition {partition} of {topic} from offset {start}: Kafka holds it only from \
         offset {low} (retention deleted the rest). The lake holds everything: run `braid recover \
         --from-lake`, then `braid batch run`"
    )]
    ReplayPastRetention {
        /// The topic.
        topic: String,
        /// The partition.
        partition: Partition,
        /// Where the replay would start.
        start: i64,
        /// Kafka's first offset.
        low: i64,
    },
    /// A recovery was asked while the speed layer can still read everything it needs.
    #[error(
        "the speed layer is not behind Kafka's retention on any partition of {topic} (each stored \
         position is at or past Kafka's first offset): it can still read every record it needs, and \
         recovering would make it skip them until the next batch run. Nothing was changed. Pass \
         --force to recover anyway"
    )]
    NotBehindRetention {
        /// The topic.
        topic: String,
    },
    /// The lake has nothing of the topic to recover from.
    #[error("the Delta table at {uri} holds no records of {topic} yet: nothing to recover from")]
    LakeHoldsNothing {
        /// The table.
        uri: String,
        /// The topic.
        topic: String,
    },
    /// A request parameter is wrong; the message names it.
    #[error("{parameter}: {message}")]
    BadRequest {
        /// The parameter (`--from`, `to`, ...).
        parameter: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Kafka refused a republished record.
    #[error("Kafka refused a republished record: {0}")]
    Refused(rdkafka::error::KafkaError),
    /// A delivery report was lost (the producer closed).
    #[error("a delivery report was lost (the producer closed)")]
    DeliveryLost,
    /// Reading the target topic back did not reach its end in time.
    #[error("reading {topic} back took more than 5 minutes (partitions {unfinished:?} unfinished)")]
    ReadBackTimeout {
        /// The topic.
        topic: String,
        /// The partitions not read to their end.
        unfinished: Vec<i32>,
    },
    /// The republish was stopped part way.
    #[error("interrupted after {sent} of {total} records; run the same command again to resume")]
    Interrupted {
        /// Records sent.
        sent: u64,
        /// Records to send.
        total: u64,
    },
}

impl ProcedureError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProcedureError::Database(_) | ProcedureError::Kafka(KafkaSetupError::Client { .. })
        ) || matches!(self, ProcedureError::Lake(e) if e.is_retryable())
    }
}

/// Kafka's watermarks of the source topic (`kafka.topic`).
pub async fn watermarks(
    kafka: &KafkaConfig,
) -> Result<BTreeMap<Partition, Watermarks>, ProcedureError> {
    let kafka = kafka.clone();
    let topic = kafka.topic.clone();
    Ok(tokio::task::spawn_blocking(move || ingest::kafka::watermarks(&kafka, &topic)).await??)
}
