#!/usr/bin/env bash
# Benchmark: the Yahoo Streaming Benchmark workload (examples/ysb.toml): ad events, keep
# views, count per ad per 10 s window; campaigns (100 of 10 ads) are a dimension of the ad,
# followed from a compacted topic and rolled up when reading (GET ...?group_by=campaign_id).
#   1. The speed layer's sustained rate over a filled topic, beside kcat on the same topic.
#   2. Freshness after a window closes: with a live stream at BENCH_LIVE_RATE events/s, how long
#      after a window's end its count in PostgreSQL reaches its final value (p50/p99 over windows).
#   3. The peer a user would pick instead, Apache Flink (PyFlink's local mini-cluster, SQL, the
#      Kafka connector; scripts/bench/flink_ysb.py), in the same run on the same cores: the same
#      tumbling count over the same topic (events/s, memory), its window counts checked against
#      the fold like Braid's (run as in production: checkpoints every 10 s, a Kafka sink), again
#      as the job alone (a blackhole sink, no checkpoints: its rate only), then its freshness
#      after a window closes on a live stream of its own at the same rate (Braid's speed layer
#      stopped by then).
#   BENCH_EVENTS     events in the topic for part 1 (default 3000000)
#   BENCH_LIVE_RATE  events/s for part 2 (default 20000), BENCH_LIVE_SECONDS (default 240)
#   BENCH_ROLLUP_RATE, BENCH_ROLLUP_SECONDS  the campaign rollup's latency run (default 5/s for 20 s)
EVENTS=${BENCH_EVENTS:-3000000}
LIVE_RATE=${BENCH_LIVE_RATE:-20000}
LIVE_SECONDS=${BENCH_LIVE_SECONDS:-240}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
eval "$(scripts/flink-env.sh)"
export BRAID_CONFIG=$PWD/examples/ysb.toml
stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.ysb.$stamp
export BRAID__KAFKA__SPEED_GROUP=bench.ysb.speed.$stamp
fresh_database "bench_ysb_$stamp"
BRAID_BENCH_TMP=$(mktemp -d)
RUST_LOG=warn "$BIN" migrate

