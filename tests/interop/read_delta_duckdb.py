"""A second independent reader of Braid's Delta table: DuckDB with its `delta` extension
(delta_scan, built on delta-kernel-rs) and `httpfs` for S3, both installed from PyPI.

Usage: python read_delta_duckdb.py TABLE_URI   (a path or s3://bucket/prefix)
Storage options (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
AWS_ALLOW_HTTP) come as a JSON object in BRAID_STORAGE_OPTIONS.
Prints one JSON object: the row count and every row's [_partition, _offset], sorted.
"""

import json
import os
import sys
from urllib.parse import urlparse

import duckdb
import duckdb_extensions


def connect(options):
    for extension in ("httpfs", "delta"):
        duckdb_extensions.import_extension(extension)
    connection = duckdb.connect()
    connection.execute("LOAD httpfs")
    connection.execute("LOAD delta")
    upper = {k.upper(): v for k, v in options.items()}
    if "AWS_ENDPOINT_URL" in upper:
        endpoint = urlparse(upper["AWS_ENDPOINT_URL"])
        connection.execute(
            "CREATE SECRET lake (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
            [
                upper.get("AWS_ACCESS_KEY_ID", ""),
                upper.get("AWS_SECRET_ACCESS_KEY", ""),
                upper.get("AWS_REGION", "us-east-1"),
                endpoint.netloc,
                endpoint.scheme == "https",
            ],
        )
    return connection


def main(uri):
    options = json.loads(os.environ.get("BRAID_STORAGE_OPTIONS") or "{}")
    connection = connect(options)
    positions = connection.execute(
        "SELECT _partition, _offset FROM delta_scan(?) ORDER BY 1, 2", [uri]
    ).fetchall()
    json.dump({"rows": len(positions), "positions": [list(p) for p in positions]}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
