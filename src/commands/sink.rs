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
