#!/usr/bin/env bash
# Apache Spark for batch.engine = "spark", local mode: pyspark and delta-spark from PyPI in
# .braid/spark-venv, at versions whose jars exist on Maven Central (delta-spark 4.4.0's
# `io.delta:delta-spark_4.2_2.13:4.4.0`; 4.4.1's is not published), and a spark-submit wrapper
# that points Spark at that environment. Installs what is missing and prints the wrapper's path:
#   BRAID__BATCH__SPARK__SUBMIT=$(scripts/spark-env.sh)
# Spark resolves the Maven packages of batch.spark.packages itself at the first job (into ~/.ivy2).
# Needs Java 17 or later.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYSPARK_VERSION=4.2.0
DELTA_SPARK_VERSION=4.4.0
venv=$PWD/.braid/spark-venv
wrapper=$PWD/.braid/spark/spark-submit
command -v java >/dev/null || { echo "spark-env: Spark needs Java 17+ (apt-get install default-jre-headless)" >&2; exit 1; }
if ! "$venv/bin/python" -c "import pyspark, delta; assert pyspark.__version__ == '$PYSPARK_VERSION'" 2>/dev/null; then
  echo "spark-env: installing pyspark $PYSPARK_VERSION and delta-spark $DELTA_SPARK_VERSION into $venv (about 500 MB)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "pyspark==$PYSPARK_VERSION" "delta-spark==$DELTA_SPARK_VERSION" >&2
fi
spark_home=$("$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
mkdir -p "$(dirname "$wrapper")"
cat >"$wrapper.tmp" <<WRAPPER
#!/usr/bin/env bash
# spark-submit of $venv (written by scripts/spark-env.sh).
export SPARK_HOME='$spark_home'
export PYSPARK_PYTHON='$venv/bin/python'
export PYSPARK_DRIVER_PYTHON='$venv/bin/python'
exec "\$SPARK_HOME/bin/spark-submit" "\$@"
WRAPPER
chmod +x "$wrapper.tmp" && mv "$wrapper.tmp" "$wrapper"
echo "$wrapper"
