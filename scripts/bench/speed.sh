#!/usr/bin/env bash
# Benchmark: the speed layer's sustained rate beside a plain consumer (kcat) on the same topic,
# in the same run, with the broker and PostgreSQL on this machine.
#   BENCH_EVENTS   events in the topic (default 2000000)
#   BENCH_PARTITIONS  partitions (default 4)
# Prints one line per figure; docs/benchmarks.md records a run.
EVENTS=${BENCH_EVENTS:-2000000}
PARTITIONS=${BENCH_PARTITIONS:-4}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.speed.$stamp
export BRAID__KAFKA__SPEED_GROUP=bench.speed.$stamp
fresh_database "bench_speed_$stamp"
fill_topic_and_time_kcat "$EVENTS" "$PARTITIONS"

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
