//! `braid migrate`: metadata migrations and per-view tables. Also run at the start of every
//! long-running command.

use std::time::Duration;

use anyhow::Context;
use schemas::BraidConfig;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The URL with its passwords hidden, for messages.
pub fn redacted(url: &str) -> String {
    schemas::config::secrets::redact_url(url)
}

/// Opens the connection pool, failing fast with the (redacted) URL if the database does not answer.
pub async fn connect(config: &BraidConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(config.postgres.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|connection, _| {
            Box::pin(async move { schemas::pg::prefer_lz4_compression(connection).await })
        })
        .connect(&config.postgres.url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {} (postgres.url)",
                redacted(&config.postgres.url)
            )
        })
}

/// Applies the migrations and creates every view's tables.
pub async fn migrate(pool: &PgPool, config: &BraidConfig) -> anyhow::Result<()> {
    schemas::pg::migrate(pool).await?;
    schemas::pg::ensure_view_tables(pool, &config.views).await?;
    check_dimension_files(config)?;
    // Before the serving views, which join the dimension tables.
    dimensions::store::prepare(pool, &config.dimensions).await?;
    let bi_password = std::env::var("BRAID_BI_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    serving::sql::install(pool, &config.views, &config.serving, bi_password.as_deref()).await?;
    tracing::info!(views = config.views.len(), "database migrated");
    Ok(())
}

/// Every file a dimension is loaded from exists (relative paths from the config file's folder),
/// so that a missing file stops the start rather than the first `braid dimensions load`.
fn check_dimension_files(config: &BraidConfig) -> anyhow::Result<()> {
    use schemas::dimension::DimensionSource;
    let base = config
        .file
        .as_deref()
        .and_then(std::path::Path::parent)
        .unwrap_or(std::path::Path::new("."));
    for (index, dimension) in config.dimensions.iter().enumerate() {
        let (key, path) = match &dimension.source {
            DimensionSource::Csv(path) => ("csv", path),
            DimensionSource::Parquet(path) => ("file", path),
            _ => continue,
        };
        anyhow::ensure!(
            base.join(path).is_file(),
            "config key `dimensions[{index}].source.{key}`: dimension `{}`: {} is not a file",
            dimension.name,
            base.join(path).display()
        );
    }
    Ok(())
}

/// Records the config's validation rules for its topic (`braid migrate` only: the operator
/// accepts a changed schema; the layers refuse to run other rules).
pub async fn record_rules(pool: &PgPool, config: &BraidConfig) -> anyhow::Result<()> {
    let rules = schemas::validation_rules::ValidationRules::of(&config.schema);
    let changed = schemas::pg::record_validation_rules(pool, &config.kafka.topic, &rules).await?;
    if !changed.is_empty() {
        let changed: Vec<String> = changed.iter().map(ToString::to_string).collect();
        tracing::info!(
            topic = config.kafka.topic,
            fingerprint = rules.fingerprint(),
            changed = changed.join("; "),
            "recorded new validation rules; layers still running the old ones stop at their next flush"
        );
    }
    Ok(())
}
