//! What a layer gives the ingest loop: a store of positions and a buffer.

use std::collections::BTreeMap;
use std::time::Duration;

use schemas::Record;
use schemas::pg::DeadLetter;

use crate::error::{Disposition, IngestError};
use schemas::position::{Offset, Partition, Positions};

/// One message as read from Kafka.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Its partition.
    pub partition: Partition,
    /// Its offset.
    pub offset: Offset,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its payload.
    pub payload: &'a [u8],
}

/// Where a newly assigned partition is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The stored position.
    Offset(i64),
    /// Kafka's first offset: the layer has no position stored for it yet.
    Beginning,
}

/// How much the buffer holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buffered {
    /// Messages (valid and refused).
    pub records: u64,
    /// Input bytes.
    pub bytes: u64,
}

/// What one commit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Valid records.
    pub records: u64,
    /// Dead letters, by reason code.
    pub dead_letters: Vec<&'static str>,
    /// How long the write took.
    pub took: Duration,
}

impl Committed {
    /// Two commits reported as one: a layer that writes in the background may settle one
    /// commit and retry another within one call.
    pub fn combine(a: Option<Committed>, b: Option<Committed>) -> Option<Committed> {
        match (a, b) {
            (Some(mut a), Some(b)) => {
                a.records += b.records;
                a.dead_letters.extend(b.dead_letters);
                a.took += b.took;
                Some(a)
            }
            (a, b) => a.or(b),
        }
    }
}

/// A layer of the pipeline, as the ingest loop sees it: where its positions are stored and
/// fenced, and what its buffer becomes when committed. Every call runs on the loop's thread
/// (the rebalance callback included), one at a time.
pub trait Layer: Send + 'static {
    /// The layer's error.
    type Error: std::error::Error + From<IngestError> + Send + 'static;

    /// `speed` or `sink`: the `layer` label of metrics and the name in logs and messages.
    const NAME: &'static str;

    /// What the operator can do when Kafka deleted records the layer still needs.
    const RETENTION_REMEDY: &'static str;

    /// How the loop handles `error`.
    fn classify(error: &Self::Error) -> Disposition;

    /// For an error classified [`Disposition::DataRefused`]: the store's own words, kept in the
    /// `refused_by_database` dead letter (e.g. PostgreSQL's message and SQLSTATE).
    fn refusal_detail(error: &Self::Error) -> String {
        error.to_string()
    }

    /// Newly assigned `partitions`: where to read each from. `low_watermark` reads Kafka's first
    /// offset of a partition, for a layer that stores it as a start.
    fn assign(
        &mut self,
        partitions: &[Partition],
        low_watermark: &mut dyn FnMut(i32) -> Result<i64, IngestError>,
    ) -> Result<BTreeMap<Partition, StartAt>, Self::Error>;

    /// Whether `partition` is assigned here (a message fetched before a revoke is not).
    fn is_assigned(&self, partition: Partition) -> bool;

    /// Whether the layer has a stored position for `partition`.
    fn has_position(&self, partition: Partition) -> bool;

    /// Buffers a valid record.
    fn add_record(&mut self, message: &Received<'_>, record: &Record);

    /// Buffers a refused record.
    fn add_dead_letter(&mut self, letter: DeadLetter);

    /// The partition's next position is at least `position`: the offsets before it hold no
    /// record to buffer (transaction markers, aborted records, or records that expired before
    /// the layer read them). The next commit records it, with no rows if need be.
    fn skip_to(&mut self, partition: Partition, position: Offset);

    /// How much is buffered.
    fn buffered(&self) -> Buffered;

    /// The next position of every partition the buffer covers.
    fn buffered_ends(&self) -> Positions;

    /// Commits the buffer, fenced on the positions this process last committed. May return
    /// before the write ends; the next call waits for it first. Returns what a commit that
    /// ended during the call wrote.
    fn commit(&mut self) -> Result<Option<Committed>, Self::Error>;

    /// Whether a commit that returned before its write ended is still writing: the loop holds
    /// early commits back until it ends rather than waiting for it in the next `commit`.
    fn writing(&self) -> bool {
        false
    }

    /// Commits everything buffered and waits for it (before a revoke or a stop).
    fn commit_all(&mut self) -> Result<Option<Committed>, Self::Error>;

    /// Forgets everything read but not committed.
    fn drop_uncommitted(&mut self);

    /// Re-reads the stored positions of the assigned partitions (after a fence, or to follow
    /// an operator's move) and expects them from now on. Returns where to read each from.
    fn reload(&mut self) -> Result<BTreeMap<Partition, StartAt>, Self::Error>;

    /// The partitions were revoked: forget their positions.
    fn revoked(&mut self);

    /// Where each assigned partition stands in the store, as this process last committed or
    /// loaded it.
    fn positions(&self) -> BTreeMap<Partition, StartAt>;

    /// Whether operators move this layer's stored positions while it runs (`braid replay
    /// speed`, `braid recover`): when idle, the loop then looks whether they moved and follows.
    fn follows_moved_positions(&self) -> bool {
        false
    }
}
