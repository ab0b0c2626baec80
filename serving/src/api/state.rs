//! What every handler gets: the database, what is served, Kafka's state, the clock, the job
//! launcher and the metrics renderer.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use schemas::view::View;
use sqlx::PgPool;

use super::answer_cache::AnswerCache;
use super::error::ApiError;
use super::kafka_watch::KafkaWatch;
use super::launcher::JobLauncher;
use super::params::Limits;

/// Where "now" comes from: the wall clock in production, a fixed instant in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Renders the Prometheus exposition of the process's metrics.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What the API serves, from the validated configuration.
#[derive(Debug, Clone)]
pub struct ServingSettings {
    /// The views, by name.
    pub views: Vec<View>,
    /// The Kafka topic whose speed positions are reported.
    pub topic: String,
    /// Caps on queries.
    pub limits: Limits,
    /// The bearer token of the admin endpoints; `None` turns them off.
    pub admin_token: Option<String>,
    /// The names of the configured alert rules.
    pub alert_rules: Vec<String>,
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// What is served.
    pub settings: Arc<ServingSettings>,
    /// Kafka's last known state.
    pub kafka: KafkaWatch,
    /// The clock.
    pub clock: Clock,
    /// Starts admin jobs; `None` when this server cannot run them.
    pub jobs: Option<Arc<dyn JobLauncher>>,
    /// Renders /metrics; `None` when no recorder is installed.
    pub metrics: Option<MetricsRender>,
    /// Recent answers (off unless the server turns it on).
    pub answers: AnswerCache,
}

impl AppState {
    /// A state with the wall clock, no job launcher and no metrics.
    pub fn new(pool: PgPool, settings: ServingSettings, kafka: KafkaWatch) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            kafka,
            clock: Arc::new(Utc::now),
            jobs: None,
            metrics: None,
            answers: AnswerCache::off(),
        }
    }

    /// The view named `name`.
    pub fn view(&self, name: &str) -> Result<&View, ApiError> {
        self.settings
            .views
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| ApiError::UnknownView(name.to_string()))
    }
}
