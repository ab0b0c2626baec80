//! What a layer gives the ingest loop: a buffer and a store. Everything else — the expected
//! positions, the background commit and its settling, the failed commit kept for retry, the
//! reload after a fence — is the loop's ([`crate::pipeline`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use schemas::Record;
use schemas::pg::DeadLetter;

use crate::error::{Disposition, IngestError};
use crate::expected::Expected;
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
    /// What writing `taken` wrote, in `took`.
    pub fn of<T: Taken>(taken: &T, took: Duration) -> Self {
        Committed {
            records: taken.records(),
            dead_letters: taken
                .dead_letters()
                .iter()
                .map(|l| l.rejection.code())
                .collect(),
            took,
        }
    }

    /// Two commits reported as one: the pipeline may settle one commit and retry another
    /// within one call.
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

/// A layer's buffer: what it reads between two commits. The loop calls it once per message,
/// on its own thread; generic, never `dyn`, so the calls are monomorphised.
pub trait Buffer: Send + 'static {
    /// A buffer taken for a commit: written by the store, possibly in the background.
    type Taken: Taken;
    /// The layer's error (taking a buffer may fail: the sink's Arrow batch).
    type Error;

    /// Buffers a valid record.
    fn add_record(&mut self, message: &Received<'_>, record: &Record);

    /// Buffers a refused record.
    fn add_dead_letter(&mut self, letter: DeadLetter);

    /// The partition's next position is `position`: the offsets before it hold no record to
    /// buffer. Called only with a position past everything buffered and stored (the pipeline
    /// decides); the next commit records it, with no rows if need be.
    fn skip_to(&mut self, partition: Partition, position: Offset);

    /// How much is buffered.
    fn size(&self) -> Buffered;

    /// The next position of every partition the buffer covers (empty: nothing to commit).
    fn ends(&self) -> &Positions;

    /// Takes the buffer for a commit, leaving it empty; `None` when it covers nothing.
    fn take(&mut self) -> Result<Option<Self::Taken>, Self::Error>;

    /// A written buffer, given back: a buffer that reuses its allocations keeps it.
    fn recycle(&mut self, taken: Self::Taken) {
        drop(taken);
    }

    /// Forgets everything buffered.
    fn clear(&mut self);
}

/// A taken buffer, as the pipeline books it.
pub trait Taken: Send + 'static {
    /// The next position of every partition it covers.
    fn ends(&self) -> &Positions;
    /// Valid records it holds.
    fn records(&self) -> u64;
    /// Its dead letters.
    fn dead_letters(&self) -> &[DeadLetter];
}

/// A layer's store: where its positions are kept and fenced, and where a taken buffer is
/// written together with them. It is moved into the background task while a write runs.
pub trait Store: Send + 'static {
    /// The layer's buffer.
    type Buffer: Buffer<Error = Self::Error>;
    /// The layer's error.
    type Error: std::error::Error + From<IngestError> + Send + 'static;

    /// `speed` or `sink`: the `layer` label of metrics and the name in logs and messages.
    const NAME: &'static str;

    /// What the operator can do when Kafka deleted records the layer still needs.
    const RETENTION_REMEDY: &'static str;

    /// Whether operators move this layer's stored positions while it runs (`braid replay
    /// speed`, `braid recover`): when idle, the loop then looks whether they moved and follows.
    const FOLLOWS_MOVED_POSITIONS: bool = false;

    /// How the loop handles `error`.
    fn classify(error: &Self::Error) -> Disposition;

    /// For an error classified [`Disposition::DataRefused`]: the store's own words, kept in the
    /// `refused_by_database` dead letter (e.g. PostgreSQL's message and SQLSTATE).
    fn refusal_detail(error: &Self::Error) -> String {
        error.to_string()
    }

    /// The stored position of each of `partitions`, one entry each (`None`: nothing stored;
    /// read from Kafka's first offset). A store that stores starts reads a partition's first offset with
    /// `low_watermark`. Runs on the loop's thread (the rebalance callback included), never
    /// while a write runs.
    fn load(
        &mut self,
        partitions: &[Partition],
        low_watermark: &mut dyn FnMut(Partition) -> Result<Offset, IngestError>,
    ) -> impl Future<Output = Result<BTreeMap<Partition, Option<Offset>>, Self::Error>>;

    /// Writes `taken` with its ends as the new positions, fenced on `expected`: its records and
    /// its positions become visible together (one transaction, one Delta commit), and when a
    /// partition's stored position is not the expected one nothing becomes visible and the
    /// error classifies as [`Disposition::Fenced`]. A write that fails may be called again
    /// with the same buffer, so whatever it stores before the fence must be idempotent.
    fn write(
        &mut self,
        taken: &<Self::Buffer as Buffer>::Taken,
        expected: &Expected,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
