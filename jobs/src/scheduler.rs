//! The scheduler: cron schedules, one active scheduler per database.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cron::Schedule;
use schemas::pg::leader::LeaderLock;

use crate::kind::JobKind;
use crate::runner::{JobContext, JobError, run_job};

/// The advisory-lock key that makes a scheduler the active one.
const SCHEDULER_LOCK: &str = "braid.scheduler";

/// Runs the schedules until `stop` is set. While another scheduler holds the lock this one
/// waits as standby; it takes over within a second of the active one's connection ending.
pub async fn run_scheduler(
    ctx: &JobContext,
    schedules: &[(JobKind, String)],
    stop: Arc<AtomicBool>,
) -> Result<(), JobError> {
    let schedules: Vec<(JobKind, Schedule)> = schedules
        .iter()
        .map(|(kind, expression)| {
            (
                kind.clone(),
                Schedule::from_str(expression)
                    .expect("cron expressions are checked when the config loads"),
            )
        })
        .collect();
    let mut announced_standby = false;
    while !stop.load(Ordering::Relaxed) {
        // The database may be restarting: a failed attempt to take the lock is retried, never
        // the end of the scheduler.
        let mut lock = match LeaderLock::try_take(&ctx.pool, SCHEDULER_LOCK).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                if !announced_standby {
                    tracing::info!("standby: another scheduler is active; waiting to take over");
                    announced_standby = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reach the database to take the scheduler lock; trying again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(jobs = ?schedules.iter().map(|(k, s)| format!("{} {}", k.name(), s)).collect::<Vec<_>>(), "active scheduler");
        announced_standby = false;
        let result = lead(ctx, &schedules, &stop, &mut lock).await;
        lock.release().await;
        result?;
    }
    Ok(())
}

/// Fires due jobs while holding the lock. Returns when stopped or when the lock's connection
/// fails (then the caller goes back to standby).
async fn lead(
    ctx: &JobContext,
    schedules: &[(JobKind, Schedule)],
    stop: &AtomicBool,
    lock: &mut LeaderLock,
) -> Result<(), JobError> {
    let mut next: Vec<Option<DateTime<Utc>>> = schedules
        .iter()
        .map(|(_, s)| s.upcoming(Utc).next())
        .collect();
    while !stop.load(Ordering::Relaxed) {
        if !lock.still_held().await {
            tracing::warn!("lost the scheduler lock's connection; back to standby");
            return Ok(());
        }
        let now = Utc::now();
        for ((kind, schedule), due) in schedules.iter().zip(next.iter_mut()) {
            if due.is_some_and(|at| at <= now) {
                if let Err(error) = run_job(ctx, kind.clone(), "schedule").await {
                    tracing::error!(job = kind.name(), %error, "scheduled job failed; it runs again at its next time");
                }
                *due = schedule.after(&Utc::now()).next();
            }
        }
        let until_next = next
            .iter()
            .flatten()
            .min()
            .map(|at| (*at - Utc::now()).to_std().unwrap_or_default());
        tokio::time::sleep(
            until_next
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_millis(500)),
        )
        .await;
    }
    Ok(())
}
