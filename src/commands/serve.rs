//! `braid serve`: the REST API.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobs::{JobContext, JobKind, JobRequestError};
use schemas::BraidConfig;
use serde_json::Value;
use serving::AppState;
use serving::api::{JobLauncher, KafkaWatch, LaunchError};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::cli::ServeArgs;
use crate::stop::StopFlag;

/// The longest a query may run before PostgreSQL cancels it (the API answers 503).
const STATEMENT_TIMEOUT_MS: &str = "5000";

/// The environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "BRAID_ADMIN_TOKEN";

/// Starts jobs for the admin endpoints: every `jobs::JobKind`, parsed from the request by the
/// jobs crate and run by its runner, as the scheduler and the CLI run them.
struct JobRunner {
    context: JobContext,
}

impl JobLauncher for JobRunner {
    fn launch(
        &self,
        job: &str,
        parameters: Value,
    ) -> Pin<Box<dyn Future<Output = Result<i64, LaunchError>> + Send + '_>> {
        let job = job.to_string();
        Box::pin(async move {
            let kind = JobKind::from_request(&job, &parameters).map_err(|error| match error {
                JobRequestError::UnknownJob { name } => LaunchError::UnknownJob {
                    name,
                    known: jobs::JOB_NAMES.into(),
                },
                JobRequestError::BadParameter { parameter, message } => {
                    LaunchError::BadParameter { parameter, message }
                }
            })?;
            let (first_id, recorded) = tokio::sync::oneshot::channel();
            let context = self.context.clone();
            tokio::spawn(async move {
                let _ = jobs::run_job_reporting(&context, kind, "api", Some(first_id)).await;
            });
            recorded.await.map_err(|_| {
                LaunchError::Failed(format!(
                    "job `{job}` could not be recorded in the job history; see the server log"
                ))
            })
        })
    }
}

/// The API's pool and the jobs' pool. They are separate so that a job started through the
/// admin API neither holds the connections requests need nor runs under their statement timeout.
#[derive(Debug, Clone)]
pub struct ServePools {
    /// Requests: statements cancelled after [`STATEMENT_TIMEOUT_MS`], 2 s to get a connection.
    pub api: PgPool,
    /// Jobs started through the admin API: no statement timeout.
    pub jobs: PgPool,
}

impl ServePools {
    /// The API's own pool for `config`, and `jobs` for the jobs.
    pub async fn new(config: &BraidConfig, jobs: PgPool) -> anyhow::Result<Self> {
        let options: PgConnectOptions = config
            .postgres
            .url
            .parse()
            .context("postgres.url is not a PostgreSQL URL")?;
        let api = api_pool(options, config.postgres.max_connections)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to PostgreSQL at {} (postgres.url)",
                    super::migrate::redacted(&config.postgres.url)
                )
            })?;
        Ok(Self { api, jobs })
    }
}

/// A pool whose statements PostgreSQL cancels after [`STATEMENT_TIMEOUT_MS`], and that gives
/// up on a connection after 2 s so that requests answer 503 quickly while the database is down.
async fn api_pool(options: PgConnectOptions, max_connections: u32) -> sqlx::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(options.options([("statement_timeout", STATEMENT_TIMEOUT_MS)]))
        .await
}

/// The application state for `config`, with the real jobs and Kafka watch.
pub fn state(
    config: &BraidConfig,
    pools: ServePools,
    admin_token: Option<String>,
) -> anyhow::Result<AppState> {
    let kafka = KafkaWatch::spawn(
        &ingest::kafka::client_config(&config.kafka),
        config.kafka.topic.clone(),
        crate::settings::serving::watched_groups(config),
        Duration::from_secs(1),
    )
    .context("starting the Kafka watch (kafka.brokers)")?;
    let mut state = AppState::new(
        pools.api,
        crate::settings::serving::settings(config, admin_token),
        kafka,
    );
    state.answers = crate::settings::serving::answer_cache(config);
    state.answers.listen(state.pool.clone());
    state.jobs = Some(Arc::new(JobRunner {
        context: crate::settings::jobs::context(config, pools.jobs),
    }));
    Ok(state)
}

/// Runs the API until Ctrl-C or SIGTERM.
pub async fn run(config: BraidConfig, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    let pools = ServePools::new(&config, pool).await?;
    let stop = StopFlag::default();
    stop.stop_on_signals();
    let render: serving::api::MetricsRender = Arc::new(move || recorder.render());
    serve_until_stopped(&config, pools, args.listen, Some(render), stop).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serves the API on `listen` (default serving.listen) until `stop` is set.
pub async fn serve_until_stopped(
    config: &BraidConfig,
    pools: ServePools,
    listen: Option<std::net::SocketAddr>,
    metrics: Option<serving::api::MetricsRender>,
    stop: StopFlag,
) -> anyhow::Result<()> {
    let admin_token = std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let admin = admin_token.is_some();
    let mut state = state(config, pools, admin_token)?;
    state.metrics = metrics;
    let address =
        listen.unwrap_or_else(|| config.serving.listen.parse().expect("validated at load"));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (serving.listen or --listen)"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        views = config.views.len(),
        admin_endpoints = if admin { "on" } else { "off (BRAID_ADMIN_TOKEN is not set)" },
        "serving the API; GET /openapi.json describes it"
    );
    axum::serve(listener, serving::app(state))
        .with_graceful_shutdown(async move { stop.stopped().await })
        .await
        .context("serving the API")?;
    tracing::info!("the API stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn statement_timeout(pool: &PgPool) -> String {
        let (value,): (String,) = sqlx::query_as("SHOW statement_timeout")
            .fetch_one(pool)
            .await
            .unwrap();
        value
    }

    /// Requests run under the statement timeout on their own connections; jobs started through
    /// the admin API run without it, on others.
    #[sqlx::test(migrations = false)]
    async fn requests_have_a_statement_timeout_and_jobs_their_own_pool(pool: PgPool) {
        let options = (*pool.connect_options()).clone();
        let pools = ServePools {
            api: api_pool(options, 2).await.unwrap(),
            jobs: pool.clone(),
        };
        assert_eq!(statement_timeout(&pools.api).await, "5s");
        assert_eq!(statement_timeout(&pools.jobs).await, "0");
        // Every API connection busy: a job still gets one.
        let _held = (
            pools.api.acquire().await.unwrap(),
            pools.api.acquire().await.unwrap(),
        );
        let job = tokio::time::timeout(Duration::from_secs(5), pools.jobs.acquire()).await;
        assert!(
            job.is_ok_and(|c| c.is_ok()),
            "a job waits for the API's connections"
        );
    }
}
