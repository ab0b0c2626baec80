# Shared set-up of the benchmark scripts (sourced, not run): services, kcat, the release
# binary, a fresh database, and small helpers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
services_env=$(scripts/services.sh up) || { echo "the services did not start; see above" >&2; exit 1; }
eval "$services_env"
command -v kcat >/dev/null || { apt-get install -y -qq kcat >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq kcat; }; }
# BENCH_BIN: run this braid binary (with examples/freshness beside it) instead of building one,
# e.g. to compare two builds within one session.
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  cargo build --release --bin braid --example freshness >&2
  BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/braid
fi

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f}')"; }

# A fresh database for this run; sets DATABASE_URL to it and drops it on exit.
fresh_database() {
  BENCH_DB=$1
  psql "$DATABASE_URL" -qc "CREATE DATABASE $BENCH_DB" >/dev/null
  BENCH_SERVER_URL=${DATABASE_URL%/*}
  export DATABASE_URL=$BENCH_SERVER_URL/$BENCH_DB
  trap 'psql "$BENCH_SERVER_URL/braid" -qc "DROP DATABASE IF EXISTS $BENCH_DB" >/dev/null' EXIT
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# Fills $BRAID__KAFKA__TOPIC with the demo stream, then times kcat reading it (the peer figure).
fill_topic_and_time_kcat() {
  local events=$1 partitions=$2
  echo "events: $events on $partitions partitions (demo clickstream, 0.1% malformed, 2% late)"
  local t0 t1 consumed
  t0=$(now)
  RUST_LOG=warn "$BIN" generate --rate 0 --count "$events" --seed 1 --partitions "$partitions" --malformed-fraction 0.001 >/dev/null
  t1=$(now)
  echo "produce (braid generate, lz4, acks=all): $(rate "$events" "$t0" "$t1") events/s"
  t0=$(now)
  consumed=$(kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC" -o beginning -e -q -f '%o\n' | wc -l)
  t1=$(now)
  echo "plain consumer (kcat, offsets only): $(rate "$consumed" "$t0" "$t1") events/s ($consumed events)"
}

# speed_catch_up DB CONFIG LABEL: a speed layer (config CONFIG) caught up from the start with
# the $EVENTS events of $BRAID__KAFKA__TOPIC into a new database DB; prints its events/s from
# process start to caught up, its peak RSS, and its flush transactions' summed seconds (the
# debug line "flushed": the share of the time spent writing to PostgreSQL). DATABASE_URL stays
# on DB for the caller's queries; drop_caught_up drops it.
speed_catch_up() {
  local db=$1 config=$2 label=$3 log
  BENCH_CATCH_UP_SERVER=${BENCH_CATCH_UP_SERVER:-${DATABASE_URL%/*}}
  BENCH_CATCH_UP_DB=$db
  psql "$BENCH_CATCH_UP_SERVER/braid" -qc "CREATE DATABASE $db" >/dev/null
  export DATABASE_URL=$BENCH_CATCH_UP_SERVER/$db BRAID_CONFIG=$config BRAID__KAFKA__SPEED_GROUP=bench.$db
  RUST_LOG=warn "$BIN" migrate
  local t0 t1 pid done_count rss
  log=$(mktemp)
  t0=$(now)
  RUST_LOG=warn,sqlx=error,speed_layer=debug "$BIN" speed 2>"$log" & pid=$!
  while :; do
    done_count=$(psql "$DATABASE_URL" -tAc "SELECT coalesce(sum(next_offset), 0) FROM braid_internal.speed_positions")
    [ "$done_count" -ge "$EVENTS" ] && break
    kill -0 $pid || { echo "braid speed died: $(tail -5 "$log")" >&2; exit 1; }
    sleep 0.1
  done
  t1=$(now)
  rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill -INT $pid; wait $pid || true
  echo "braid speed, $label: $(rate "$EVENTS" "$t0" "$t1") events/s from process start to caught up, peak RSS $((rss / 1024)) MiB"
  python3 - "$log" "$t0" "$t1" <<'PY'
import re, sys
log, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
seconds = [float(m.group(1)) for line in open(log, errors="replace") if "flushed" in line
           for m in [re.search(r"seconds=([0-9.e-]+)", line)] if m]
print(f"  flush transactions: {len(seconds)}, {sum(seconds):.2f} s summed of the {t1 - t0:.2f} s run")
PY
  rm -f "$log"
}

# Drops the database of the last speed_catch_up.
drop_caught_up() {
  psql "$BENCH_CATCH_UP_SERVER/braid" -qc "DROP DATABASE $BENCH_CATCH_UP_DB" >/dev/null
}

# sink_committed LAKE TOPIC: the next offsets the sink committed to the Delta log at LAKE for
# TOPIC, summed (the last commit's txn action per partition).
sink_committed() {
  python3 - "$1/_delta_log" "$2" <<'PY'
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
