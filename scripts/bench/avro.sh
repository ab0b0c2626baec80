#!/usr/bin/env bash
# Benchmark: the same stream as JSON, as Avro and as Protobuf (Confluent's wire format, the
# writer schema in the local schema registry), each read by a plain consumer (kcat), the speed
# layer and the sink, in one run. The speed layer runs the demo config's page_views view alone, so that
# reading and validating records, not the flush of a heavy view, is what is measured.
#   BENCH_EVENTS      events in each topic (default 2000000)
#   BENCH_PARTITIONS  partitions (default 4)
#   BENCH_FORMATS     the formats compared (default "json avro protobuf")
EVENTS=${BENCH_EVENTS:-2000000}
PARTITIONS=${BENCH_PARTITIONS:-4}
FORMATS=${BENCH_FORMATS:-json avro protobuf}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ -n "${BRAID_SCHEMA_REGISTRY_URL:-}" ] || { echo "avro.sh: no schema registry (scripts/services.sh up starts one)" >&2; exit 1; }

stamp=$(date +%s)
work=$(mktemp -d)
fresh_database "bench_avro_$stamp"
trap 'rm -rf "$work" .braid/bench/lake-avro-*-'"$stamp"'; psql "$BENCH_SERVER_URL/braid" -qc "DROP DATABASE IF EXISTS $BENCH_DB" >/dev/null' EXIT
# The demo config with its page_views view only.
python3 - braid.toml "$work/one-view.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
head, *views = re.split(r"(?m)^(?=\[\[views\]\])", text)
keep = [v for v in views if re.search(r'(?m)^name = "page_views"', v)]
rest = [v for v in views if v not in keep]
# Anything after the views (alerts, dimensions) refers to views: left out.
open(sys.argv[2], "w").write(head + "".join(keep))
PY
echo "events: $EVENTS on $PARTITIONS partitions, the demo clickstream (seed 1, 0.1% malformed), once in each of: $FORMATS"
for format in $FORMATS; do
  topic=bench.$format.$stamp
  t0=$(now)
  BRAID__KAFKA__TOPIC=$topic BRAID__SCHEMA_REGISTRY__URL=$BRAID_SCHEMA_REGISTRY_URL RUST_LOG=warn \
    "$BIN" generate --format "$format" --rate 0 --count "$EVENTS" --seed 1 --partitions "$PARTITIONS" --malformed-fraction 0.001 >/dev/null
  t1=$(now)
  bytes=$(kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%S\n' | awk '{s += $1} END {print s}')
  echo "$format: produced at $(rate "$EVENTS" "$t0" "$t1") events/s; $(python3 -c "print(f'{$bytes / $EVENTS:.0f}')") bytes per message"
done
for format in $FORMATS; do
  topic=bench.$format.$stamp
  t0=$(now)
  consumed=$(kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%o\n' | wc -l)
  t1=$(now)
  echo "$format: plain consumer (kcat, offsets only): $(rate "$consumed" "$t0" "$t1") events/s"
done

for format in $FORMATS; do
  export BRAID__KAFKA__TOPIC=bench.$format.$stamp BRAID__SCHEMA__FORMAT=$format
  export BRAID__SCHEMA_REGISTRY__URL=$BRAID_SCHEMA_REGISTRY_URL
  speed_catch_up "bench_avro_speed_${format}_$stamp" "$work/one-view.toml" "$format, page_views alone"
  drop_caught_up
  export DATABASE_URL=$BENCH_SERVER_URL/$BENCH_DB
done

for format in $FORMATS; do
  export BRAID__KAFKA__TOPIC=bench.$format.$stamp BRAID__SCHEMA__FORMAT=$format
  export BRAID__KAFKA__SINK_GROUP=bench.sink.$format.$stamp BRAID__LAKE__URI=$PWD/.braid/bench/lake-avro-$format-$stamp
  unset BRAID_CONFIG
  psql "$BENCH_SERVER_URL/braid" -qc "CREATE DATABASE bench_avro_sink_${format}_$stamp" >/dev/null
  export DATABASE_URL=$BENCH_SERVER_URL/bench_avro_sink_${format}_$stamp
  RUST_LOG=warn "$BIN" migrate
  t0=$(now)
  RUST_LOG=warn "$BIN" sink 2>"$work/sink-$format.log" & pid=$!
  while [ "$(sink_committed "$BRAID__LAKE__URI" "$BRAID__KAFKA__TOPIC")" -lt "$EVENTS" ]; do
    kill -0 $pid || { echo "braid sink died: $(tail -5 "$work/sink-$format.log")" >&2; exit 1; }
    sleep 0.2
  done
  t1=$(now)
  rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  cpu=$(awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$pid/stat")
  kill -INT $pid; wait $pid || true
  echo "braid sink, $format: $(rate "$EVENTS" "$t0" "$t1") records/s from process start to committed, $cpu s of CPU, peak RSS $((rss / 1024)) MiB"
  psql "$BENCH_SERVER_URL/braid" -qc "DROP DATABASE bench_avro_sink_${format}_$stamp" >/dev/null
done
