//! `braid dimensions`: load a file-sourced dimension, follow Kafka-sourced ones, list them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use schemas::BraidConfig;
use schemas::dimension::DimensionSource;

use crate::cli::{DimensionsArgs, DimensionsCommand};
use crate::stop::StopFlag;

/// Runs the subcommand.
pub async fn run(config: BraidConfig, args: &DimensionsArgs) -> anyhow::Result<ExitCode> {
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    match &args.command {
        DimensionsCommand::Load { name } => {
            let dimension = config
                .dimensions
                .iter()
                .find(|d| &d.name == name)
                .with_context(|| {
                    format!(
                        "no dimension is named `{name}`; the config declares [{}]",
                        config
                            .dimensions
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            // Relative paths are taken from the config file's folder.
            let base = config
                .file
                .as_deref()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            let rows = dimensions::load(&pool, dimension, base).await?;
            println!(
                "dimension {name}: {rows} rows loaded into {}",
                dimension.table()
            );
        }
        DimensionsCommand::Follow => {
            let stop = StopFlag::default();
            stop.stop_on_signals();
            // As in `braid up`: a follow that ends with an error (the database or Kafka away)
            // starts again after a growing pause and resumes from the stored positions, rather
            // than ending the process, as the speed layer and the sink ride out an outage.
            let flag = stop.shared();
            super::up::supervise::restarted("dimension follower", &stop, move || {
                let (pool, config, flag) = (pool.clone(), config.clone(), flag.clone());
                async move {
                    let summary =
                        dimensions::follow(&pool, &config.kafka, &config.dimensions, flag).await?;
                    tracing::info!(?summary, "finished");
                    Ok(())
                }
            })
            .await?;
        }
        DimensionsCommand::List => {
            for d in &config.dimensions {
                let source = match &d.source {
                    DimensionSource::PostgresTable { schema, table } => {
                        format!("postgres_table {schema}.{table}")
                    }
                    DimensionSource::Parquet(path) => format!("file {}", path.display()),
                    DimensionSource::Csv(path) => format!("csv {}", path.display()),
                    DimensionSource::KafkaTopic(topic) => format!("kafka_topic {topic}"),
                };
                let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM {}",
                    d.table()
                )))
                .fetch_one(&pool)
                .await?;
                let attributes: Vec<String> = d
                    .attributes
                    .iter()
                    .map(|a| format!("{} {}", a.name, a.attribute_type.name()))
                    .collect();
                println!(
                    "{:<20} key {:<16} {rows:>9} rows  [{}]  from {source}",
                    d.name,
                    d.key,
                    attributes.join(", ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
