#!/usr/bin/env bash
# The Python environment of the tests and benchmarks (.braid/venv): the independent Delta
# readers of tests/interop/requirements.txt, plus any packages given as arguments (the
# benchmarks add DuckDB). Installs what is missing from PyPI and prints the interpreter's path.
#   scripts/python-env.sh [PACKAGE==VERSION ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=.braid/venv
modules="import deltalake, pyarrow, duckdb, duckdb_extensions"
for package in "$@"; do modules="$modules, ${package%%=*}"; done
if ! "$venv/bin/python" -c "$modules" 2>/dev/null; then
  echo "python-env: installing into $venv: the Delta reader${*:+ and $*}" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" 2>/dev/null \
    || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q -r tests/interop/requirements.txt "$@" >&2
fi
echo "$PWD/$venv/bin/python"
