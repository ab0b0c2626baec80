//! Writing a buffer to the Delta table: dead letters, a fence on the log's positions, then one
//! commit of the Parquet files with one application transaction per partition. The ingest
//! pipeline runs it in the background, one at a time, while the loop fills the next buffer.

use std::time::Duration;

use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use ingest::Expected;
use schemas::pg::{self, DeadLetter, Layer};
use schemas::validation_rules::ValidationRules;
use sqlx::PgPool;

use super::SinkError;
use crate::lake::{app_id, positions_in_log};
use schemas::position::Positions;

/// The key of the commit-info entry holding the fingerprint of the validation rules the
/// commit's records passed.
pub const VALIDATION_RULES_KEY: &str = "braidValidationRules";

/// One buffer, ready to commit.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The valid records, in the table's layout.
    pub batch: RecordBatch,
    /// The next offset of every partition the buffer read.
    pub next_offsets: Positions,
    /// Refused records.
    pub dead_letters: Vec<DeadLetter>,
    /// Input bytes the buffer covers.
    pub input_bytes: u64,
}

/// What a commit needs besides the table and the buffer.
#[derive(Debug, Clone)]
pub struct Committer {
    /// Where dead letters go.
    pub pool: PgPool,
    /// The source topic.
    pub topic: String,
    /// Parquet settings.
    pub writer_properties: WriterProperties,
    /// The validation rules this process runs: checked against the recorded ones before every
    /// commit, and their fingerprint written into the commit's info.
    pub rules: ValidationRules,
}

/// Logs a commit as it ends (the loop's thread books it later, when it settles).
pub fn committed_log(table: &DeltaTable, pending: &Pending, took: Duration) {
    tracing::info!(
        rows = pending.batch.num_rows(),
        dead_letters = pending.dead_letters.len(),
        input_bytes = pending.input_bytes,
        version = table.version(),
        seconds = took.as_secs_f64(),
        "committed"
    );
}

impl Committer {
    /// Commits `pending`: dead letters first (idempotent), then the fence, then one Delta commit.
    pub async fn commit(
        &self,
        table: &mut DeltaTable,
        pending: &Pending,
        expected: &Expected,
    ) -> Result<(), SinkError> {
        if !pending.dead_letters.is_empty() {
            let mut tx = self.pool.begin().await?;
            pg::insert_dead_letters(&mut tx, Layer::Sink, &self.topic, &pending.dead_letters)
                .await?;
            tx.commit().await?;
        }
        // Stop, rather than commit, once the recorded rules changed (the speed layer may now
        // accept other records than this process). The check's transaction holds the recorded
        // row `FOR SHARE` until the Delta commit has ended, so `braid migrate` cannot record
        // other rules while a commit under these is on its way.
        let mut rules_held = self.pool.begin().await?;
        pg::check_validation_rules(&mut rules_held, &self.topic, &self.rules).await?;
        table.update_state().await?;
        let partitions: Vec<i32> = pending.next_offsets.keys().copied().collect();
        let in_log = positions_in_log(table, &self.topic, &partitions).await?;
        let moved: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| in_log.get(p).copied() != expected.get(*p))
            .collect();
        if !moved.is_empty() {
            return Err(SinkError::Fenced { partitions: moved });
        }
        let transactions: Vec<Transaction> = pending
            .next_offsets
            .iter()
            .map(|(&partition, &next)| Transaction::new(app_id(&self.topic, partition), next))
            .collect();
        let mut writer = RecordBatchWriter::for_table(table)?
            .with_writer_properties(self.writer_properties.clone())
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transactions(transactions)
                    .with_metadata([(
                        VALIDATION_RULES_KEY.to_string(),
                        self.rules.fingerprint().into(),
                    )]),
            );
        if pending.batch.num_rows() > 0 {
            writer.write(pending.batch.clone()).await?;
        }
        writer.flush_and_commit(table).await?;
        // The Delta commit is what counts; ending the check's transaction releases the row and
        // keeps the rules it recorded if none were (if the database went away meanwhile, the
        // lock went with the session, and the next commit records them again).
        if let Err(error) = rules_held.commit().await {
            tracing::warn!(%error, "ending the validation rules' check after the Delta commit");
        }
        Ok(())
    }
}
