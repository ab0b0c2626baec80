//! How many malloc arenas `braid batch` and `braid jobs` may use.
//!
//! glibc gives each thread that contends for the heap an arena of its own, up to eight per
//! core, and an arena keeps what it once held. The batch's Polars threads allocate and free
//! large buffers on many threads, so a batch's resident size was about 1.6 times the memory it
//! had in use at its peak (heaptrack, 600,000 records: 105 MiB in use, 167 MiB resident).
//! One arena per core brought that peak to 125 MiB with no change in the batch's time
//! (docs/benchmarks.md, "Batch memory and the soak"). A limit the user gives, in
//! `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` (`glibc.malloc.arena_max`), is left to glibc.

/// Limits glibc's malloc to one arena per available core, unless the environment sets a
/// limit. Call before any other thread starts. Returns the limit set, if any.
pub fn limit_arenas() -> Option<usize> {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() || tunables.contains("arena_max") {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    set_arena_max(cores).then_some(cores)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: usize) -> bool {
    let Ok(arenas) = libc::c_int::try_from(arenas) else {
        return false;
    };
    // SAFETY: mallopt changes a malloc parameter; called at start-up, before other threads.
    #[allow(unsafe_code)]
    let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    set == 1
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: usize) -> bool {
    false
}
