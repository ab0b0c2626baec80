"""The peer of the batch benchmark: DuckDB computing the demo views' aggregates over the same
Parquet files (the Delta table's active files), timed in the same run.

Usage: python batch_duckdb.py TABLE_PATH
"""

import resource
import sys
import time

import deltalake
import duckdb

VIEWS = {
    "page_views": """
        SELECT page, (epoch_us(ts) // 60000000) * 60000000 AS bucket, count(*), coalesce(sum(duration_ms), 0), max(duration_ms), count(duration_ms)
        FROM events WHERE event_type = 'page_view' GROUP BY ALL""",
    "purchases_by_country": """
        SELECT country, device, (epoch_us(ts) // 60000000) * 60000000 AS bucket, count(*), coalesce(sum(price_cents), 0),
               min(price_cents), max(price_cents), count(price_cents)
        FROM events WHERE event_type = 'purchase' GROUP BY ALL""",
    "events_by_type": """
        SELECT event_type, (epoch_us(ts) // 10000000) * 10000000 AS bucket, count(*) FROM events GROUP BY ALL""",
    # Braid keeps a HyperLogLog sketch per group; DuckDB's HyperLogLog estimate is the peer.
    "unique_visitors": """
        SELECT page, (epoch_us(ts) // 60000000) * 60000000 AS bucket, count(*), approx_count_distinct(user_id)
        FROM events GROUP BY ALL""",
    "trending_pages": """
        SELECT page, (epoch_us(ts) // 60000000) * 60000000 AS bucket, count(*),
               sum(pow(2, (epoch_us(ts) % 60000000) / 600e6)),
               sum(duration_ms * pow(2, (epoch_us(ts) % 60000000) / 600e6))
        FROM events GROUP BY ALL""",
    # Braid keeps a quantile sketch and the 5 records of lowest position hash per group. The
    # peer does comparable work, not the same records: DuckDB's t-digest quantiles and the 5
    # records of lowest DuckDB hash, each with every field (built for every row it reads).
    "page_latency": """
        SELECT page, (epoch_us(ts) // 60000000) * 60000000 AS bucket, count(*),
               approx_quantile(duration_ms, [0.5, 0.99]),
               min_by({'event_id': event_id, 'ts': epoch_us(ts), 'event_type': event_type, 'user_id': user_id,
                       'page': page, 'country': country, 'device': device, 'price_cents': price_cents,
                       'duration_ms': duration_ms, 'is_new_user': is_new_user}, hash(_partition, _offset), 5)
        FROM events WHERE event_type = 'page_view' GROUP BY ALL""",
}


def main(path):
    files = deltalake.DeltaTable(path).file_uris()
    connection = duckdb.connect()
    connection.execute("SET threads = 2")
    started = time.perf_counter()
    connection.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet({files!r})")
    rows = connection.execute("SELECT count(*) FROM events").fetchone()[0]
    groups, per_view = {}, []
    for name, sql in VIEWS.items():
        view_started = time.perf_counter()
        groups[name] = len(connection.execute(sql).fetchall())
        per_view.append(f"{name} {time.perf_counter() - view_started:.2f} s")
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"duckdb: {rows / seconds:,.0f} rows/s ({rows} rows, {seconds:.2f} s, {len(files)} files, groups {groups}), peak RSS {peak_mib:.0f} MiB")
    # Per view, beside Braid's phases (unique_visitors: approx_count_distinct against the sketches).
    print("  duckdb per view: " + "; ".join(per_view))


if __name__ == "__main__":
    main(sys.argv[1])
