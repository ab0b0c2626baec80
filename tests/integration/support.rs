//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `braid` command run from the repository root (so ./braid.toml is the demo config).
pub fn braid() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_braid"));
    command.current_dir(repo_root()).env("RUST_LOG", "info");
    command
}

/// Runs a command and returns its output, with stderr shown on failure by the caller.
pub fn run(command: &mut Command) -> Output {
    command.output().expect("the braid binary runs")
}

/// The brokers of the real Kafka. Tests fail (not skip) without them.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS is not set: start the services with scripts/services.sh up and eval its env")
}

/// A topic name no other test (or earlier run) uses.
pub fn unique_topic(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test.{test}.{}.{nanos}", std::process::id())
}

/// Text of a process's stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
