//! `braid speed`: the speed layer.

use std::process::ExitCode;
use std::time::Duration;

use schemas::BraidConfig;

use crate::cli::SpeedArgs;
use crate::stop::StopFlag;

/// The speed layer's settings from the configuration.
pub fn settings(config: &BraidConfig) -> speed_layer::SpeedSettings {
    speed_layer::SpeedSettings {
        topic: config.kafka.topic.clone(),
        group: config.kafka.speed_group.clone(),
        client: crate::kafka::consumer_config(&config.kafka),
        flush_interval: Duration::from_millis(config.speed.flush_interval_ms),
        flush_max_records: config.speed.flush_max_records,
        dead_letter_max_payload_bytes: config.speed.dead_letter_max_payload_bytes,
        schema: config.schema.clone(),
        views: config.views.clone(),
    }
}

/// Migrates, then runs the speed layer on its own thread until Ctrl-C or SIGTERM.
pub async fn run(config: BraidConfig, args: &SpeedArgs) -> anyhow::Result<ExitCode> {
    if let Some(address) = args.metrics_listen {
        crate::metrics::serve(address)?;
    }
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    let stop = StopFlag::default();
    stop.stop_on_signals();
    let summary = spawn(&config, pool, stop).await?;
    tracing::info!(?summary, "speed layer finished");
    Ok(ExitCode::SUCCESS)
}

/// Runs the speed layer on a dedicated thread and waits for it.
pub async fn spawn(
    config: &BraidConfig,
    pool: sqlx::PgPool,
    stop: StopFlag,
) -> anyhow::Result<speed_layer::SpeedSummary> {
    let settings = settings(config);
    let runtime = tokio::runtime::Handle::current();
    super::on_thread("speed", move || {
        speed_layer::run(settings, pool, runtime, stop.shared())
    })
    .await
}
