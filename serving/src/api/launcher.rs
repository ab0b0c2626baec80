//! How the API starts jobs: a trait the binary implements with the real jobs, so the serving
//! crate does not depend on them.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

/// Why a job could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No job has this name.
    #[error("unknown job `{name}`; the jobs are {known}")]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The jobs there are, comma-separated.
        known: String,
    },
    /// A parameter of the job is wrong.
    #[error("{message}")]
    BadParameter {
        /// The parameter.
        parameter: String,
        /// What is wrong.
        message: String,
    },
    /// The job could not start (the database refused, ...).
    #[error("{0}")]
    Failed(String),
}

/// Starts jobs on behalf of the API. `braid serve` implements it with the real jobs.
pub trait JobLauncher: Send + Sync {
    /// Starts `job` with `parameters` (a JSON object) in the background and returns the id of
    /// its first recorded run in the job history.
    fn launch(
        &self,
        job: &str,
        parameters: Value,
    ) -> Pin<Box<dyn Future<Output = Result<i64, LaunchError>> + Send + '_>>;
}
