//! `recover --from-lake`: take a cut at the Delta sink's positions and move the speed layer
//! there, in one transaction. The next batch run covers the skipped records from the lake.

use std::collections::BTreeMap;

use batch_layer::lake::Lake;
use ingest::kafka::Watermarks;
use schemas::config::KafkaConfig;
use schemas::pg::{Cut, CutAtPositions, Moved};
use sqlx::PgPool;

use super::ProcedureError;
use crate::history::JobReport;
use schemas::position::{Partition, Positions};

/// What a recovery did.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The cut taken at the sink's positions.
    pub cut: Cut,
    /// Per partition: the speed layer's position before and after.
    pub moved: BTreeMap<Partition, Moved>,
    /// The sink's committed positions.
    pub sink: Positions,
}

impl Recovery {
    /// Records the speed layer skipped, which the next batch run covers from the lake.
    pub fn skipped(&self) -> i64 {
        self.moved.values().map(|m| m.after - m.before).sum()
    }
}

/// Recovers the speed layer of `kafka`'s source topic from `lake`. Refused, changing nothing,
/// when no partition is behind Kafka's retention, unless `force`.
pub async fn recover(
    kafka: &KafkaConfig,
    lake: &Lake,
    pool: &PgPool,
    force: bool,
) -> Result<Recovery, ProcedureError> {
    let topic = &kafka.topic;
    let marks = super::watermarks(kafka).await?;
    let partitions: Vec<i32> = marks.keys().copied().collect();
    let stored = schemas::pg::load_positions(pool, topic).await?;
    let behind: Vec<String> = marks
        .iter()
        .filter_map(|(p, Watermarks { low, .. })| {
            let at = stored.get(p).copied().unwrap_or(0);
            (at < *low).then(|| format!("{p}: {at} < {low}"))
        })
        .collect();
    if behind.is_empty() && !force {
        return Err(ProcedureError::NotBehindRetention {
            topic: topic.clone(),
        });
    }
    if !behind.is_empty() {
        tracing::info!(
            partitions = behind.join(", "),
            "the speed layer is behind Kafka's retention (partition: stored < first offset)"
        );
    }
    let table = lake.open().await?;
    let sink = lake.positions_in_log(&table, &partitions).await?;
    if sink.is_empty() {
        return Err(ProcedureError::LakeHoldsNothing {
            uri: lake.uri().to_string(),
            topic: topic.clone(),
        });
    }
    let CutAtPositions { cut, moved } = schemas::pg::cut_at_positions(pool, topic, &sink).await?;
    tracing::info!(
        cut = cut.epoch,
        ?moved,
        "took a cut at the Delta sink's positions"
    );
    Ok(Recovery { cut, moved, sink })
}

/// The job-history report of a recovery.
pub fn report(recovery: &Recovery) -> JobReport {
    JobReport {
        cut_epoch: Some(recovery.cut.epoch),
        rows_read: Some(recovery.skipped()),
        ..Default::default()
    }
}
