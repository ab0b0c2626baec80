#!/usr/bin/env bash
# Runs the Braid pipeline on the demo clickstream: starts local PostgreSQL and Kafka if needed,
# builds braid, applies migrations and produces demo events until Ctrl-C.
#   BRAID_DEMO_RATE      events per second (default 1000)
#   BRAID_DEMO_DURATION  stop after this many seconds (default: run until Ctrl-C)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null || { echo "run: cargo not found; install Rust 1.95 or later (https://rustup.rs)" >&2; exit 1; }
# The demo topic is JSON: no schema registry unless asked for (BRAID_REGISTRY=1).
services_env=$(BRAID_REGISTRY=${BRAID_REGISTRY:-0} scripts/services.sh up) || { echo "the services did not start; see above" >&2; exit 1; }
eval "$services_env"
echo "run: building braid" >&2
cargo build --bin braid
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
args=(up --generate "${BRAID_DEMO_RATE:-1000}")
[ -n "${BRAID_DEMO_DURATION:-}" ] && args+=(--duration "$BRAID_DEMO_DURATION")
exec "$target_dir/debug/braid" "${args[@]}"
