//! The job history (`braid_internal.job_runs`), whose SQL lives in the `jobs-store` crate
//! beside this one (the admin API reads it too, without the batch layer).

pub use jobs_store::{JobReport, JobRun, finish, list, set_progress, start};
