//! `braid speed`: the speed layer.

use schemas::BraidConfig;

use crate::stop::StopFlag;

/// Runs the speed layer on a dedicated thread and waits for it.
pub async fn spawn(
    config: &BraidConfig,
    pool: sqlx::PgPool,
    stop: StopFlag,
) -> anyhow::Result<speed_layer::SpeedSummary> {
    ingest::kafka::refuse_compacted_source(&config.kafka).await?;
    let settings = crate::settings::speed_layer::settings(config);
    let runtime = tokio::runtime::Handle::current();
    super::on_thread("speed", move || {
        speed_layer::run(settings, pool, runtime, stop.shared())
    })
    .await
}
