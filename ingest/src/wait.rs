//! Waiting out a backoff on the loop's thread while staying stoppable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// While waiting out a backoff, a stop is noticed within this long.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Sleeps `wait`, or less once `stop` is set.
pub(crate) fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) {
    let until = Instant::now() + wait;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(STOP_CHECK));
    }
}
