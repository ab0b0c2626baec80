//! The ingest loop's own errors, and how a layer's errors are classified.

use schemas::position::{Offset, Partition};

/// What the loop does after a failed commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Another process moved the positions (a missed rebalance, or an operator's replay):
    /// nothing was committed; drop the buffer and read again from the stored positions.
    Fenced,
    /// The store refused the values of some record that passed validation: nothing was
    /// committed; read the buffer again one record per commit to find it and dead-letter it.
    DataRefused,
    /// Transient (connection loss, a timeout): nothing was committed; retry with backoff.
    Retryable,
    /// Retrying cannot help: stop and say why.
    Fatal,
}

/// Errors of the loop itself.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Kafka failed in a way the consumer cannot recover from.
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Kafka no longer holds records the layer still needs (retention deleted them). Nothing
    /// was skipped.
    #[error(
        "partition {partition} of {topic}: offset {offset} is out of range; Kafka has deleted records the {layer} \
         has not consumed (retention). Nothing was skipped. {remedy}"
    )]
    OffsetOutOfRange {
        /// The layer.
        layer: &'static str,
        /// The topic.
        topic: String,
        /// The partition (-1 when no partition could be named).
        partition: Partition,
        /// The position Kafka no longer has.
        offset: Offset,
        /// What the operator can do.
        remedy: &'static str,
    },
    /// The Kafka client hit fatal errors again and again, each time replaced by a new one: a
    /// new client does not help, so the layer stops rather than loop for ever. The usual cause
    /// is two processes configured with the same static membership id, which fence each other.
    #[error(
        "the {layer}'s Kafka client hit {count} fatal errors within {window_s} s (the last: {last}), each time \
         replaced by a new client; stopping instead of trying again. Two consumers with the same \
         `group.instance.id` (kafka.options) fence each other: give each process its own id, or remove it"
    )]
    ClientKeepsFailing {
        /// The layer.
        layer: &'static str,
        /// Fatal errors within the window, this one included.
        count: usize,
        /// The window, in seconds.
        window_s: u64,
        /// The last fatal error's code.
        last: rdkafka::types::RDKafkaErrorCode,
    },
    /// A layer's background write task failed (a panic: a bug). Nothing of its buffer was
    /// written; the layer stops and a restart reads those records again.
    #[error("the {layer}'s write task failed: {source}")]
    WriteTask {
        /// The layer.
        layer: &'static str,
        /// Why the task ended without reporting.
        source: tokio::task::JoinError,
    },
    /// The operating system refused the thread that validates messages (out of threads or
    /// memory); the layer cannot start.
    #[error("the {layer} could not start its validating thread: {source}")]
    ValidatorThread {
        /// The layer.
        layer: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The schema registry's client cannot be set up (a secret's variable not set, an
    /// unreadable CA file): the operator's error; the layer does not start.
    #[error("the {layer} cannot use the schema registry: {source}")]
    Registry {
        /// The layer.
        layer: &'static str,
        /// What is wrong.
        source: crate::registry::RegistryError,
    },
    /// A layer's store was not given back by a background write whose task failed (a bug).
    #[error("the {layer}'s store is lost: a background write did not give it back")]
    StoreLost {
        /// The layer.
        layer: &'static str,
    },
}
