//! Each subcommand's entry point.

pub mod alerts;
pub mod batch;
pub mod dimensions;
pub mod jobs;
mod migrate;
pub mod publish;
pub mod replay;
pub mod serve;
mod services;
pub mod sink;
pub mod speed;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use schemas::BraidConfig;

pub use migrate::{connect, migrate};

use crate::cli::{Cli, Command};
use crate::stop::StopFlag;

/// The config file used when --config is not given.
pub const DEFAULT_CONFIG_FILE: &str = "braid.toml";

/// Loads the layered configuration, then applies the --brokers and --database-url flags.
pub fn load_config(cli: &Cli) -> anyhow::Result<BraidConfig> {
    let path: PathBuf = match &cli.config {
        Some(path) => path.clone(),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => PathBuf::from(DEFAULT_CONFIG_FILE),
        None => anyhow::bail!(
            "no config file: ./{DEFAULT_CONFIG_FILE} does not exist; pass --config FILE or set BRAID_CONFIG \
             (the repository's braid.toml is the demo clickstream)"
        ),
    };
    let mut config = BraidConfig::load(Some(&path))?;
    if let Some(brokers) = &cli.brokers {
        config.kafka.brokers.clone_from(brokers);
    }
    if let Some(url) = &cli.database_url {
        config.postgres.url.clone_from(url);
    }
    Ok(config)
}

/// Runs a blocking component (the speed layer, the sink) on a thread of its own, inside a
/// tracing span named after it, and waits for its result without blocking the runtime.
pub async fn on_thread<T, E>(
    name: &'static str,
    component: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> anyhow::Result<T>
where
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let span = tracing::info_span!("component", name);
            let _entered = span.enter();
            let _ = done.send(component());
        })
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(finished
        .await
        .with_context(|| format!("the {name} thread ended without a result"))??)
}

/// Serves metrics if asked, migrates, then runs a long-lived component until Ctrl-C or SIGTERM
/// and logs its totals.
async fn run_until_stopped<T, F, Fut>(
    config: BraidConfig,
    metrics_listen: Option<std::net::SocketAddr>,
    component: F,
) -> anyhow::Result<ExitCode>
where
    T: std::fmt::Debug,
    F: FnOnce(BraidConfig, sqlx::PgPool, StopFlag) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    if let Some(address) = metrics_listen {
        crate::metrics::serve(address)?;
    }
    let pool = connect(&config).await?;
    migrate(&pool, &config).await?;
    let stop = StopFlag::default();
    stop.stop_on_signals();
    let summary = component(config, pool, stop).await?;
    tracing::info!(?summary, "finished");
    Ok(ExitCode::SUCCESS)
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Services(args) => services::run(args.action),
        Command::Generate(args) if args.stdout => {
            anyhow::ensure!(
                matches!(args.format, None | Some(crate::cli::GenerateFormat::Json)),
                "--stdout writes JSON lines; --format avro and --format protobuf produce to Kafka (leave out --stdout)"
            );
            let written = crate::generate::write_lines(args, std::io::stdout().lock())?;
            tracing::debug!(written, "generated");
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            let config = load_config(&cli)?;
            let topic = args
                .topic
                .clone()
                .unwrap_or_else(|| config.kafka.topic.clone());
            // A dimension's topic keeps the last message per key.
            let configs: &[(&str, &str)] = match args.workload {
                crate::cli::Workload::YsbCampaigns => &[("cleanup.policy", "compact")],
                _ => &[],
            };
            if ingest::kafka::ensure_topic_with(&config.kafka, &topic, args.partitions, configs)
                .await?
            {
                tracing::info!(topic, partitions = args.partitions, "created the topic");
            }
            let stop = StopFlag::default();
            stop.stop_on_signals();
            let encoder = crate::generate::encode::encoder_for(args, &config, &topic).await?;
            let summary =
                crate::generate::produce(args, &config.kafka, &topic, encoder.as_ref(), stop)
                    .await?;
            anyhow::ensure!(
                summary.failed == 0,
                "{} of {} messages could not be delivered",
                summary.failed,
                summary.sent
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = load_config(&cli)?;
            let pool = connect(&config).await?;
            migrate(&pool, &config).await.context("braid migrate")?;
            migrate::record_rules(&pool, &config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => up::run(load_config(&cli)?, args).await,
        Command::Speed(args) => {
            run_until_stopped(
                load_config(&cli)?,
                args.metrics_listen,
                |config, pool, stop| async move { speed::spawn(&config, pool, stop).await },
            )
            .await
        }
        Command::Sink(args) => {
            run_until_stopped(
                load_config(&cli)?,
                args.metrics_listen,
                |config, pool, stop| async move { sink::spawn(&config, pool, stop).await },
            )
            .await
        }
        Command::Batch(args) => batch::run(load_config(&cli)?, args).await,
        Command::Jobs(args) => jobs::run(load_config(&cli)?, args).await,
        Command::Serve(args) => serve::run(load_config(&cli)?, args).await,
        Command::Alerts(args) => alerts::run(load_config(&cli)?, args).await,
        Command::Dimensions(args) => dimensions::run(load_config(&cli)?, args).await,
        Command::Replay(args) => replay::run(load_config(&cli)?, args).await,
        Command::Recover(args) => replay::recover_from_lake(load_config(&cli)?, args.force).await,
    }
}
