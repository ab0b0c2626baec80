//! Logging: tracing to standard error (standard output stays free for data), filtered by
//! RUST_LOG, as text or JSON lines.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The filter used when RUST_LOG is unset: info for Braid, quieter for chatty dependencies.
/// Some library warnings describe normal operation and are kept out of a normal run's log
/// (issue 22; `a_normal_run_logs_no_error_and_no_warn` checks it):
/// - `deltalake_core::writer::stats`: "Skipping column _key because it's a binary field"
///   on every commit (no statistics for binary columns, by design);
/// - `deltalake_core::kernel::transaction`: "table updated during transaction, checking for
///   conflicts" and "version already exists, will retry" when the sink and compaction commit at
///   once; delta-rs resolves it, and a conflict it cannot resolve is returned to Braid, which
///   logs it;
/// - `deltalake_core::operations::vacuum`: "Using experimental API" on every vacuum.
pub const DEFAULT_FILTER: &str = "info,buoyant_kernel=warn,deltalake_core=warn,deltalake_core::writer::stats=error,deltalake_core::kernel::transaction=error,deltalake_core::operations::vacuum=error,deltalake=warn,sqlx=warn,rdkafka=warn,librdkafka=warn";

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}
