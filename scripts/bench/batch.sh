#!/usr/bin/env bash
# Benchmark: a batch recompute of every demo view over a large Delta table with Polars (in time
# slices of the default batch.slice_records, then unsliced), then with Spark (batch.engine =
# "spark", local mode on this machine's cores), beside DuckDB computing the same aggregates over
# the same Parquet files, all in the same run.
#   BENCH_EVENTS      events (default 10000000; the issue's large run is 50000000)
#   BENCH_PARTITIONS  partitions (default 4)
#   BENCH_SPARK       0 to leave Spark out (default 1)
EVENTS=${BENCH_EVENTS:-10000000}
PARTITIONS=${BENCH_PARTITIONS:-4}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PYTHON=$(scripts/python-env.sh duckdb==1.4.2)

stamp=$(date +%s)
export BRAID__KAFKA__TOPIC=bench.batch.$stamp
export BRAID__KAFKA__SPEED_GROUP=bench.batch.speed.$stamp
export BRAID__KAFKA__SINK_GROUP=bench.batch.sink.$stamp
export BRAID__LAKE__URI=$PWD/.braid/bench/lake-$stamp
fresh_database "bench_batch_$stamp"
echo "events: $EVENTS on $PARTITIONS partitions (demo clickstream, 0.1% malformed)"
RUST_LOG=warn "$BIN" generate --rate 0 --count "$EVENTS" --seed 1 --partitions "$PARTITIONS" --malformed-fraction 0.001 >/dev/null
RUST_LOG=warn "$BIN" migrate

# Fill the lake and the speed layer's positions (so the cut covers every record), one after the other.
run_until() { # run_until COMMAND CHECK: runs `braid COMMAND` until CHECK prints a number >= EVENTS
  RUST_LOG=warn "$BIN" "$1" & local pid=$!
  until [ "$($2)" -ge "$EVENTS" ]; do kill -0 $pid || { echo "braid $1 died" >&2; exit 1; }; sleep 0.5; done
  kill -INT $pid; wait $pid || true
}
speed_total() { psql "$DATABASE_URL" -tAc "SELECT coalesce(sum(next_offset), 0) FROM braid_internal.speed_positions"; }
sink_total() { "$PYTHON" -c "
import deltalake, sys
t = deltalake.DeltaTable(sys.argv[1]); print(sum(t.transaction_version(f'braid-sink:{sys.argv[2]}:{p}') or 0 for p in range(int(sys.argv[3]))))
" "$BRAID__LAKE__URI" "$BRAID__KAFKA__TOPIC" "$PARTITIONS" 2>/dev/null || echo 0; }
run_until sink sink_total
run_until speed speed_total
files=$(find "$BRAID__LAKE__URI" -name '*.parquet' | wc -l)
echo "table: $files Parquet files, $(du -sh "$BRAID__LAKE__URI" | cut -f1)"

out=$(mktemp -d)
# polars_run LABEL [VAR=VALUE...]: one Polars run of every view over the same records and cut (the
# speed layer stands still), with its rate, peak RSS and where the time went.
polars_run() {
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$out/time" env RUST_LOG=warn,batch_layer::recompute=info "$@" "$BIN" batch run >"$out/stdout" 2>"$out/log"
  read -r seconds kib < "$out/time"
  rows=$(grep -o '[0-9]* records read' "$out/stdout" | cut -d' ' -f1)
  echo "braid batch run, $label: $(python3 -c "print(f'{$rows / $seconds:,.0f}')") rows/s ($rows rows, $seconds s end to end: cut, wait, Polars, COPY, publish), peak RSS $((kib / 1024)) MiB"
  # Where the time went, from the run's own log (one query per view and time slice).
  python3 - "$out/log" <<'PY'
import re, sys
phases, views = [], {}
for line in open(sys.argv[1]):
    if "counted the records below the cut" in line:
        phases.append(f"count {float(re.search(r'seconds=([0-9.]+)', line).group(1)):.2f} s")
    elif "sliced the views' records by time" in line:
        slices = re.search(r'slices=([0-9]+)', line).group(1)
        phases.append(f"{slices} slices counted in {float(re.search(r'seconds=([0-9.]+)', line).group(1)):.2f} s")
    elif "computed and loaded the view" in line:
        view = re.search(r'view="?([A-Za-z0-9_]+)', line).group(1)
        v = views.setdefault(view, [0, 0, 0.0, 0.0, 0.0])
        v[0] += 1
        v[1] += int(re.search(r'rows=([0-9]+)', line).group(1))
        for i, key in enumerate(["compute_seconds", "encode_seconds", "copy_seconds"]):
            v[2 + i] += float(re.search(key + r'=([0-9.]+(?:e-?[0-9]+)?)', line).group(1))
for view, (n, rows, compute, encode, copy) in views.items():
    phases.append(f"{view} compute {compute:.2f} s + encode {encode:.2f} s + COPY {copy:.2f} s ({rows} rows, {n} slice{'s' if n > 1 else ''})")
print("  phases: " + "; ".join(phases))
PY
}
# The default (time slices of batch.slice_records = 1,000,000 records), then one slice of all.
polars_run "Polars, default slices"
polars_run "Polars, unsliced" BRAID__BATCH__SLICE_RECORDS=1000000000000

if [ "${BENCH_SPARK:-1}" != 0 ]; then
  # The same records and cut (the speed layer stands still): a second run, computed by Spark.
  # spark-submit runs under /usr/bin/time, for the peak RSS of the JVM it becomes.
  submit=$(scripts/spark-env.sh)
  cat >"$out/submit" <<WRAP
#!/usr/bin/env bash
exec /usr/bin/time -f '%M' -o '$out/spark-rss' '$submit' "\$@"
WRAP
  chmod +x "$out/submit"
  /usr/bin/time -f '%e %M' -o "$out/time" env RUST_LOG=warn,batch_layer::recompute=info \
    BRAID__BATCH__ENGINE=spark BRAID__BATCH__SPARK__SUBMIT="$out/submit" BRAID__BATCH__SPARK__MASTER='local[2]' \
    BRAID__BATCH__SPARK__CONF__SPARK.DRIVER.MEMORY=4g BRAID__BATCH__SPARK__CONF__SPARK.UI.ENABLED=false \
    "$BIN" batch run >"$out/stdout" 2>"$out/log" || { tail -n 20 "$out/log" >&2; echo "the Spark run failed" >&2; exit 1; }
  read -r seconds kib < "$out/time"
  rows=$(grep -o '[0-9]* records read' "$out/stdout" | cut -d' ' -f1)
  job=$(grep -o 'the Spark job ended seconds=[0-9.]*' "$out/log" | grep -o '[0-9.]*$')
  echo "braid batch run, Spark local[2]: $(python3 -c "print(f'{$rows / $seconds:,.0f}')") rows/s ($rows rows, $seconds s end to end, of which the Spark job $(printf %.1f "$job") s including JVM start and package resolution), peak RSS of the Spark JVM $(($(cat "$out/spark-rss") / 1024)) MiB (GNU time counts braid with its children, so braid's own is not separable here)"
fi
rm -rf "$out"
"$PYTHON" scripts/bench/batch_duckdb.py "$BRAID__LAKE__URI"
rm -rf "$BRAID__LAKE__URI"
