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
