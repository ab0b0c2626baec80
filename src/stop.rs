//! A shared stop flag, set by Ctrl-C (or a deadline) and polled by long-running loops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cloned into every loop that should stop when asked.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Asks every holder to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Resolves once a stop was asked for (checked every 100 ms).
    pub async fn stopped(&self) {
        while !self.is_stopped() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The underlying flag, for blocking loops in other crates.
    pub fn shared(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// Sets the flag on Ctrl-C or SIGTERM.
    pub fn stop_on_signals(&self) {
        let flag = self.clone();
        tokio::spawn(async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            }
            tracing::info!("stop requested; finishing cleanly");
            flag.stop();
        });
    }
}
