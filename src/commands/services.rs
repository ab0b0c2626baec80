//! `braid services`: runs scripts/services.sh from the repository.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::ServicesAction;

/// Finds scripts/services.sh: under BRAID_ROOT, the working directory, or the source tree
/// this binary was built from.
fn script() -> anyhow::Result<PathBuf> {
    let roots = [
        std::env::var_os("BRAID_ROOT").map(PathBuf::from),
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    roots
        .into_iter()
        .flatten()
        .map(|root| root.join("scripts/services.sh"))
        .find(|path| path.is_file())
        .context(
            "scripts/services.sh not found; run braid from the repository or set BRAID_ROOT to it",
        )
}

/// Runs the script with the action and passes its exit code on.
pub fn run(action: ServicesAction) -> anyhow::Result<ExitCode> {
    let script = script()?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(action.as_str())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
