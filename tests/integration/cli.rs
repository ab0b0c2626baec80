//! The command line as a user meets it.

use crate::support::{braid, run, stderr};

#[test]
fn generate_to_stdout_is_byte_for_byte_reproducible() {
    let first = run(braid().args(["generate", "--count", "1000", "--seed", "1", "--stdout"]));
    let second = run(braid().args(["generate", "--count", "1000", "--seed", "1", "--stdout"]));
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(first.stdout.iter().filter(|&&b| b == b'\n').count(), 1000);
    let other_seed = run(braid().args(["generate", "--count", "1000", "--seed", "2", "--stdout"]));
    assert_ne!(first.stdout, other_seed.stdout);
}

#[test]
fn every_subcommand_has_help() {
    for command in [
        "up", "speed", "sink", "batch", "jobs", "serve", "replay", "recover", "generate",
        "migrate", "services",
    ] {
        let output = run(braid().args([command, "--help"]));
        assert!(output.status.success(), "braid {command} --help");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage: braid"),
            "braid {command} --help"
        );
    }
}

#[test]
fn a_bad_config_stops_at_start_naming_the_key() {
    let output = run(braid()
        .arg("migrate")
        .env("BRAID__KAFKA__TOPIC", "no spaces allowed"));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("config key `kafka.topic`"),
        "{}",
        stderr(&output)
    );

    let missing = run(braid().args(["--config", "/nonexistent.toml", "migrate"]));
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent.toml"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn bad_generator_options_name_the_flag() {
    let output = run(braid().args([
        "generate",
        "--stdout",
        "--count",
        "1",
        "--late-fraction",
        "1.5",
    ]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--late-fraction"),
        "{}",
        stderr(&output)
    );
    let output = run(braid().args([
        "generate", "--stdout", "--count", "1", "--seed", "1", "--start", "monday",
    ]));
    assert!(stderr(&output).contains("--start"), "{}", stderr(&output));
}
