//! Braid's scheduler.
//!
//! - [`history`]: every run of every job in `braid_internal.job_runs`;
//! - [`runner`]: running one job (batch recompute, vacuum) with retries and backoff;
//! - [`scheduler`]: cron schedules from the config, with one active scheduler per database
//!   (a PostgreSQL advisory lock); others wait as standby and take over when it dies.

pub mod history;
pub mod runner;
pub mod scheduler;

pub use runner::{JobContext, JobError, JobKind, run_job, run_job_reporting};
pub use scheduler::run_scheduler;
