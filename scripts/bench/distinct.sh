#!/usr/bin/env bash
# Benchmark: what a distinct(field) metric costs the speed layer, on two streams. For each, the
# same filled topic is caught up twice in the same run, each time from the start into a fresh
# database: once without the stream's distinct view, once with it. kcat reading the topic is the
# floor. After the run with the view, the stored size of its sketch rows (median and p99 of the
# `hll` values' bytes) and how many rows hold each storage form.
#   demo: braid.toml, less `unique_visitors` (distinct(user_id) per page and minute)
#   ysb:  examples/ysb.toml, less `ad_unique_users` (distinct(user_id) per ad and 10 s window)
#   BENCH_EVENTS      events in each topic (default 2000000)
#   BENCH_PARTITIONS  partitions (default 4)
#   BENCH_STREAMS     which streams (default "demo ysb")
#   BENCH_YSB_BUCKET  the bucket of ad_unique_users on the YSB stream (default its own, 10s): a
#                     longer one gathers more users per row, so rows go SPARSE and FULL
#   BENCH_YSB_METRIC  its metric (default distinct(user_id)); distinct(user_id, 11, 5, 0, 0) is
#                     the FULL-from-the-first-value form of Braid before issue 37
# Each catch-up also prints how many flush transactions it ran and their summed seconds (the
# speed layer's debug line "flushed"): the share of the time spent writing to PostgreSQL.
EVENTS=${BENCH_EVENTS:-2000000}
PARTITIONS=${BENCH_PARTITIONS:-4}
STREAMS=${BENCH_STREAMS:-demo ysb}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stamp=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# without CONFIG VIEW OUTPUT: CONFIG less the view named VIEW (views are separated by blank
# lines; the comment lines just above a view belong to its block).
without() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys, tomllib
config, view, output = sys.argv[1:]
blocks = open(config).read().split("\n\n")
kept = [b for b in blocks if f'name = "{view}"' not in b]
text = "\n\n".join(kept)
names = [v["name"] for v in tomllib.loads(text)["views"]]
assert view not in names and len(kept) == len(blocks) - 1, f"{config} changed: update this filter"
open(output, "w").write(text)
PY
}

# catch_up STREAM LABEL CONFIG [VIEW SKETCH_COLUMN]
catch_up() {
  speed_catch_up "bench_distinct_${stamp}_$1_$2" "$3" "$1, $2"
  if [ $# -ge 5 ]; then
    local table
    table=braid_internal.$(psql "$DATABASE_URL" -tAc "SELECT tablename FROM pg_tables WHERE schemaname = 'braid_internal' AND tablename LIKE 'speed\_$4\_%'")
    # The hll type's storage bytes are its varlena payload: octet_length of its text form is
    # 2 + 2 per byte (\x and hex digits).
    psql "$DATABASE_URL" -tA -F ' ' -c "
      SELECT 'stored sketch bytes per row: median ' || percentile_cont(0.5) WITHIN GROUP (ORDER BY b)
             || ', p99 ' || percentile_cont(0.99) WITHIN GROUP (ORDER BY b) || ', max ' || max(b) || ' (' || count(*) || ' rows; '
             || (
               SELECT string_agg(form || ' ' || n, ', ' ORDER BY form) FROM (
                 SELECT CASE substr(t, 4, 1) WHEN '1' THEN 'EMPTY' WHEN '2' THEN 'EXPLICIT' WHEN '3' THEN 'SPARSE' ELSE 'FULL' END AS form,
                        count(*) AS n FROM (SELECT $5::text AS t FROM $table WHERE $5 IS NOT NULL) f GROUP BY 1) forms) || ')'
      FROM (SELECT (octet_length($5::text) - 2) / 2 AS b FROM $table WHERE $5 IS NOT NULL) s"
  fi
  drop_caught_up
}

for stream in $STREAMS; do
  export BRAID__KAFKA__TOPIC=bench.distinct.$stamp.$stream
  case $stream in
    demo)
      config=$PWD/braid.toml view=unique_visitors
      fill_topic_and_time_kcat "$EVENTS" "$PARTITIONS"
      ;;
    ysb)
      config=$PWD/examples/ysb.toml view=ad_unique_users
      if [ -n "${BENCH_YSB_BUCKET:-}${BENCH_YSB_METRIC:-}" ]; then
        python3 - "$config" "$work/ysb.toml" "${BENCH_YSB_BUCKET:-10s}" "${BENCH_YSB_METRIC:-distinct(user_id)}" <<'PY'
import sys
config, output, bucket, metric = sys.argv[1:]
blocks = open(config).read().split("\n\n")
def change(block):
    if 'name = "ad_unique_users"' not in block:
        return block
    return block.replace('bucket = "10s"', f'bucket = "{bucket}"').replace('metrics = ["distinct(user_id)"]', f'metrics = ["{metric}"]')
changed = [change(b) for b in blocks]
assert 'metrics = ["distinct(user_id)"]' in open(config).read(), f"{config} changed: update this filter"
open(output, "w").write("\n\n".join(changed))
PY
        config=$work/ysb.toml
        echo "ad_unique_users: ${BENCH_YSB_METRIC:-distinct(user_id)} per ad and ${BENCH_YSB_BUCKET:-10s}"
      fi
      echo "YSB: $EVENTS ad events on $PARTITIONS partitions"
      RUST_LOG=warn "$BIN" generate --workload ysb --rate 0 --count "$EVENTS" --seed 1 --partitions "$PARTITIONS" >/dev/null
      t0=$(now)
      consumed=$(kcat -C -b "$KAFKA_BROKERS" -t "$BRAID__KAFKA__TOPIC" -o beginning -e -q -f '%o\n' | wc -l)
      t1=$(now)
      echo "plain consumer (kcat, offsets only): $(rate "$consumed" "$t0" "$t1") events/s ($consumed events)"
      ;;
    *) echo "BENCH_STREAMS: unknown stream '$stream' (demo, ysb)" >&2; exit 2 ;;
  esac
  without "$config" "$view" "$work/$stream-without.toml"
  catch_up "$stream" without_distinct "$work/$stream-without.toml"
  catch_up "$stream" with_distinct "$config" "$view" distinct_user_id
done
