#!/usr/bin/env bash
# Benchmark: the REST API at a fixed request rate, measured by oha in another process, with the
# pipeline running (speed layer and sink consuming a live stream); beside it the same SQL run
# directly with pgbench at the same rate (the floor); then freshness from produce to visible.
#   BENCH_EVENTS   events spread over 24 h of event time (default 1440000, one per 60 ms)
#   BENCH_RATE     requests per second (default 2000)
#   BENCH_SECONDS  length of each load run (default 30)
#   BENCH_PROBES   freshness probes (default 200)
#   BENCH_LOW_RATE a second, lower request rate measured the same way (default 100)
EVENTS=${BENCH_EVENTS:-1440000}
RATE=${BENCH_RATE:-2000}
DURATION=${BENCH_SECONDS:-30}
PROBES=${BENCH_PROBES:-200}
LOW_RATE=${BENCH_LOW_RATE:-100}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OHA=$HOME/.cache/braid/tools/bin/oha
[ -x "$OHA" ] || cargo install oha --locked --root "$HOME/.cache/braid/tools" >&2
PGBENCH=$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
API=127.0.0.1:${BENCH_API_PORT:-18089}

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.serving.$stamp
export BRAID__KAFKA__SPEED_GROUP=bench.serving.speed.$stamp
export BRAID__KAFKA__SINK_GROUP=bench.serving.sink.$stamp
export BRAID__LAKE__URI=$PWD/.braid/bench/lake-$stamp
fresh_database "bench_serving_$stamp"
pids=()
cleanup_processes() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait || true; rm -rf "$BRAID__LAKE__URI"; }
trap 'cleanup_processes; psql "$BENCH_SERVER_URL/braid" -qc "DROP DATABASE IF EXISTS $BENCH_DB" >/dev/null' EXIT

echo "data: $EVENTS demo events over 24 h of event time (2026-01-01), 4 partitions"
RUST_LOG=warn "$BIN" generate --rate 0 --count "$EVENTS" --seed 1 --partitions 4 \
  --event-interval-us $((86400000000 / EVENTS)) --late-fraction 0.02 --malformed-fraction 0.001 >/dev/null
RUST_LOG=warn "$BIN" migrate
RUST_LOG=warn "$BIN" speed & pids+=($!)
RUST_LOG=warn "$BIN" sink & pids+=($!)
total() { psql "$DATABASE_URL" -tAc "SELECT coalesce(sum(next_offset), 0) FROM braid_internal.speed_positions"; }
until [ "$(total)" -ge "$EVENTS" ]; do sleep 0.5; done
RUST_LOG=warn "$BIN" batch run --wait-timeout 300 >/dev/null
echo "one batch run published; the speed layer keeps consuming a live stream of 500 events/s"
RUST_LOG=warn "$BIN" generate --rate 500 --partitions 4 >/dev/null & pids+=($!)
RUST_LOG=warn "$BIN" serve --listen "$API" & pids+=($!)
until curl -sf "http://$API/readyz" >/dev/null; do sleep 0.2; done

URI="/v1/views/page_views?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&granularity=1m&filter.page=/home/0"
rows=$(curl -sf "http://$API$URI" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))')
echo "query: GET $URI ($rows rows of 1-minute buckets for one key over 24 h)"

# The statement the API runs for that URI, values as literals (the benchmark's own support).
cargo run -q --release -p serving --example bench_statement -- "$URI" > /tmp/braid-serving-query.sql
oha_figures() {
python3 - "$1" <<'PY'
import json, sys
r = json.load(open("/tmp/braid-oha.json"))
p = r["latencyPercentiles"]; s = r["summary"]
codes = r.get("statusCodeDistribution", {})
print(f"API (oha, {sys.argv[1]} requests/s offered, latency from the scheduled send): "
      f"{s['requestsPerSec']:,.0f} requests/s, p50 {p['p50']*1000:.2f} ms, p99 {p['p99']*1000:.2f} ms, "
      f"success {s['successRate']*100:.1f} %, status codes {codes}")
PY
}
pgbench_figures() {
python3 - "$1" <<'PY'
import glob, sys
total = []
for name in glob.glob("/tmp/braid-pgbench-log*"):
    for line in open(name):
        f = line.split()
        total.append((int(f[2]) + (int(f[6]) if len(f) > 6 else 0)) / 1000)
total.sort()
pick = lambda q: total[min(len(total) - 1, int(q * len(total)))]
print(f"same SQL directly (pgbench -M prepared, {sys.argv[1]} transactions/s offered, latency from the scheduled start): "
      f"{len(total):,} transactions, p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms")
PY
}
for rate in $RATE $LOW_RATE; do
  "$OHA" -z "${DURATION}s" -q "$rate" -c 16 --latency-correction --no-tui --output-format json \
    "http://$API$URI" > /tmp/braid-oha.json
  oha_figures "$rate"
  rm -f /tmp/braid-pgbench-log*
  (cd /tmp && "$PGBENCH" -n -M prepared -c 16 -j 2 -T "$DURATION" -R "$rate" -f /tmp/braid-serving-query.sql \
    --log --log-prefix=braid-pgbench-log "$DATABASE_URL" > /tmp/braid-pgbench.txt 2>&1)
  pgbench_figures "$rate"
  grep -E 'tps|aborted|error' /tmp/braid-pgbench.txt | head -3 | sed 's/^/  pgbench: /'
done
echo "one execution, idle rates aside (EXPLAIN ANALYZE): $(psql "$DATABASE_URL" -qtAc "EXPLAIN (ANALYZE, FORMAT JSON) $(sed 's/;$//' /tmp/braid-serving-query.sql)" | python3 -c 'import json,sys; p=json.load(sys.stdin)[0]; print("planning %.2f ms, execution %.2f ms" % (p["Planning Time"], p["Execution Time"]))')"

"${BIN%/braid}/examples/freshness" "$KAFKA_BROKERS" "$BRAID__KAFKA__TOPIC" "$API" "$PROBES"
echo "speed.flush_interval_ms = ${BRAID__SPEED__FLUSH_INTERVAL_MS:-500} (the floor of freshness: a record waits for the next flush)"
