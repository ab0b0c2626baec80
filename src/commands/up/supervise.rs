//! What `braid up` does when one of its tasks ends before it is asked to stop (an error or a
//! panic): either the whole of `braid up` stops with an error naming the task ([`essential`]),
//! or the task is started again after a growing pause ([`restarted`]). Each is logged, naming
//! the task. docs/architecture.md says which task gets which, and why.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio::task::JoinHandle;

use crate::stop::StopFlag;

/// The first pause before a restart.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause; a task that ran this long before it ended starts again after
/// [`FIRST_PAUSE`].
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// The task's own result, or its panic as an error.
async fn outcome<T: Send + 'static>(
    task: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio::spawn(task).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => Err(anyhow!("it panicked: {}", panic_text(join))),
        Err(join) => Err(anyhow!("it was cancelled: {join}")),
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs a task `braid up` cannot do without: should it end before `stop` is set (an error, a
/// panic, or a return), `stop` is set, so that every other task finishes, and its result is
/// an error naming the task.
pub fn essential<T: Send + 'static>(
    name: &'static str,
    stop: &StopFlag,
    task: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> JoinHandle<anyhow::Result<T>> {
    let stop = stop.clone();
    tokio::spawn(async move {
        let result = outcome(task).await;
        if stop.is_stopped() {
            return result.map_err(|e| e.context(format!("the {name} failed")));
        }
        stop.stop();
        let error = match result {
            Ok(_) => anyhow!("the {name} ended before braid up was asked to stop"),
            Err(e) => e.context(format!("the {name} failed")),
        };
        tracing::error!(
            task = name,
            error = format!("{error:#}"),
            "stopping braid up"
        );
        Err(error.context("braid up stopped"))
    })
}

/// Runs a task that `braid up` starts again should it end with an error or a panic before
/// `stop` is set: after [`FIRST_PAUSE`], twice as long after each further end, at most
/// [`LONGEST_PAUSE`]. A task that returns `Ok` early has nothing to do and is not started again.
pub fn restarted<F, Fut>(name: &'static str, stop: &StopFlag, mut start: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        loop {
            let started = Instant::now();
            let result = outcome(start()).await;
            let error = match result {
                Ok(()) if stop.is_stopped() => return,
                Ok(()) => {
                    tracing::info!(task = name, "finished: nothing to do");
                    return;
                }
                Err(error) if stop.is_stopped() => {
                    tracing::error!(
                        task = name,
                        error = format!("{error:#}"),
                        "failed while stopping"
                    );
                    return;
                }
                Err(error) => error,
            };
            if started.elapsed() >= LONGEST_PAUSE {
                pause = FIRST_PAUSE;
            }
            tracing::error!(
                task = name,
                error = format!("{error:#}"),
                restart_in_s = pause.as_secs(),
                "the task ended; starting it again"
            );
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.stopped() => return,
            }
            pause = (pause * 2).min(LONGEST_PAUSE);
            tracing::info!(task = name, "starting the task again");
        }
    })
}
