//! `braid batch run`: one batch recompute, published atomically.

use std::process::ExitCode;
use std::time::Duration;

use batch_layer::recompute::{BatchError, run_batch};
use schemas::BraidConfig;

use crate::cli::{BatchArgs, BatchCommand};

/// Exit code of a batch run that found another one in progress and did nothing.
pub const EXIT_ALREADY_RUNNING: u8 = 3;

/// Runs the subcommand.
pub async fn run(config: BraidConfig, args: &BatchArgs) -> anyhow::Result<ExitCode> {
    let BatchCommand::Run { view, wait_timeout } = &args.command;
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    let wait_timeout = wait_timeout.unwrap_or(config.jobs.batch.wait_timeout_s.0);
    let settings = crate::settings::batch_layer::batch(&config, Duration::from_secs(wait_timeout));
    match run_batch(&settings, &pool, view.as_deref()).await {
        Ok(outcome) => {
            println!(
                "published: cut epoch {}, covered epoch {}, Delta version {}, {} records read",
                outcome.cut_epoch,
                outcome.covered_epoch,
                outcome
                    .delta_version
                    .map_or("none".into(), |v| v.to_string()),
                outcome.rows_read
            );
            for view in &outcome.views {
                println!(
                    "  {}: run {}, {} rows",
                    view.view, view.run_id, view.rows_written
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(BatchError::AlreadyRunning) => {
            eprintln!("braid batch run: another batch run is in progress; this one did nothing");
            Ok(ExitCode::from(EXIT_ALREADY_RUNNING))
        }
        Err(error) => Err(error.into()),
    }
}
