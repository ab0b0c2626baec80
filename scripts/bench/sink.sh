#!/usr/bin/env bash
# Benchmark: the Delta sink's sustained rate beside a plain consumer (kcat) on the same topic, in
# the same run, with the broker on this machine and the table on the local disk.
#   BENCH_EVENTS      events in the topic (default 3000000)
#   BENCH_PARTITIONS  partitions (default 4)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
EVENTS=${BENCH_EVENTS:-3000000}
PARTITIONS=${BENCH_PARTITIONS:-4}

eval "$(scripts/services.sh up)"
command -v kcat >/dev/null || { apt-get install -y -qq kcat >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq kcat; }; }
cargo build --release --bin braid >&2
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/braid

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.sink.$stamp
export BRAID__KAFKA__SINK_GROUP=bench.sink.$stamp
export BRAID__LAKE__URI=$PWD/.braid/bench/lake-$stamp
db=bench_sink_$stamp
psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
export DATABASE_URL=${DATABASE_URL%/*}/$db
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f}')"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "events: $EVENTS on $PARTITIONS partitions (demo clickstream, 0.1% malformed)"
RUST_LOG=warn "$BIN" generate --rate 0 --count "$EVENTS" --seed 1 --partitions "$PARTITIONS" --malformed-fraction 0.001 >/dev/null
input_bytes=$(kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC" -o beginning -e -q -f '%S\n' | awk '{s += $1} END {print s}')

t0=$(now)
consumed=$(kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC" -o beginning -e -q -f '%o\n' | wc -l)
t1=$(now)
echo "plain consumer (kcat, offsets only): $(rate "$consumed" "$t0" "$t1") events/s"

RUST_LOG=warn "$BIN" migrate
committed() { # next offsets in the Delta log, summed (the last commit's txn actions per partition)
  python3 - "$BRAID__LAKE__URI/_delta_log" "$BRAID__KAFKA__TOPIC" <<'PY'
import json, os, sys
log, topic = sys.argv[1], sys.argv[2]
pos = {}
if os.path.isdir(log):
    for name in sorted(n for n in os.listdir(log) if n.endswith(".json")):
        for line in open(os.path.join(log, name)):
            txn = json.loads(line).get("txn")
            if txn and txn["appId"].startswith(f"braid-sink:{topic}:"):
                pos[txn["appId"]] = txn["version"]
print(sum(pos.values()))
PY
}
t0=$(now)
RUST_LOG=warn "$BIN" sink &
pid=$!
while [ "$(committed)" -lt "$EVENTS" ]; do
  kill -0 $pid || { echo "braid sink died" >&2; exit 1; }
  sleep 0.2
done
t1=$(now)
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -INT $pid; wait $pid || true
echo "braid sink: $(rate "$EVENTS" "$t0" "$t1") records/s, $(python3 -c "print(f'{$input_bytes / 1e6 / ($t1 - $t0):,.1f}')") MB/s of input, from process start to committed (defaults: flush at 128 MB or 10 s)"
echo "braid sink peak RSS: $((rss / 1024)) MiB"
files=$(find "$BRAID__LAKE__URI" -name '*.parquet' | wc -l)
echo "table: $files Parquet files, $(du -sh "$BRAID__LAKE__URI" | cut -f1) on disk for $(python3 -c "print(f'{$input_bytes/1e6:,.0f}')") MB of JSON input; file sizes: $(find "$BRAID__LAKE__URI" -name '*.parquet' -printf '%s\n' | sort -n | awk '{a[NR]=$1} END {printf "min %.1f MB, median %.1f MB, max %.1f MB", a[1]/1e6, a[int((NR+1)/2)]/1e6, a[NR]/1e6}')"
psql "${DATABASE_URL%/*}/braid" -qc "DROP DATABASE $db" >/dev/null
rm -rf "$BRAID__LAKE__URI"
