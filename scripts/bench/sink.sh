#!/usr/bin/env bash
# Benchmark: the Delta sink's sustained rate beside a plain consumer (kcat) on the same topic, in
# the same run, with the broker on this machine and the table on the local disk.
#   BENCH_EVENTS      events in the topic (default 6000000)
#   BENCH_PARTITIONS  partitions (default 4)
EVENTS=${BENCH_EVENTS:-6000000}
PARTITIONS=${BENCH_PARTITIONS:-4}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.sink.$stamp
export BRAID__KAFKA__SINK_GROUP=bench.sink.$stamp
export BRAID__LAKE__URI=$PWD/.braid/bench/lake-$stamp
fresh_database "bench_sink_$stamp"
fill_topic_and_time_kcat "$EVENTS" "$PARTITIONS"
input_bytes=$(kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC" -o beginning -e -q -f '%S\n' | awk '{s += $1} END {print s}')

RUST_LOG=warn "$BIN" migrate
committed() { sink_committed "$BRAID__LAKE__URI" "$BRAID__KAFKA__TOPIC"; }
# The buffer size the sink flushes at: the default unless the environment overrides it.
flush_mib=$(( ${BRAID__SINK__FLUSH_MAX_BYTES:-$(grep -m1 "^flush_max_bytes" schemas/src/config/defaults.toml | tr -dc 0-9)} / 1048576 ))
sink_log=$(mktemp)
t0=$(now)
RUST_LOG=warn,batch_layer::sink=info "$BIN" sink 2>"$sink_log" &
pid=$!
while [ "$(committed)" -lt "$EVENTS" ]; do
  kill -0 $pid || { echo "braid sink died" >&2; exit 1; }
  sleep 0.2
done
t1=$(now)
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -INT $pid; wait $pid || true
echo "braid sink: $(rate "$EVENTS" "$t0" "$t1") records/s, $(python3 -c "print(f'{$input_bytes / 1e6 / ($t1 - $t0):,.1f}')") MB/s of input, from process start to committed (flush at $flush_mib MiB of input or 10 s)"
echo "braid sink peak RSS: $((rss / 1024)) MiB"
# Sustained rate from the Delta log itself: records in commits 2..n-1 over the time between the
# first and the next-to-last commit. That leaves out start-up (before the first commit) and the
# last commit, which holds the remainder and waits for the flush timer (10 s) rather than a full
# buffer.
python3 - "$BRAID__LAKE__URI/_delta_log" <<'PY'
import json, os, sys
log = sys.argv[1]
commits = []
for name in sorted(n for n in os.listdir(log) if n.endswith(".json")):
    ts, rows = None, 0
    for line in open(os.path.join(log, name)):
        action = json.loads(line)
        if "commitInfo" in action:
            ts = action["commitInfo"].get("timestamp")
        if "add" in action and action["add"].get("stats"):
            rows += json.loads(action["add"]["stats"]).get("numRecords", 0)
    if rows:
        commits.append((ts, rows))
if len(commits) >= 3:
    span = (commits[-2][0] - commits[0][0]) / 1000
    print(f"braid sink sustained: {sum(r for _, r in commits[1:-1]) / span:,.0f} records/s between the first and next-to-last of {len(commits)} data commits (full buffers)")
PY
# Commit latency from the sink's own log: each commit's Parquet write and Delta commit, which run
# in the background while the next buffer fills.
python3 - "$sink_log" <<'PY'
import re, sys
took = sorted(float(m.group(1)) for line in open(sys.argv[1]) if " committed" in line
              for m in [re.search(r'seconds=([0-9.]+)', line)] if m)
if took:
    print(f"commit latency (write Parquet + Delta commit, per buffer): p50 {took[len(took) // 2]:.2f} s, max {took[-1]:.2f} s over {len(took)} commits")
PY
rm -f "$sink_log"
files=$(find "$BRAID__LAKE__URI" -name '*.parquet' | wc -l)
echo "table: $files Parquet files, $(du -sh "$BRAID__LAKE__URI" | cut -f1) on disk for $(python3 -c "print(f'{$input_bytes/1e6:,.0f}')") MB of JSON input; file sizes: $(find "$BRAID__LAKE__URI" -name '*.parquet' -printf '%s\n' | sort -n | awk '{a[NR]=$1} END {printf "min %.1f MB, median %.1f MB, max %.1f MB", a[1]/1e6, a[int((NR+1)/2)]/1e6, a[NR]/1e6}')"
rm -rf "$BRAID__LAKE__URI"
