#!/usr/bin/env bash
# The Spark tests that CI leaves out (scripts/test.sh runs one Spark test, the demo views'
# Spark-equals-Polars comparison, on every run): the YSB views' comparison, and the exact-merge
# test with the lake on S3 and every batch run on Spark (it downloads Hadoop's S3A connector and
# the AWS SDK bundle, about 700 MB, into ~/.ivy2 once). Starts the services as needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
services_env=$(scripts/services.sh up) || { echo "spark-tests: the services did not start; see above" >&2; exit 1; }
eval "$services_env"
BRAID_PYTHON=$(scripts/python-env.sh)
BRAID_SPARK_SUBMIT=$(scripts/spark-env.sh)
export BRAID_PYTHON BRAID_SPARK_SUBMIT RUST_BACKTRACE=${RUST_BACKTRACE:-1}
cargo test --test integration -- --ignored spark "$@"
