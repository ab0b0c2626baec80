//! Braid's jobs: every operation that runs on its own, recorded in the job history, started by
//! the scheduler, the CLI or the admin API the same way.
//!
//! - [`kind`]: every job and its parameters ([`JobKind`]);
//! - [`runner`]: running one job with retries and backoff;
//! - [`procedures`]: the operators' procedures on history (replay speed, recover from the
//!   lake, republish to Kafka);
//! - [`history`]: every run of every job in `braid_internal.job_runs`;
//! - [`scheduler`]: cron schedules from the config, with one active scheduler per database
//!   (a PostgreSQL advisory lock); others wait as standby and take over when it dies.

pub mod history;
pub mod kind;
pub mod procedures;
pub mod runner;
pub mod scheduler;

pub use kind::{JOB_NAMES, JobKind, JobRequestError};
pub use runner::{JobContext, JobError, JobOutput, ProgressFn, run_job, run_job_reporting};
pub use scheduler::run_scheduler;
