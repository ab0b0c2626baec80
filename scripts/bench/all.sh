#!/usr/bin/env bash
# The benchmark suite in one command: every benchmark in release mode against the local
# services, each figure beside its peer or floor measured in the same run, then the figures,
# the commands and the machine written into docs/benchmarks.md (the section between the
# `bench:all` markers). Bounded: each benchmark has a time limit (on a fresh machine the first
# run also installs oha, Spark and Flink within those limits), the whole run about 60 min.
#   BENCH_LARGE=1   batch recompute over 50 million events instead of 10 million
set -uo pipefail
export CARGO_TERM_COLOR=never
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
batch_events=10000000
[ "${BENCH_LARGE:-0}" = 1 ] && batch_events=50000000
run() { # run NAME MINUTES COMMAND...
  local name=$1 minutes=$2; shift 2
  echo "### $name" | tee -a "$log"
  echo '```' >>"$log"; echo "\$ $*" >>"$log"
  timeout "${minutes}m" "$@" 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g' \
    | grep -Ev 'Compiling|Finished|^services:|^python-env:|WARN|ERROR buoyant|^ *(Updating|Downloading|Downloaded|Installing|Installed|Locking) |be sure to add|is yanked' | tee -a "$log"
  local status=${PIPESTATUS[0]}
  [ "$status" = 0 ] || echo "(exited with status $status)" | tee -a "$log"
  echo '```' >>"$log"
}
# Built once before the timed runs: a build from a cold cache takes longer than a benchmark's
# limit (each script's own `cargo build` then finds it fresh).
echo "all.sh: building the release binaries" >&2
cargo build --release --bin braid --example freshness >&2 || { echo "the release build failed" >&2; exit 1; }
run "Speed layer" 6 scripts/bench/speed.sh
run "Distinct counts in the speed layer" 5 scripts/bench/distinct.sh
run "Each metric kind in the speed layer, and quantiles beside DuckDB" 8 scripts/bench/metric_kinds.sh
run "Delta sink" 6 scripts/bench/sink.sh
run "Batch recompute" 12 env BENCH_EVENTS=$batch_events scripts/bench/batch.sh
run "Serving API and end-to-end freshness" 20 scripts/bench/serving.sh
run "Freshness at 1k, 20k and 200k events/s" 8 scripts/bench/freshness.sh
run "Yahoo Streaming Benchmark workload, beside Apache Flink" 22 scripts/bench/ysb.sh
run "The same stream as JSON and as Avro (schema registry)" 8 scripts/bench/avro.sh
run "Profiles of the speed layer, the sink and the batch (flame graphs in docs/img)" 12 env BENCH_PROFILE_OUT="$PWD/docs/img" scripts/bench/profile.sh
python3 - docs/benchmarks.md "$log" "$started" <<'PY'
import sys
doc, log, started = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(doc).read()
start, end = "<!-- bench:all:start -->", "<!-- bench:all:end -->"
section = (f"{start}\n## Latest full run: `scripts/bench/all.sh`\n\nStarted {started}. Every figure below "
           "was measured in this one run, on the machine described above.\n\n" + open(log).read() + end)
if start in text:
    text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
else:
    text = text.replace("\n## Speed layer", "\n" + section + "\n\n## Speed layer", 1)
open(doc, "w").write(text)
PY
echo "docs/benchmarks.md updated"
