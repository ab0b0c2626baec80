//! The commit pipeline, written once for every layer: the expected positions, a write running
//! in the background while the loop reads the next buffer (one at a time: the next commit
//! settles it first, so writes reach the store in the order they were read, each fenced on the
//! positions the one before it stored), the buffer of a failed write kept and written again
//! before any later one, and the reload of the stored positions after a fence or an
//! operator's move. Every call runs on the loop's thread (the rebalance callback included).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::IngestError;
use crate::expected::{Expected, StartAt};
use crate::layer::{Buffer, Buffered, Committed, Store, Taken};
use schemas::position::{Offset, Partition, Positions};

/// A store's taken buffer.
type TakenOf<S> = <<S as Store>::Buffer as Buffer>::Taken;

/// How a background write ended; it gives the store and the buffer back.
struct Written<S: Store> {
    store: S,
    taken: TakenOf<S>,
    result: Result<(), S::Error>,
    /// How long the write took (not the time it then waited to be settled).
    took: Duration,
}

/// A layer's buffer and store, and the bookkeeping between them.
pub struct Pipeline<S: Store> {
    runtime: Handle,
    /// `None` while a background write owns it (or after that write's task failed).
    store: Option<S>,
    buffer: S::Buffer,
    /// The write running in the background, if any.
    in_flight: Option<JoinHandle<Written<S>>>,
    /// A buffer whose write failed and must be written before any later one.
    failed: Option<TakenOf<S>>,
    /// A write that ended outside `commit` (settled by `assign` or `reload`), reported by the
    /// next `commit`.
    unreported: Option<Committed>,
    /// The stored position of every assigned partition, as of this process's last write or load.
    expected: Expected,
}

impl<S: Store> Pipeline<S> {
    /// `store` and an empty `buffer`; `runtime` runs the store's calls.
    pub fn new(runtime: Handle, store: S, buffer: S::Buffer) -> Self {
        Self {
            runtime,
            store: Some(store),
            buffer,
            in_flight: None,
            failed: None,
            unreported: None,
            expected: Expected::default(),
        }
    }

    /// The buffer, to add a message to.
    pub fn buffer(&mut self) -> &mut S::Buffer {
        &mut self.buffer
    }

    /// The store, unless a write owns it.
    pub fn store(&mut self) -> Result<&mut S, IngestError> {
        self.store
            .as_mut()
            .ok_or(IngestError::StoreLost { layer: S::NAME })
    }

    /// Newly assigned `partitions`: where to read each from. `low_watermark` reads Kafka's
    /// first offset of a partition, for a store that stores it as a start.
    pub fn assign(
        &mut self,
        partitions: &[Partition],
        low_watermark: &mut dyn FnMut(Partition) -> Result<Offset, IngestError>,
    ) -> Result<BTreeMap<Partition, StartAt>, S::Error> {
        // A write still running would move stored positions after they were read here.
        self.settle_unreported()?;
        let loaded = self.load(partitions, low_watermark)?;
        self.expected = Expected::assigned(loaded);
        Ok(self.expected.starts())
    }

    fn load(
        &mut self,
        partitions: &[Partition],
        low_watermark: &mut dyn FnMut(Partition) -> Result<Offset, IngestError>,
    ) -> Result<BTreeMap<Partition, Option<Offset>>, S::Error> {
        let runtime = self.runtime.clone();
        let store = self.store()?;
        runtime.block_on(store.load(partitions, low_watermark))
    }

    /// Whether `partition` is assigned here (a message fetched before a revoke is not).
    pub fn is_assigned(&self, partition: Partition) -> bool {
        self.expected.is_assigned(partition)
    }

    /// Whether the store has a position for `partition`.
    pub fn has_position(&self, partition: Partition) -> bool {
        self.expected.has_position(partition)
    }

    /// The partition's next position is at least `position`: the offsets before it hold no
    /// record to buffer (transaction markers, aborted records, or records that expired before
    /// the layer read them). The next commit records it, with no rows if need be.
    pub fn skip_to(&mut self, partition: Partition, position: Offset) {
        if self
            .expected
            .is_past(self.buffer.ends(), partition, position)
        {
            tracing::debug!(
                layer = S::NAME,
                partition,
                position,
                "position past the last record read; recording it"
            );
            self.buffer.skip_to(partition, position);
        }
    }

    /// How much is buffered.
    pub fn buffered(&self) -> Buffered {
        self.buffer.size()
    }

    /// The ends of everything read and not written: a failed buffer's and the current one's.
    pub fn buffered_ends(&self) -> Positions {
        let mut ends = self
            .failed
            .as_ref()
            .map(|failed| failed.ends().clone())
            .unwrap_or_default();
        ends.extend(self.buffer.ends().iter().map(|(&p, &o)| (p, o)));
        ends
    }

