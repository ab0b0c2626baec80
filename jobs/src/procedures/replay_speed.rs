//! `replay speed`: delete the speed rows after the last cut and move the positions back to it,
//! after checking that Kafka still holds every record from there. Running speed processes read
//! those records again.

use std::collections::BTreeMap;

use ingest::kafka::Watermarks;
use schemas::config::KafkaConfig;
use schemas::pg::SpeedReset;
use schemas::pg_layout::ViewLayout;
use schemas::view::View;
use sqlx::PgPool;

use super::ProcedureError;
use crate::history::JobReport;
use schemas::position::Positions;

/// Replays the speed layer of `views` from the last cut (`from_cut`, when given, must be it);
/// `kafka` names the source topic and how to reach it.
pub async fn reset_speed(
    kafka: &KafkaConfig,
    views: &[View],
    pool: &PgPool,
    from_cut: Option<i64>,
) -> Result<SpeedReset, ProcedureError> {
    let topic = &kafka.topic;
    let marks = super::watermarks(kafka).await?;
    // Kafka must still hold every record from the cut on; otherwise only the lake can help.
    let cut = match schemas::pg::last_cut(pool, topic).await? {
        Some(epoch) => schemas::pg::cut_offsets(pool, topic, epoch).await?,
        None => BTreeMap::new(),
    };
    for (&partition, &Watermarks { low, .. }) in &marks {
        let start = cut.get(&partition).copied().unwrap_or(0);
        if start < low {
            return Err(ProcedureError::ReplayPastRetention {
                topic: topic.clone(),
                partition,
                start,
                low,
            });
        }
    }
    let starts: Positions = marks.iter().map(|(p, m)| (*p, m.low)).collect();
    let tables: Vec<String> = views
        .iter()
        .map(|v| ViewLayout::of(v).speed_table)
        .collect();
    let reset =
        schemas::pg::reset_speed_to_last_cut(pool, topic, &tables, from_cut, &starts).await?;
    tracing::info!(
        cut = ?reset.cut_epoch,
        deleted_rows = reset.deleted_rows,
        records_to_replay = reset.records_to_replay(),
        moved = ?reset.moved,
        "speed rows after the cut deleted and positions moved back; running speed processes re-read from there"
    );
    Ok(reset)
}

/// The job-history report of a speed replay.
pub fn report(reset: &SpeedReset) -> JobReport {
    JobReport {
        cut_epoch: reset.cut_epoch,
        rows_read: Some(reset.records_to_replay()),
        rows_written: Some(reset.deleted_rows as i64),
        ..Default::default()
    }
}
