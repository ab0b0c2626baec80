#!/usr/bin/env bash
# Runs Braid's whole test suite against real PostgreSQL, Kafka, S3 and a schema registry, starting them first if needed
# (scripts/services.sh installs them on a machine that has neither). Extra arguments go to
# `cargo test`, e.g. scripts/test.sh -p schemas.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null || { echo "test: cargo not found; install Rust 1.95 or later (https://rustup.rs)" >&2; exit 1; }
services_env=$(BRAID_REGISTRY=0 scripts/services.sh up) || { echo "the services did not start; see above" >&2; exit 1; }
eval "$services_env"
echo "test: PostgreSQL at ${DATABASE_URL%%:*}://…@${DATABASE_URL##*@}, Kafka at $KAFKA_BROKERS" >&2
# The schema registry starts beside the rest of the set-up and the build: its first build on a
# machine takes minutes. Waited for before the tests run.
registry_env=$(mktemp) registry_log=$(mktemp)
scripts/services.sh registry >"$registry_env" 2>"$registry_log" & registry_pid=$!

# The independent Delta reader (Python deltalake from PyPI) used by the sink tests.
BRAID_PYTHON=$(scripts/python-env.sh) || { echo "test: the Python environment could not be installed; see above" >&2; exit 1; }
export BRAID_PYTHON
# Apache Spark (local mode) for the batch.engine = "spark" test.
BRAID_SPARK_SUBMIT=$(scripts/spark-env.sh) || { echo "test: Spark could not be installed; see above" >&2; exit 1; }
export BRAID_SPARK_SUBMIT

# Debian's Chromium and Node.js for the console (built into the binary, tested in a browser).
BRAID_CHROMIUM=$(scripts/browser-env.sh) || { echo "test: the browser test's Chromium or Node.js could not be installed; see above" >&2; exit 1; }
export BRAID_CHROMIUM
# A console that cannot be built fails the build here, instead of being left out quietly.
export BRAID_CONSOLE=required

# The lint gate: formatting and clippy's warnings fail the run before any test does (the
# workspace's own lints are in Cargo.toml's [workspace.lints]). Skipped when arguments select
# a subset of tests.
if [ "$#" -eq 0 ]; then
  for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
      command -v rustup >/dev/null || { echo "test: cargo $component is missing and rustup is not installed to add it" >&2; exit 1; }
      rustup component add "$component" >&2
    fi
  done
  cargo fmt --all --check || { echo "test: the code is not formatted; run cargo fmt --all" >&2; exit 1; }
  cargo clippy --workspace --all-targets -- -D warnings || { echo "test: clippy found warnings (above); fix them" >&2; exit 1; }
fi

export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
if [ "$#" -eq 0 ]; then set -- --workspace; fi
log=$(mktemp)
trap 'rm -f "$log" "$registry_env" "$registry_log"' EXIT
cargo test --no-run "$@"
wait "$registry_pid" || { cat "$registry_log" >&2; echo "test: the schema registry did not start; see above" >&2; exit 1; }
eval "$(cat "$registry_env")"
echo "test: schema registry at $BRAID_SCHEMA_REGISTRY_URL" >&2
status=0
cargo test "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
