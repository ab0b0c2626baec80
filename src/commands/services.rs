//! `braid services`: runs scripts/services.sh from the repository.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::ServicesAction;

/// Finds scripts/services.sh: under BRAID_ROOT, else in the working directory or one of its
/// parents, else beside the executable or one of its parents (`target/release/braid` of a
/// checkout). The executable's location is read at run time: a build cache shared between
/// checkouts can hold a binary built in another checkout.
fn script() -> anyhow::Result<PathBuf> {
    let in_root =
        |root: &Path| Some(root.join("scripts/services.sh")).filter(|path| path.is_file());
    if let Some(root) = std::env::var_os("BRAID_ROOT") {
        return in_root(Path::new(&root)).context(
            "BRAID_ROOT is set but has no scripts/services.sh; point it at the repository",
        );
    }
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| start.ancestors().find_map(in_root))
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
