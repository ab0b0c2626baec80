//! The job history (`braid_internal.job_runs`), whose SQL lives with the other metadata tables
//! in `schemas::pg::job_runs`.

pub use schemas::pg::job_runs::{JobReport, JobRun, finish, list, set_progress, start};
