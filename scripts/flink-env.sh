#!/usr/bin/env bash
# Apache Flink for the benchmarks' peer (scripts/bench/ysb.sh), in PyFlink's local mini-cluster:
# `apache-flink` from PyPI in .braid/flink-venv and the Flink SQL Kafka connector jar from Maven
# Central in .braid/flink/jars, at versions that go together (connector 5.0.0-2.2 is built for
# Flink 2.2). Installs what is missing and prints the variables to eval:
#   eval "$(scripts/flink-env.sh)"   # sets FLINK_PYTHON and FLINK_KAFKA_JAR
# Needs Java 17 and Maven (the services already need both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FLINK_VERSION=2.2.1
CONNECTOR_VERSION=5.0.0-2.2
venv=$PWD/.braid/flink-venv
jars=$PWD/.braid/flink/jars
jar=$jars/flink-sql-connector-kafka-$CONNECTOR_VERSION.jar
command -v java >/dev/null || { echo "flink-env: Flink needs Java 17 (apt-get install default-jre-headless)" >&2; exit 1; }
if ! "$venv/bin/python" -c "import pyflink.version as v; assert v.__version__ == '$FLINK_VERSION'" 2>/dev/null; then
  echo "flink-env: installing apache-flink $FLINK_VERSION into $venv (about 830 MB)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "apache-flink==$FLINK_VERSION" >&2
fi
if [ ! -f "$jar" ]; then
  echo "flink-env: fetching org.apache.flink:flink-sql-connector-kafka:$CONNECTOR_VERSION from Maven Central" >&2
  mkdir -p "$jars"
  mvn -q -B dependency:copy "-Dartifact=org.apache.flink:flink-sql-connector-kafka:$CONNECTOR_VERSION" \
    "-DoutputDirectory=$jars" >&2
fi
echo "export FLINK_PYTHON='$venv/bin/python'"
echo "export FLINK_KAFKA_JAR='$jar'"