echo "YSB: $EVENTS ad events on 4 partitions"
RUST_LOG=warn "$BIN" generate --workload ysb --rate 0 --count "$EVENTS" --seed 1 --partitions 4 >/dev/null
t0=$(now)
consumed=$(kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC" -o beginning -e -q -f '%o\n' | wc -l)
t1=$(now)
echo "plain consumer (kcat, offsets only): $(rate "$consumed" "$t0" "$t1") events/s ($consumed events)"

total() { psql "$DATABASE_URL" -tAc "SELECT coalesce(sum(next_offset), 0) FROM braid_internal.speed_positions"; }

# The YSB query alone, which Flink runs below: examples/ysb.toml without its distinct-users view,
# on the same topic, with a group and a database of its own.
count_config=$BRAID_BENCH_TMP/ysb-count.toml
python3 - examples/ysb.toml "$count_config" <<'PY'
import sys, tomllib
text = open(sys.argv[1]).read()
trimmed = text[:text.index("# Unique users per ad")] + text[text.index("[[dimensions]]"):]
assert [v["name"] for v in tomllib.loads(trimmed)["views"]] == ["ad_views"], "examples/ysb.toml changed: update this filter"
open(sys.argv[2], "w").write(trimmed)
PY
count_url=${DATABASE_URL}_count
psql "$BENCH_SERVER_URL/braid" -qc "CREATE DATABASE ${BENCH_DB}_count" >/dev/null
trap 'psql "$BENCH_SERVER_URL/braid" -qc "DROP DATABASE IF EXISTS $BENCH_DB" -qc "DROP DATABASE IF EXISTS ${BENCH_DB}_count" >/dev/null' EXIT
BRAID_CONFIG=$count_config DATABASE_URL=$count_url RUST_LOG=warn "$BIN" migrate
t0=$(now)
BRAID_CONFIG=$count_config DATABASE_URL=$count_url BRAID__KAFKA__SPEED_GROUP=$BRAID__KAFKA__SPEED_GROUP.count \
  RUST_LOG=warn,sqlx=error "$BIN" speed & count_pid=$!
until [ "$(DATABASE_URL=$count_url total)" -ge "$EVENTS" ]; do kill -0 $count_pid || { echo "braid speed died" >&2; exit 1; }; sleep 0.1; done
t1=$(now)
echo "braid speed, the YSB query alone (ad_views): $(rate "$EVENTS" "$t0" "$t1") events/s from process start to caught up, peak resident $(awk '/VmHWM/ {print int($2 / 1024)}' /proc/$count_pid/status) MiB"
kill -INT $count_pid; wait $count_pid || true

# examples/ysb.toml as it is: the count and unique users (a HyperLogLog sketch per ad and window).
t0=$(now)
RUST_LOG=warn,sqlx=error "$BIN" speed & pid=$!
until [ "$(total)" -ge "$EVENTS" ]; do kill -0 $pid || { echo "braid speed died" >&2; exit 1; }; sleep 0.1; done
t1=$(now)
echo "braid speed, examples/ysb.toml (ad_views and ad_unique_users): $(rate "$EVENTS" "$t0" "$t1") events/s from process start to caught up"
# Exactness: views per (campaign, 10 s window) from the API, rolled up by the campaign dimension
# (followed from its compacted topic), beside a plain fold over the same generated stream (the
# generator is deterministic for a seed). No mapping is written here: the dimension does it.
RUST_LOG=warn "$BIN" generate --workload ysb-campaigns --topic bench.ysb.campaigns --count 1000 --partitions 1 >/dev/null
RUST_LOG=warn "$BIN" dimensions follow & follower=$!
until [ "$(psql "$DATABASE_URL" -tAc 'SELECT count(*) FROM braid_dimensions.campaigns')" -ge 1000 ]; do
  kill -0 $follower || { echo "braid dimensions follow died" >&2; exit 1; }; sleep 0.1
done
API=127.0.0.1:${BENCH_API_PORT:-18090}
BRAID__SERVING__MAX_LIMIT=1000000 RUST_LOG=warn "$BIN" serve --listen "$API" & api=$!
until curl -sf "http://$API/readyz" >/dev/null; do kill -0 $api || { echo "braid serve died" >&2; exit 1; }; sleep 0.2; done
URI="/v1/views/ad_views?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&group_by=campaign_id&granularity=10s&limit=1000000"
curl -sf "http://$API$URI" > "$BRAID_BENCH_TMP/served.json"
echo "per-campaign windows: GET $URI"
# Serving latency of an attribute rollup over the 1,000 ads, beside the same query on the raw key
# (one hour: 1,000 ads x 360 windows of stored rows read either way; 100 rows out against 1,000).
OHA=$HOME/.cache/braid/tools/bin/oha
[ -x "$OHA" ] || cargo install oha --locked --root "$HOME/.cache/braid/tools" >&2
for group in campaign_id ad_id; do
  q="/v1/views/ad_views?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z&granularity=1h&group_by=$group&limit=10000"
  rows=$(curl -sf "http://$API$q" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))')
  "$OHA" -z "${BENCH_ROLLUP_SECONDS:-20}s" -q "${BENCH_ROLLUP_RATE:-5}" -c 4 --latency-correction --no-tui --output-format json \
    "http://$API$q" > /tmp/braid-oha-rollup.json
  python3 - "$group" "$rows" <<'PY'
import json, sys
r = json.load(open("/tmp/braid-oha-rollup.json")); p = r["latencyPercentiles"]; s = r["summary"]
print(f"GET ad_views group_by={sys.argv[1]} over 1,000 ads, one hour ({sys.argv[2]} rows): "
      f"{s['requestsPerSec']:,.1f} requests/s, p50 {p['p50']*1000:.1f} ms, p99 {p['p99']*1000:.1f} ms, success {s['successRate']*100:.0f} %")
PY
done
URI="/v1/views/ad_views?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&group_by=ad_id&granularity=10s&limit=1000000"
curl -sf "http://$API$URI" > "$BRAID_BENCH_TMP/served-ads.json"
kill -INT $api $follower; wait $api $follower || true

echo "Flink $("$FLINK_PYTHON" -c 'import pyflink.version as v; print(v.__version__)'), local mini-cluster, parallelism $(nproc), the same topic from its start"
"$FLINK_PYTHON" scripts/bench/flink_ysb.py catchup --topic "$BRAID__KAFKA__TOPIC" --out "$BRAID__KAFKA__TOPIC.flink" \
  --events "$EVENTS" 2>"$BRAID_BENCH_TMP/flink.log" || { tail -n 30 "$BRAID_BENCH_TMP/flink.log" >&2; exit 1; }
kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC.flink" -o beginning -e -q > "$BRAID_BENCH_TMP/flink-rows.json"
echo "Flink again, the job alone: a blackhole sink and no checkpoints (its rows are discarded, so only its rate is compared)"
"$FLINK_PYTHON" scripts/bench/flink_ysb.py catchup --sink blackhole --topic "$BRAID__KAFKA__TOPIC" --out unused \
  --events "$EVENTS" 2>"$BRAID_BENCH_TMP/flink-blackhole.log" | sed 's/^flink:/flink (blackhole):/' \
  || { tail -n 30 "$BRAID_BENCH_TMP/flink-blackhole.log" >&2; exit 1; }
