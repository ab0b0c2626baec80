#!/usr/bin/env bash
# Benchmark: the speed layer's sustained rate beside a plain consumer (kcat) on the same topic,
# in the same run, with the broker and PostgreSQL on this machine.
#   BENCH_EVENTS   events in the topic (default 2000000)
#   BENCH_PARTITIONS  partitions (default 4)
#   BENCH_LIVE_RATES  events/s of the live phases (default "100000 200000 300000"),
#   BENCH_LIVE_SECONDS  seconds per live phase (default 20)
# Two parts: the catch-up rate over a filled topic (beside kcat), then live streams at fixed
# rates with wall-clock event times, sampling the lag (events not yet in PostgreSQL) and the
# freshness (now minus the newest event time stored, on the slowest partition) every 0.5 s. A
# rate is kept up with when the lag at the end of its phase is under one second of events.
# Prints one line per figure; docs/benchmarks.md records a run.
EVENTS=${BENCH_EVENTS:-2000000}
PARTITIONS=${BENCH_PARTITIONS:-4}
LIVE_RATES=${BENCH_LIVE_RATES:-100000 200000 300000}
LIVE_SECONDS=${BENCH_LIVE_SECONDS:-20}
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
echo "braid speed: $(rate "$EVENTS" "$t0" "$t1") events/s from process start to caught up; $(rate "$((EVENTS - first_count))" "$first" "$t1") events/s after the first flush"
echo "braid speed peak RSS (catch-up): $((rss / 1024)) MiB"

for LIVE_RATE in $LIVE_RATES; do
echo "live: $LIVE_RATE events/s offered for $LIVE_SECONDS s with wall-clock event times, lag sampled every 0.5 s"
RUST_LOG=warn "$BIN" generate --rate "$LIVE_RATE" --count $((LIVE_RATE * LIVE_SECONDS)) --partitions "$PARTITIONS" >/dev/null & gen=$!
python3 - "$DATABASE_URL" "$KAFKA_BROKERS" "$BRAID__KAFKA__TOPIC" "$PARTITIONS" "$gen" "$(total)" <<'PY'
import os, re, subprocess, sys, time
url, brokers, topic, partitions, producer, before = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def produced():
    args = ["kcat", "-Q", "-b", brokers] + [a for p in range(partitions) for a in ("-t", f"{topic}:{p}:-1")]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    return sum(int(n) for n in re.findall(r"offset (\d+)", out))
def stored():
    out = subprocess.run(["psql", url, "-tAF", " ", "-c",
        "SELECT coalesce(sum(next_offset), 0), extract(epoch FROM clock_timestamp() - min(newest_event_time)) FROM braid_internal.speed_positions"],
        capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1]) if len(out) > 1 else None
def running():
    try:
        os.kill(producer, 0); return True
    except OSError:
        return False
lags, freshness = [], []
t0 = time.time()
while running():
    high = produced(); done, fresh = stored()
    lags.append(max(0, high - done))
    # Only once every partition has stored an event of this phase (the newest stored event
    # time of a partition that has not is older than the phase: the filled topic's, or the
    # previous phase's).
    if fresh is not None and fresh < time.time() - t0:
        freshness.append(fresh * 1000)
    time.sleep(0.5)
t1 = time.time()
sent = produced() - before
lags_in_order = list(lags)
lags.sort(); freshness.sort()
pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
produced_rate = sent / (t1 - t0)
last = lags_in_order[-3:]
verdict = "keeps up: lag under one second of events at the end" if max(last) < produced_rate else "falls behind: the lag grows"
print(f"  {produced_rate:,.0f} events/s produced; lag behind the broker ({len(lags)} samples): p50 {pick(lags, 0.5):,} events, p99 {pick(lags, 0.99):,}, max {lags[-1]:,} ({lags[-1] / produced_rate:.2f} s of events), last three {last}: {verdict}")
if freshness:
    print(f"  speed-layer freshness (now minus the newest stored event time, slowest partition): p50 {pick(freshness, 0.5):.0f} ms, p99 {pick(freshness, 0.99):.0f} ms, max {freshness[-1]:.0f} ms")
# Let the speed layer catch up before the next rate (at most 60 s).
high, deadline = produced(), time.time() + 60
while stored()[0] < high and time.time() < deadline:
    time.sleep(0.1)
PY
wait $gen || true
done
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -INT $pid; wait $pid || true
echo "braid speed peak RSS (whole run): $((rss / 1024)) MiB"
psql "$DATABASE_URL" -tAc "SELECT 'speed rows written: ' || sum((xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM braid_internal.' || table_name, false, true, '')))[1]::text::bigint) FROM information_schema.tables WHERE table_schema = 'braid_internal' AND table_name LIKE 'speed\_%' AND table_name <> 'speed_positions'"
