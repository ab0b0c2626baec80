#!/usr/bin/env bash
# Benchmark: the REST API at a fixed request rate, measured by oha in another process, with the
# pipeline running (speed layer and sink consuming a live stream). Beside it, in the same run:
# the floor, pgbench reading the same 1,440 rows by index from one table (the active batch run's),
# and the API's own statement run directly by pgbench (what a request costs the database when
# its answer is not in the API's cache); then freshness from produce to visible.
#   BENCH_EVENTS   events spread over 24 h of event time (default 1440000, one per 60 ms)
#   BENCH_RATE     requests per second, enough to saturate (default 3000)
#   BENCH_SECONDS  length of each load run (default 30)
#   BENCH_PROBES   freshness probes (default 200)
#   BENCH_LOW_RATE a second, lower request rate measured the same way (default 500)
#   BENCH_RATIO_ROUNDS, BENCH_RATIO_SECONDS  the statement against the floor, unthrottled, in
#                  alternating rounds (default 7 rounds of 6 s each side): the ratio of medians
EVENTS=${BENCH_EVENTS:-1440000}
RATE=${BENCH_RATE:-3000}
DURATION=${BENCH_SECONDS:-30}
PROBES=${BENCH_PROBES:-200}
LOW_RATE=${BENCH_LOW_RATE:-500}
RATIO_ROUNDS=${BENCH_RATIO_ROUNDS:-7}
RATIO_SECONDS=${BENCH_RATIO_SECONDS:-6}
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
# The floor: the same rows of one table, read by its index, nothing merged.
run_id=$(psql "$DATABASE_URL" -tAc "SELECT run_id FROM braid_internal.batch_runs WHERE view_name = 'page_views' AND status = 'active'")
batch_table=$(psql "$DATABASE_URL" -tAc "SELECT 'braid_internal.' || tablename FROM pg_tables WHERE tablename LIKE 'batch_page_views_%'")
cat > /tmp/braid-serving-floor.sql <<SQL
SELECT page, bucket_start, count, sum_duration_ms, max_duration_ms, count_duration_ms FROM $batch_table
WHERE run_id = $run_id AND page = '/home/0' AND bucket_start >= '2026-01-01T00:00:00Z' AND bucket_start < '2026-01-02T00:00:00Z'
ORDER BY bucket_start;
SQL
echo "floor: pgbench of the plain index read of the same rows from $batch_table ($(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM ($(sed 's/;$//' /tmp/braid-serving-floor.sql)) r") rows)"
cache_counts() {
  curl -sf "http://$API/metrics" | awk '
    /^braid_serving_answer_cache_hits_total/ { h += $NF }
    /^braid_serving_answer_cache_misses_total/ { m += $NF }
    END { printf "%d %d\n", h, m }'
}
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
  read -r h0 m0 < <(cache_counts)
  "$OHA" -z "${DURATION}s" -q "$rate" -c 16 --latency-correction --no-tui --output-format json \
    "http://$API$URI" > /tmp/braid-oha.json
  read -r h1 m1 < <(cache_counts)
  oha_figures "$rate"
  echo "  answer cache: $((h1 - h0)) hits, $((m1 - m0)) misses (each flush of the live stream drops the view's answers)"
  for sql in floor query; do
    rm -f /tmp/braid-pgbench-log*
    (cd /tmp && "$PGBENCH" -n -M prepared -c 16 -j 2 -T "$DURATION" -R "$rate" -f "/tmp/braid-serving-$sql.sql" \
      --log --log-prefix=braid-pgbench-log "$DATABASE_URL" > /tmp/braid-pgbench.txt 2>&1)
    pgbench_figures "$rate" | sed "s/^same SQL directly/$( [ $sql = floor ] && echo 'floor, index read of one table' || echo "the API's statement directly")/"
    grep -E 'tps|aborted|error' /tmp/braid-pgbench.txt | head -3 | sed 's/^/  pgbench: /'
  done
done
# The ratio the round-three target names, robust to the machine's speed drifting between two
# 30 s runs: floor and statement in turn, unthrottled, the median of each side's rounds.
for round in $(seq "$RATIO_ROUNDS"); do
  for sql in floor query; do
    tps=$("$PGBENCH" -n -M prepared -c 16 -j 2 -T "$RATIO_SECONDS" -f "/tmp/braid-serving-$sql.sql" "$DATABASE_URL" 2>&1 \
      | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "$sql ${tps:-0}"
  done
done > /tmp/braid-serving-ratio.txt
python3 - "$RATIO_ROUNDS" "$RATIO_SECONDS" <<'PY'
import statistics, sys
tps = {"floor": [], "query": []}
for line in open("/tmp/braid-serving-ratio.txt"):
    sql, value = line.split()
    tps[sql].append(float(value))
floor, query = statistics.median(tps["floor"]), statistics.median(tps["query"])
rounds = ", ".join(f"{q / f:.2f}" for f, q in zip(tps["floor"], tps["query"]) if f > 0)
print(f"the API's statement ÷ the floor, unthrottled (pgbench -M prepared -c 16, {sys.argv[1]} alternating rounds of {sys.argv[2]} s): "
      f"floor median {floor:,.0f} tps, statement median {query:,.0f} tps, ratio of medians {query / floor if floor else 0:.2f} (each round: {rounds})")
PY
echo "one execution, idle rates aside (EXPLAIN ANALYZE): $(psql "$DATABASE_URL" -qtAc "EXPLAIN (ANALYZE, FORMAT JSON) $(sed 's/;$//' /tmp/braid-serving-query.sql)" | python3 -c 'import json,sys; p=json.load(sys.stdin)[0]; print("planning %.2f ms, execution %.2f ms" % (p["Planning Time"], p["Execution Time"]))')"

"${BIN%/braid}/examples/freshness" "$KAFKA_BROKERS" "$BRAID__KAFKA__TOPIC" "$API" "$PROBES"
echo "speed.flush_interval_ms = ${BRAID__SPEED__FLUSH_INTERVAL_MS:-500}, flush_min_interval_ms = ${BRAID__SPEED__FLUSH_MIN_INTERVAL_MS:-50} (a caught-up layer flushes after the latter); scripts/bench/freshness.sh measures it at 1k, 20k and 200k events/s"
