//! The S3 server's disk filling up: `scripts/chaos --soak` (as root) serves the lake from a
//! size-limited tmpfs and names it in `BRAID_SOAK_S3_DISK`; the fault fills it with a file
//! beside the bucket until a write fails (ENOSPC), holds it full, and deletes the file.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The filesystem to fill, if the script made one.
pub fn path() -> Option<std::path::PathBuf> {
    std::env::var_os("BRAID_SOAK_S3_DISK").map(Into::into)
}

/// Fills the disk, keeps it full for `held` (or until `stop`), frees it.
pub fn fill_for(held: Duration, stop: &AtomicBool) -> Result<(), String> {
    let dir = path().ok_or("BRAID_SOAK_S3_DISK is not set")?;
    let filler = dir.join(".soak-filler");
    let mut file = std::fs::File::create(&filler).map_err(|e| format!("{filler:?}: {e}"))?;
    let chunk = vec![0xa5u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => {
                let _ = std::fs::remove_file(&filler);
                return Err(format!("filling {filler:?}: {e}"));
            }
        }
    }
    // Small writes into the last few blocks too.
    let byte = [0u8; 512];
    while file.write(&byte).is_ok_and(|n| n > 0) {
        written += 512;
    }
    eprintln!(
        "soak: the S3 server's disk is full ({} MB of filler)",
        written >> 20
    );
    let until = Instant::now() + held;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        // The length of the outage (a pause, not a synchronisation).
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(file);
    std::fs::remove_file(&filler).map_err(|e| format!("{filler:?}: {e}"))
}
