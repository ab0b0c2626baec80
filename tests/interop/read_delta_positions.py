"""The (partition, offset) of every row of one version of Braid's Delta table, read by the
`deltalake` package from PyPI (the soak's lake check: a few columns, not read_delta.py's rows).

Usage: python read_delta_positions.py TABLE_URI VERSION
Storage options come as a JSON object in BRAID_STORAGE_OPTIONS.
Prints one JSON object: the version and every row's [_partition, _offset], sorted.
"""

import json
import os
import sys

import deltalake


def main(uri, version):
    options = json.loads(os.environ.get("BRAID_STORAGE_OPTIONS") or "{}")
    table = deltalake.DeltaTable(uri, version=int(version), storage_options=options or None)
    data = table.to_pyarrow_table(columns=["_partition", "_offset"])
    positions = sorted(zip(data.column("_partition").to_pylist(), data.column("_offset").to_pylist()))
    json.dump({"version": table.version(), "positions": [list(p) for p in positions]}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
