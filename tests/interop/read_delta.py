"""An independent reader of Braid's Delta table (the `deltalake` package from PyPI, via pyarrow).

Usage: python read_delta.py TABLE_URI   (a path or s3://bucket/prefix)
Storage options (endpoint, credentials) come as a JSON object in BRAID_STORAGE_OPTIONS.
Prints one JSON object: the table version, its schema and every row (sorted by partition and
offset). Timestamps are integer microseconds since the epoch, dates ISO strings, bytes UTF-8 text.
"""

import datetime
import json
import os
import sys

import deltalake
import pyarrow as pa


def plain(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def main(uri):
    options = json.loads(os.environ.get("BRAID_STORAGE_OPTIONS") or "{}")
    table = deltalake.DeltaTable(uri, storage_options=options or None)
    data = table.to_pyarrow_table()
    schema = [[f.name, str(f.type), f.nullable] for f in data.schema]
    rows = [{k: plain(v) for k, v in row.items()} for row in data.to_pylist()]
    rows.sort(key=lambda r: (r["_partition"], r["_offset"]))
    json.dump({"version": table.version(), "schema": schema, "rows": rows}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
