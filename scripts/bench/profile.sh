#!/usr/bin/env bash
# Profiles: where `braid speed` and `braid sink` spend their time catching up on a filled topic,
# and `braid batch run` its time over the lake the sink wrote, sampled with perf (Debian's
# linux-perf) and drawn as flame graphs (inferno, from crates.io).
#   BENCH_EVENTS     events in the topic (default 2000000, the demo clickstream on 4 partitions)
#   BENCH_PROFILE_OUT  where the flame graphs go (default .braid/artifacts/profile)
# Prints, per layer: the wall time to catch up, the CPU time it used, the share of samples per
# thread and of the stages named below (inclusive: a stage counts every sample beneath it); for
# the speed layer also the time spent committing to PostgreSQL (its commit-duration metric).
# Sampling slows the process down (dwarf call graphs copy 16 kB of stack per sample): read the
# shares, not the rates, from this script; speed.sh and sink.sh measure the rates.
EVENTS=${BENCH_EVENTS:-2000000}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${BENCH_PROFILE_OUT:-$PWD/.braid/artifacts/profile}
mkdir -p "$OUT"
command -v perf >/dev/null || { apt-get install -y -qq linux-perf >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq linux-perf; }; }
TOOLS=$HOME/.cache/braid/tools/bin
[ -x "$TOOLS/inferno-flamegraph" ] || cargo install inferno --locked --root "$HOME/.cache/braid/tools" >&2
[ "$(cat /proc/sys/kernel/perf_event_paranoid)" -le 2 ] || echo "perf_event_paranoid > 2: run as root or lower it" >&2

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.profile.$stamp
export BRAID__KAFKA__SPEED_GROUP=bench.profile.speed.$stamp
export BRAID__KAFKA__SINK_GROUP=bench.profile.sink.$stamp
export BRAID__LAKE__URI=$PWD/.braid/bench/lake-profile-$stamp
fresh_database "bench_profile_$stamp"
RUST_LOG=warn "$BIN" migrate
fill_topic_and_time_kcat "$EVENTS" 4
WORK=$(mktemp -d)
trap 'rm -rf "$WORK" "$BRAID__LAKE__URI"; psql "$BENCH_SERVER_URL/braid" -qc "DROP DATABASE IF EXISTS $BENCH_DB" >/dev/null' EXIT

speed_done() { [ "$(psql "$DATABASE_URL" -tAc "SELECT coalesce(sum(next_offset), 0) FROM braid_internal.speed_positions")" -ge "$EVENTS" ]; }
sink_done() { # the next offsets in the Delta log's sink transactions, summed
  python3 - "$BRAID__LAKE__URI/_delta_log" "$EVENTS" <<'PY'
import json, os, sys
log, events = sys.argv[1], int(sys.argv[2])
positions = {}
if os.path.isdir(log):
    for name in sorted(n for n in os.listdir(log) if n.endswith(".json")):
        for line in open(os.path.join(log, name)):
            txn = json.loads(line).get("txn")
            if txn and txn["appId"].startswith("braid-sink:"):
                positions[txn["appId"]] = txn["version"]
sys.exit(0 if sum(positions.values()) >= events else 1)
PY
}

