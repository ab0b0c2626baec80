//! `braid sink`: the Delta sink.

use batch_layer::sink::SinkSummary;
use schemas::BraidConfig;

use crate::stop::StopFlag;

/// Runs the sink on a dedicated thread and waits for it.
pub async fn spawn(
    config: &BraidConfig,
    pool: sqlx::PgPool,
    stop: StopFlag,
) -> anyhow::Result<SinkSummary> {
    ingest::kafka::refuse_compacted_source(&config.kafka).await?;
    let settings = crate::settings::batch_layer::sink(config);
    let runtime = tokio::runtime::Handle::current();
    super::on_thread("sink", move || {
        batch_layer::sink::run(settings, pool, runtime, stop.shared())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_keeps_its_own_dead_letter_payload_bound() {
        let demo = include_str!("../../braid.toml");
        let env = [
            (
                "BRAID__SPEED__DEAD_LETTER_MAX_PAYLOAD_BYTES".to_string(),
                "11".to_string(),
            ),
            (
                "BRAID__SINK__DEAD_LETTER_MAX_PAYLOAD_BYTES".to_string(),
                "9".to_string(),
            ),
        ];
        let config = BraidConfig::load_from(Some(("braid.toml", demo)), env).unwrap();
        assert_eq!(settings(&config).ingest.dead_letter_max_payload_bytes, 9);
        assert_eq!(
            super::super::speed::settings(&config)
                .ingest
                .dead_letter_max_payload_bytes,
            11
        );
    }
}
