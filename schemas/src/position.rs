//! Names for Kafka positions, used by every crate: a partition, an offset in it, and the
//! positions of a topic (the next offset to read, per partition). Aliases, as kafka-delta-ingest
//! names them, so they bind to PostgreSQL and Arrow as the integers they are.

use std::collections::BTreeMap;

/// A partition of the source topic.
pub type Partition = i32;

/// An offset in a partition. A position is the offset of the next record to read.
pub type Offset = i64;

/// The next offset to read, per partition.
pub type Positions = BTreeMap<Partition, Offset>;

/// What the metadata of a layer's monitoring commit to its Kafka consumer group starts with;
/// the commit's time in Unix milliseconds follows, so that readers (the API's status) can tell
/// how fresh a layer is.
pub const MONITORING_METADATA_PREFIX: &str = "braid committed_at_ms=";

/// The commit time in a monitoring commit's `metadata`, if it is one.
pub fn monitoring_commit_ms(metadata: &str) -> Option<i64> {
    metadata
        .strip_prefix(MONITORING_METADATA_PREFIX)
        .and_then(|ms| ms.parse().ok())
}