# profile LAYER DONE_CHECK STAGE... : runs `braid LAYER` under perf until DONE_CHECK succeeds.
profile() {
  local layer=$1 done_check=$2; shift 2
  local data=$WORK/$layer.data t0 t1 child cpu
  t0=$(now)
  RUST_LOG=warn perf record -q -F 499 -g --call-graph dwarf,16384 -o "$data" -- \
    "$BIN" "$layer" --metrics-listen "127.0.0.1:${BENCH_METRICS_PORT:-19556}" 2>"$WORK/$layer.log" & local perf_pid=$!
  until child=$(pgrep -P $perf_pid -f "braid $layer"); do sleep 0.05; done
  until $done_check; do kill -0 "$child" 2>/dev/null || { cat "$WORK/$layer.log" >&2; exit 1; }; sleep 0.2; done
  t1=$(now)
  cpu=$(awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$child/stat")
  local commits
  commits=$(curl -s "127.0.0.1:${BENCH_METRICS_PORT:-19556}/metrics" | awk '/commit_duration_seconds_sum/ {s = $2} /commit_duration_seconds_count/ {n = $2} END {if (n) printf "%.1f s in %d commits", s, n}')
  kill -INT "$child"; wait $perf_pid || true
  echo "braid $layer under perf: caught up in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s wall, $cpu s CPU${commits:+; committing: $commits (metric)}; flame graph: $OUT/flame-$layer.svg"
  report "$layer" "braid $layer catching up on $EVENTS events" "$@"
}

# report NAME TITLE STAGE... : folds $WORK/NAME.data into a flame graph and prints the share of
# samples per thread and per stage (STAGE is "label=regex over frame names").
report() {
  local name=$1 title=$2; shift 2
  perf script --no-inline -i "$WORK/$name.data" 2>/dev/null | "$TOOLS/inferno-collapse-perf" > "$WORK/$name.folded"
  "$TOOLS/inferno-flamegraph" --title "$title" --width 1600 < "$WORK/$name.folded" > "$OUT/flame-$name.svg"
  python3 - "$WORK/$name.folded" "$@" <<'PY'
import re, sys
from collections import Counter
folded, stages = sys.argv[1], sys.argv[2:]
total, threads, shares = 0, Counter(), Counter()
for line in open(folded):
    stack, n = line.rsplit(" ", 1)
    n = int(n); total += n
    frames = stack.split(";")
    threads[re.sub(r"[0-9-]+$", "", frames[0])] += n
    for stage in stages:
        pattern = stage.split("=", 1)[1]
        if any(re.search(pattern, f) for f in frames):
            shares[stage] += n
print("  threads: " + ", ".join(f"{t} {100 * n / total:.0f} %" for t, n in threads.most_common(5)))
for stage in stages:
    print(f"  {stage.split('=', 1)[0]}: {100 * shares[stage] / total:.1f} % of samples")
PY
}

# The same stage in every profile: glibc's allocator, wherever it is called from.
MALLOC_STAGE='malloc and free, anywhere=^(malloc|free|cfree|_int_malloc|_int_free|__libc_calloc|calloc|realloc|sysmalloc|malloc_consolidate|unlink_chunk.*)$'
profile speed speed_done \
  "fetch handling (poll, librdkafka's queue)=poll_queue" \
  "JSON validation=EventSchema>::validate" \
  "  of which event times (RFC 3339)=rfc3339::|parse_from_rfc3339" \
  "aggregation=ViewDeltas::add" \
  "flush (binding rows, PostgreSQL round trips)=speed_layer::flush::flush" \
  "  of which HLL sketches to bytes=Sketch::to_bytes" \
  "$MALLOC_STAGE" \
  "reading the clock=clock_gettime" \
  "librdkafka's fetch thread (decompress, parse)=^rdk:broker"
profile sink sink_done \
  "fetch handling (poll, librdkafka's queue)=poll_queue" \
  "JSON validation=EventSchema>::validate" \
  "buffering rows (column builders)=batch_layer::sink.*(add|push|append)" \
  "Parquet encoding=parquet::" \
  "Arrow=arrow_" \
  "$MALLOC_STAGE" \
  "librdkafka's fetch thread (decompress, parse)=^rdk:broker"

# The batch: `braid batch run` over the lake the sink just wrote (its cut: the positions both
# layers stored above), under perf until it exits.
t0=$(now)
RUST_LOG=warn perf record -q -F 499 -g --call-graph dwarf,16384 -o "$WORK/batch.data" -- \
  /usr/bin/time -f '%U %S %M' -o "$WORK/batch.time" "$BIN" batch run >"$WORK/batch.out" 2>"$WORK/batch.log" \
  || { cat "$WORK/batch.log" >&2; exit 1; }
t1=$(now)
read -r user sys kib < "$WORK/batch.time"
views=$(grep -c '^  .*: run [0-9]*, [0-9]* rows$' "$WORK/batch.out")
records=$(grep -o '[0-9]* records read' "$WORK/batch.out" | cut -d' ' -f1)
echo "braid batch run under perf ($views views over $records records): $(python3 -c "print(f'{$t1 - $t0:.1f}')") s wall, $(python3 -c "print(f'{$user + $sys:.1f}')") s CPU, peak RSS $((kib / 1024)) MiB; flame graph: $OUT/flame-batch.svg"
report batch "braid batch run over $EVENTS events" \
  "reading Parquet=polars_parquet|io_sources::parquet" \
  "distinct values to registers (hashing)=recompute::distinct::(registers|value_hashes)" \
  "the distinct fold and its sketches (one thread; the callback sink)=distinct::sketch_columns::\\{\\{closure|distinct::key_of|distinct::Raised" \
  "Polars group-bys (hash grouping, reductions)=polars_expr::(groups|hot_groups|reduce)" \
  "COPY to PostgreSQL (binary rows)=recompute::load::" \
  "$MALLOC_STAGE"
