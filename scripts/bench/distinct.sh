#!/usr/bin/env bash
# Benchmark: what a distinct(field) metric costs the speed layer. The same filled topic is
# caught up twice, in the same run, each time from the start into a fresh database: once with
# the demo views less `unique_visitors` (the one view with distinct(user_id)), once with all of
# them. kcat reading the topic is the floor.
#   BENCH_EVENTS      events in the topic (default 2000000)
#   BENCH_PARTITIONS  partitions (default 4)
EVENTS=${BENCH_EVENTS:-2000000}
PARTITIONS=${BENCH_PARTITIONS:-4}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.distinct.$stamp
server_url=${DATABASE_URL%/*}
fill_topic_and_time_kcat "$EVENTS" "$PARTITIONS"
without=$(mktemp --suffix .toml)
# braid.toml less the unique_visitors view (views are separated by blank lines).
python3 - braid.toml "$without" <<'PY'
import sys
blocks = open(sys.argv[1]).read().split("\n\n")
kept = [b for b in blocks if 'name = "unique_visitors"' not in b]
open(sys.argv[2], "w").write("\n\n".join(kept))
PY

catch_up() { # catch_up LABEL CONFIG
  local db=bench_distinct_${stamp}_$1
  psql "$server_url/braid" -qc "CREATE DATABASE $db" >/dev/null
  export DATABASE_URL=$server_url/$db BRAID_CONFIG=$2 BRAID__KAFKA__SPEED_GROUP=bench.distinct.$stamp.$1
  RUST_LOG=warn "$BIN" migrate
  local t0 t1 pid done_count rss
  t0=$(now)
  RUST_LOG=warn "$BIN" speed & pid=$!
  while :; do
    done_count=$(psql "$DATABASE_URL" -tAc "SELECT coalesce(sum(next_offset), 0) FROM braid_internal.speed_positions")
    [ "$done_count" -ge "$EVENTS" ] && break
    kill -0 $pid || { echo "braid speed died" >&2; exit 1; }
    sleep 0.1
  done
  t1=$(now)
  rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill -INT $pid; wait $pid || true
  echo "braid speed, $1: $(rate "$EVENTS" "$t0" "$t1") events/s from process start to caught up, peak RSS $((rss / 1024)) MiB"
  psql "$server_url/braid" -qc "DROP DATABASE $db" >/dev/null
}
catch_up without_distinct "$without"
catch_up with_distinct "$PWD/braid.toml"
rm -f "$without"