    /// Settles the previous write, writes a failed buffer again, then starts writing the
    /// buffer in the background, fenced on the expected positions. Returns what the writes
    /// that ended during the call (or since the last one) wrote. On failure the buffers are
    /// kept and the error returned.
    pub fn commit(&mut self) -> Result<Option<Committed>, S::Error> {
        let settled = self.settle()?;
        let retried = self.retry_failed()?;
        if let Some(taken) = self.buffer.take()? {
            let mut store = self
                .store
                .take()
                .ok_or(IngestError::StoreLost { layer: S::NAME })?;
            let expected = self.expected.clone();
            self.in_flight = Some(self.runtime.spawn(async move {
                let started = Instant::now();
                let result = store.write(&taken, &expected).await;
                Written {
                    took: started.elapsed(),
                    store,
                    taken,
                    result,
                }
            }));
        }
        Ok(Committed::combine(
            self.unreported.take(),
            Committed::combine(settled, retried),
        ))
    }

    /// Whether a write started by `commit` is still running: the loop holds early commits
    /// back until it ends rather than waiting for it in the next `commit`.
    pub fn writing(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|in_flight| !in_flight.is_finished())
    }

    /// Commits everything buffered and waits for it (before a revoke or a stop, and while
    /// isolating a refused record).
    pub fn commit_all(&mut self) -> Result<Option<Committed>, S::Error> {
        let started = self.commit()?;
        Ok(Committed::combine(started, self.settle()?))
    }

    /// Forgets everything read but not written.
    pub fn drop_uncommitted(&mut self) {
        self.buffer.clear();
        self.failed = None;
    }

    /// Re-reads the stored positions of the assigned partitions (after a fence, or to follow
    /// an operator's move) and expects them from now on. Returns where to read each from.
    pub fn reload(
        &mut self,
        low_watermark: &mut dyn FnMut(Partition) -> Result<Offset, IngestError>,
    ) -> Result<BTreeMap<Partition, StartAt>, S::Error> {
        // Whatever a write still running did not write is read again from the stored
        // positions, so a failed buffer is not written later.
        if let Err(error) = self.settle_unreported() {
            tracing::warn!(layer = S::NAME, %error, "a write in flight failed; its records are read again from the stored positions");
        }
        self.failed = None;
        let loaded = self.load(&self.expected.partitions(), low_watermark)?;
        self.expected.reload(loaded);
        Ok(self.expected.starts())
    }

    /// The partitions were revoked: forget their positions.
    pub fn revoked(&mut self) {
        self.expected.clear();
    }

    /// Where each assigned partition stands in the store, as this process last wrote or
    /// loaded it.
    pub fn positions(&self) -> BTreeMap<Partition, StartAt> {
        self.expected.starts()
    }

    /// The stored positions of the assigned partitions that have one.
    pub fn stored_positions(&self) -> Positions {
        self.expected.stored()
    }

    /// Books a write's outcome: a written buffer moves the expected positions and is given
    /// back to the buffer; a failed one is kept and written again before any later one.
    fn book(
        &mut self,
        taken: TakenOf<S>,
        result: Result<(), S::Error>,
        took: Duration,
    ) -> Result<Option<Committed>, S::Error> {
        match result {
            Ok(()) => {
                self.expected.advance(taken.ends());
                let committed = Committed::of(&taken, took);
                self.buffer.recycle(taken);
                Ok(Some(committed))
            }
            Err(error) => {
                self.failed = Some(taken);
                Err(error)
            }
        }
    }

    /// Waits for the background write, if any, takes the store back and books it. A task
    /// that failed (a panic) loses its buffer, nothing of which was written, and the store:
    /// the error stops the layer, and a restart reads those records again.
    fn settle(&mut self) -> Result<Option<Committed>, S::Error> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(None);
        };
        let written = self
            .runtime
            .block_on(in_flight)
            .map_err(|join| IngestError::WriteTask {
                layer: S::NAME,
                source: join,
            })?;
        self.store = Some(written.store);
        self.book(written.taken, written.result, written.took)
    }

    /// Settles the background write outside `commit`; the next `commit` reports it.
    fn settle_unreported(&mut self) -> Result<(), S::Error> {
        let settled = self.settle()?;
        self.unreported = Committed::combine(self.unreported.take(), settled);
        Ok(())
    }

    /// Writes a buffer whose write failed again, synchronously.
    fn retry_failed(&mut self) -> Result<Option<Committed>, S::Error> {
        let Some(taken) = self.failed.take() else {
            return Ok(None);
        };
        let runtime = self.runtime.clone();
        let expected = self.expected.clone();
        let store = match self.store() {
            Ok(store) => store,
            Err(error) => {
                self.failed = Some(taken);
                return Err(error.into());
            }
        };
        let started = Instant::now();
        let result = runtime.block_on(store.write(&taken, &expected));
        self.book(taken, result, started.elapsed())
    }
}

#[cfg(test)]
mod tests;
