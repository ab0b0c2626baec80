#!/usr/bin/env bash
# Benchmark: freshness, from a record acknowledged by Kafka to the API counting it, while a live
# stream runs at 1k, 20k and 200k events/s (the speed layer, the sink and the API running; each
# rate in turn on the same pipeline). Beside each: the speed layer's flushes per second and the
# records per flush (its metrics), which show the adaptive flush at work.
#   BENCH_RATES   live rates, events/s (default "1000 20000 200000")
#   BENCH_PROBES  probes per rate (default 100)
#   BENCH_WARMUP  seconds of live stream before the probes (default 10)
RATES=${BENCH_RATES:-1000 20000 200000}
PROBES=${BENCH_PROBES:-100}
WARMUP=${BENCH_WARMUP:-10}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
API=127.0.0.1:${BENCH_API_PORT:-18090}
METRICS=127.0.0.1:${BENCH_METRICS_PORT:-18091}

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.freshness.$stamp
export BRAID__KAFKA__SPEED_GROUP=bench.freshness.speed.$stamp
export BRAID__KAFKA__SINK_GROUP=bench.freshness.sink.$stamp
export BRAID__LAKE__URI=$PWD/.braid/bench/lake-$stamp
fresh_database "bench_freshness_$stamp"
pids=()
cleanup_processes() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait || true; rm -rf "$BRAID__LAKE__URI"; }
trap 'cleanup_processes; psql "$BENCH_SERVER_URL/braid" -qc "DROP DATABASE IF EXISTS $BENCH_DB" >/dev/null' EXIT

RUST_LOG=warn "$BIN" migrate
echo "speed.flush_interval_ms = ${BRAID__SPEED__FLUSH_INTERVAL_MS:-500}, speed.flush_min_interval_ms = ${BRAID__SPEED__FLUSH_MIN_INTERVAL_MS:-50}"
RUST_LOG=warn "$BIN" generate --rate 1 --count 1 --partitions 4 >/dev/null
RUST_LOG=warn "$BIN" speed --metrics-listen "$METRICS" & pids+=($!)
RUST_LOG=warn "$BIN" sink & pids+=($!)
RUST_LOG=warn "$BIN" serve --listen "$API" & pids+=($!)
until curl -sf "http://$API/readyz" >/dev/null; do sleep 0.2; done

# Flushes and flushed records so far, from the speed layer's Prometheus metrics.
flush_counts() {
  curl -sf "http://$METRICS/metrics" | awk '
    /^braid_ingest_commit_duration_seconds_count\{.*layer="speed"/ { f += $NF }
    /^braid_ingest_records_committed_total\{.*layer="speed"/ { r += $NF }
    END { printf "%d %d\n", f, r }'
}
for rate in $RATES; do
  RUST_LOG=warn "$BIN" generate --rate "$rate" --partitions 4 --late-fraction 0 --malformed-fraction 0 >/dev/null &
  generator=$!
  sleep "$WARMUP"
  read -r f0 r0 < <(flush_counts); t0=$(now)
  line=$("${BIN%/braid}/examples/freshness" "$KAFKA_BROKERS" "$BRAID__KAFKA__TOPIC" "$API" "$PROBES" 2>&1) \
    || line="falls behind: ${line:-a probe was not visible within 30 s}"
  read -r f1 r1 < <(flush_counts); t1=$(now)
  kill -INT "$generator"; wait "$generator" || true
  python3 - "$rate" "$line" "$f0" "$r0" "$f1" "$r1" "$t0" "$t1" <<'PY'
import sys
rate, line, f0, r0, f1, r1, t0, t1 = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
flushes, records, seconds = f1 - f0, r1 - r0, t1 - t0
per = f"{records / flushes:,.0f}" if flushes else "-"
print(f"{int(rate):>7,} events/s offered: {line}; speed layer: {flushes / seconds:.1f} flushes/s, "
      f"{per} records per flush, {records / seconds:,.0f} records/s flushed")
PY
  # Let the layer drain before the next rate.
  sleep 5
done
