//! A flush running on the runtime while the consumer thread reads the next micro-batch. At most
//! one runs at a time: the next commit waits for it first, so flushes reach PostgreSQL in the
//! order they were read, each fenced on the positions the one before it stored.

use std::sync::Arc;

use schemas::position::Positions;
use schemas::validation_rules::ValidationRules;
use sqlx::PgPool;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::aggregate::MicroBatch;
use crate::error::SpeedError;
use crate::flush::{FlushOutcome, ViewWriter, flush};

/// What every flush needs besides its batch and the positions it is fenced on.
#[derive(Debug, Clone)]
pub struct Flusher {
    /// The database.
    pub pool: PgPool,
    /// The source topic.
    pub topic: String,
    /// The validation rules this process runs; checked against the recorded ones per flush.
    pub rules: ValidationRules,
    /// One prepared upsert per view, in the batch's view order.
    pub writers: Arc<[ViewWriter]>,
}

impl Flusher {
    /// Writes `batch` in one transaction fenced on `expected`, which first checks the recorded
    /// validation rules. Stops, rather than flushes, once the recorded rules changed (the sink
    /// may now accept other records than this process).
    pub async fn flush(
        &self,
        batch: &MicroBatch,
        expected: &Positions,
    ) -> Result<FlushOutcome, SpeedError> {
        flush(
            &self.pool,
            &self.topic,
            &self.rules,
            &self.writers,
            batch,
            expected,
        )
        .await
    }

    /// Starts flushing `batch` on `runtime`.
    pub fn spawn(&self, runtime: &Handle, batch: MicroBatch, expected: Positions) -> InFlight {
        let flusher = self.clone();
        InFlight {
            handle: runtime.spawn(async move {
                let result = flusher.flush(&batch, &expected).await;
                (batch, result)
            }),
        }
    }
}

/// A flush in the background; it owns its batch until it ends.
#[derive(Debug)]
pub struct InFlight {
    handle: JoinHandle<(MicroBatch, Result<FlushOutcome, SpeedError>)>,
}

impl InFlight {
    /// Whether the flush has ended (its outcome waits to be booked).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the flush: its batch and how the write ended. `Err` when the task itself
    /// failed (a panic: the batch is lost, nothing of it was committed, and the error stops the
    /// layer; a restart reads it again).
    pub fn finish(
        self,
        runtime: &Handle,
    ) -> Result<(MicroBatch, Result<FlushOutcome, SpeedError>), SpeedError> {
        runtime.block_on(self.handle).map_err(SpeedError::FlushTask)
    }
}
