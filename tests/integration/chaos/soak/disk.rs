//! The S3 server's disk filling up: `scripts/chaos --soak` (as root) serves the lake from a
//! size-limited tmpfs and names it in `BRAID_SOAK_S3_DISK`; the fault fills it with a file
//! beside the bucket until a write fails (ENOSPC), and a later fault deletes the file.

use std::io::Write;
use std::path::PathBuf;

/// The filesystem to fill, if the script made one.
pub fn path() -> Option<PathBuf> {
    std::env::var_os("BRAID_SOAK_S3_DISK").map(Into::into)
}

fn filler() -> Result<PathBuf, String> {
    Ok(path()
        .ok_or("BRAID_SOAK_S3_DISK is not set")?
        .join(".soak-filler"))
}

/// Fills the disk; returns how many bytes it took.
pub fn fill() -> Result<u64, String> {
    let filler = filler()?;
    let mut file = std::fs::File::create(&filler).map_err(|e| format!("{filler:?}: {e}"))?;
    let mut written = 0u64;
    // 1 MiB writes until one fails, then 512-byte writes into the last blocks.
    for size in [1 << 20, 512] {
        let chunk = vec![0xa5u8; size];
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
    }
    Ok(written)
}

/// Frees what [`fill`] took (nothing if it took nothing).
pub fn free() -> Result<(), String> {
    let filler = filler()?;
    match std::fs::remove_file(&filler) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{filler:?}: {e}")),
        _ => Ok(()),
    }
}
