#!/usr/bin/env bash
# Benchmark: the speed layer's sustained rate beside a plain consumer (kcat) on the same topic,
# in the same run, with the broker and PostgreSQL on this machine.
#   BENCH_EVENTS   events in the topic (default 2000000)
#   BENCH_PARTITIONS  partitions (default 4)
# Prints one line per figure; docs/benchmarks.md records a run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
EVENTS=${BENCH_EVENTS:-2000000}
PARTITIONS=${BENCH_PARTITIONS:-4}

eval "$(scripts/services.sh up)"
command -v kcat >/dev/null || { apt-get install -y -qq kcat >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq kcat; }; }
cargo build --release --bin braid >&2
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/braid

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.speed.$stamp
export BRAID__KAFKA__SPEED_GROUP=bench.speed.$stamp
db=bench_speed_$stamp
psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
export DATABASE_URL=${DATABASE_URL%/*}/$db
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f}')"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "events: $EVENTS on $PARTITIONS partitions (demo clickstream, 0.1% malformed, 2% late)"

t0=$(now)
RUST_LOG=warn "$BIN" generate --rate 0 --count "$EVENTS" --seed 1 --partitions "$PARTITIONS" --malformed-fraction 0.001 >/dev/null
t1=$(now)
echo "produce (braid generate, lz4, acks=all): $(rate "$EVENTS" "$t0" "$t1") events/s"

t0=$(now)
consumed=$(kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC" -o beginning -e -q -f '%o\n' | wc -l)
t1=$(now)
echo "plain consumer (kcat, offsets only): $(rate "$consumed" "$t0" "$t1") events/s ($consumed events)"

total() { psql "$DATABASE_URL" -tAc "SELECT coalesce(sum(next_offset), 0) FROM braid_internal.speed_positions"; }
RUST_LOG=warn "$BIN" migrate
t0=$(now)
RUST_LOG=warn "$BIN" speed &
pid=$!
first=""
while :; do
  done_count=$(total)
  [ -z "$first" ] && [ "$done_count" -gt 0 ] && { first=$(now); first_count=$done_count; }
  [ "$done_count" -ge "$EVENTS" ] && break
  kill -0 $pid || { echo "braid speed died" >&2; exit 1; }
  sleep 0.1
done
t1=$(now)
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -INT $pid; wait $pid || true
echo "braid speed: $(rate "$EVENTS" "$t0" "$t1") events/s from process start to caught up; $(rate "$((EVENTS - first_count))" "$first" "$t1") events/s after the first flush"
echo "braid speed peak RSS: $((rss / 1024)) MiB"
psql "$DATABASE_URL" -tAc "SELECT 'speed rows written: ' || sum((xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM braid_internal.' || table_name, false, true, '')))[1]::text::bigint) FROM information_schema.tables WHERE table_schema = 'braid_internal' AND table_name LIKE 'speed\_%' AND table_name <> 'speed_positions'"
psql "${DATABASE_URL%/*}/braid" -qc "DROP DATABASE $db" >/dev/null