"$BIN" generate --workload ysb --stdout --count "$EVENTS" --seed 1 | python3 scripts/bench/ysb_check.py \
  --campaigns "$BRAID_BENCH_TMP/served.json" --ads "$BRAID_BENCH_TMP/served-ads.json" --flink "$BRAID_BENCH_TMP/flink-rows.json" \
  || { echo "window counts differ from the fold over the generated stream" >&2; exit 1; }

echo "live: $LIVE_RATE events/s for $LIVE_SECONDS s with wall-clock event times"
live_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RUST_LOG=warn "$BIN" generate --workload ysb --rate "$LIVE_RATE" --count $((LIVE_RATE * LIVE_SECONDS)) --partitions 4 >/dev/null & gen=$!
python3 - "$DATABASE_URL" "$live_start" "$gen" <<'PY'
import datetime, os, subprocess, sys, time
url, start, producer = sys.argv[1], sys.argv[2], int(sys.argv[3])
query = f"SELECT extract(epoch FROM bucket_start)::bigint, sum(count) FROM serving.ad_views WHERE bucket_start >= '{start}' GROUP BY 1"
def poll():
    out = subprocess.run(["psql", url, "-tAF", " ", "-c", query], capture_output=True, text=True, check=True).stdout
    return {int(w): int(c) for w, c in (line.split() for line in out.split("\n") if line.strip())}
seen = []  # (time, {window: count})
def running():
    try:
        os.kill(producer, 0); return True
    except OSError:
        return False
while running():
    seen.append((time.time(), poll())); time.sleep(0.1)
for _ in range(100):  # 10 more seconds for the last windows to settle
    seen.append((time.time(), poll())); time.sleep(0.1)
final = seen[-1][1]
latencies = []
for window, count in final.items():
    end = window + 10
    if end > seen[-1][0] - 10 or end < seen[0][0]:
        continue  # windows still open at the end, or closed before polling began
    first = next(t for t, counts in seen if counts.get(window) == count)
    latencies.append(max(0.0, first - end) * 1000)
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
print(f"freshness after a window closes ({len(latencies)} windows, polled every 100 ms): p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms")
PY
wait $gen || true
echo "braid speed memory after the $EVENTS-event catch-up and $LIVE_SECONDS s live: resident $(awk '/VmRSS/ {print int($2 / 1024)}' /proc/$pid/status) MiB, peak $(awk '/VmHWM/ {print int($2 / 1024)}' /proc/$pid/status) MiB"
kill -INT $pid; wait $pid || true

echo "flink live: $LIVE_RATE events/s for $LIVE_SECONDS s, the same generator, Braid's speed layer stopped"
"$FLINK_PYTHON" scripts/bench/flink_ysb.py live --topic "$BRAID__KAFKA__TOPIC" --out "$BRAID__KAFKA__TOPIC.flink-live" \
  --seconds $((LIVE_SECONDS + 25)) 2>"$BRAID_BENCH_TMP/flink-live.log" > "$BRAID_BENCH_TMP/flink-live.out" & flink=$!
until grep -qs "job running" "$BRAID_BENCH_TMP/flink-live.out"; do
  kill -0 $flink 2>/dev/null || { tail -n 30 "$BRAID_BENCH_TMP/flink-live.log" >&2; exit 1; }; sleep 0.2
done
live_start=$(date +%s.%N)
RUST_LOG=warn "$BIN" generate --workload ysb --rate "$LIVE_RATE" --count $((LIVE_RATE * LIVE_SECONDS)) --partitions 4 >/dev/null
live_end=$(date +%s.%N)
wait $flink || { tail -n 30 "$BRAID_BENCH_TMP/flink-live.log" >&2; exit 1; }
cat "$BRAID_BENCH_TMP/flink-live.out"
kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC.flink-live" -o beginning -e -q -f '%T %s\n' \
  | python3 -c '
import datetime, json, sys
from collections import defaultdict
start, end = float(sys.argv[1]), float(sys.argv[2])
last = defaultdict(int)  # window end (ms) -> the latest Kafka timestamp of its rows
for line in sys.stdin:
    stamp, row = line.split(" ", 1)
    row = json.loads(row)
    window_end = datetime.datetime.fromisoformat(row["window_end"]).replace(tzinfo=datetime.timezone.utc)
    key = int(window_end.timestamp() * 1000)
    last[key] = max(last[key], int(stamp))
latencies = sorted(last[w] - w for w in last if w - 10_000 >= start * 1000 and w <= end * 1000)
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
print(f"flink freshness after a window closes ({len(latencies)} windows, from the Kafka timestamp of the "
      f"window'"'"'s last row): p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms")
' "$live_start" "$live_end"
rm -rf "$BRAID_BENCH_TMP"
