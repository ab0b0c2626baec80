#!/usr/bin/env bash
# Braid's local services: PostgreSQL (Debian's packages), Apache Kafka (the official broker
# jars from Maven Central, KRaft mode, single node), an S3-compatible object store (versitygw,
# the Versity S3 Gateway, built from the Go module proxy, serving a folder) and a schema
# registry with Confluent's API (Apicurio Registry, assembled from Maven Central), all on
# 127.0.0.1, with all state under one folder (.braid/ by default).
#
#   scripts/services.sh up       install what is missing, start them, wait until they answer
#   scripts/services.sh registry the schema registry alone (up, and print its environment)
#   scripts/services.sh down     stop them (state is kept)
#   scripts/services.sh status   say what runs where
#   scripts/services.sh env      print the environment to use: eval "$(scripts/services.sh env)"
#   scripts/services.sh reset    stop them and delete their state
#   scripts/services.sh crash-postgres | crash-kafka | crash-s3   faults for scripts/chaos (then `up`)
#
# If DATABASE_URL, KAFKA_BROKERS, BRAID_S3_ENDPOINT or BRAID_SCHEMA_REGISTRY_URL is already
# set, that service is taken as given: nothing is installed or started for it, and `up` only
# checks that it answers.
#
# Settings (environment): BRAID_STATE_DIR (default .braid in the repository), BRAID_PG_PORT
# (15432), BRAID_KAFKA_PORT (19092; the controller uses the next port), BRAID_KAFKA_HEAP (1g),
# BRAID_S3_PORT (19000), BRAID_REGISTRY_PORT (18081), BRAID_REGISTRY=0 (no schema registry:
# JSON topics only), BRAID_CACHE_DIR (~/.cache/braid: the registry's build, shared by every
# checkout).
set -euo pipefail

ROOT=${BRAID_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
STATE=${BRAID_STATE_DIR:-$ROOT/.braid}
PG_PORT=${BRAID_PG_PORT:-15432}
KAFKA_PORT=${BRAID_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 1))
KAFKA_HEAP=${BRAID_KAFKA_HEAP:-1g}
KAFKA_VERSION=4.1.1
PG_USER=braid
PG_PASSWORD=braid
OWN_DATABASE_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/braid"
OWN_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
S3_PORT=${BRAID_S3_PORT:-19000}
VERSITYGW_VERSION=v1.8.0
S3_BUCKET=braid
S3_ACCESS_KEY=braid-local
S3_SECRET_KEY=braid-local-secret
OWN_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
REGISTRY_PORT=${BRAID_REGISTRY_PORT:-18081}
OWN_REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"

log() { echo "services: $*" >&2; }
die() { echo "services: error: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # wait_for DESCRIPTION SECONDS COMMAND...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
  log "$what is ready"
}

apt_install() {
  [ "$(id -u)" = 0 ] || die "need to install $* but not root; install it yourself (apt-get install $*)"
  log "installing $* from Debian's packages"
  if [ ! -f "$STATE/.apt-updated" ]; then
    apt-get update -qq >&2 && mkdir -p "$STATE" && touch "$STATE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------- PostgreSQL
pg_bin() { # the newest server installation (the client package alone has no initdb)
  local initdb; initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
  [ -n "$initdb" ] && dirname "$initdb"; return 0
}

# PostgreSQL refuses to run as root: as root, run it as the `postgres` user, in a folder that
# user can reach (the repository may sit in a folder only root can enter).
pg_home() {
  if [ "$(id -u)" != 0 ]; then echo "$STATE/pg"; return; fi
  mkdir -p "$STATE"
  if runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
    echo "$STATE/pg"
  else
    echo "/var/tmp/braid-$(printf %s "$STATE" | sha1sum | cut -c1-12)/pg"
  fi
}

as_pg_user() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_answers() { PGPASSWORD=$PG_PASSWORD "$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc 'select 1' >/dev/null 2>&1; }

pg_up() {
  [ -n "$(pg_bin)" ] || apt_install postgresql
  local bin home data major
  bin=$(pg_bin); home=$(pg_home); data=$home/data
  # Views with distinct(field) metrics need the hll extension (postgresql-hll) of this major version.
  major=$(basename "$(dirname "$bin")")
  [ -f "/usr/lib/postgresql/$major/lib/hll.so" ] || apt_install "postgresql-$major-hll"
  mkdir -p "$home"
  [ "$(id -u)" = 0 ] && chown postgres: "$home"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $data"
    local pwfile=$home/.pw
    echo "$PG_PASSWORD" > "$pwfile"; [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    as_pg_user "$bin/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=peer \
      --no-locale -E UTF8 >"$home/initdb.log" 2>&1 || { cat "$home/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 400
shared_buffers = 256MB
fsync = off
full_page_writes = off
max_wal_size = 2GB
log_min_messages = warning
CONF
  fi
  if pg_answers; then log "PostgreSQL already answers on 127.0.0.1:$PG_PORT"; return; fi
  port_open 127.0.0.1 "$PG_PORT" && die "port $PG_PORT is taken by something that is not Braid's PostgreSQL; set BRAID_PG_PORT"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  # The port may be held for a moment by an outgoing connection's local port (it lies in the
  # kernel's ephemeral range): try again a few times before giving up.
  local attempt
  for attempt in 1 2 3 4 5; do
    as_pg_user "$bin/pg_ctl" -D "$data" -l "$home/postgres.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null && break
    grep -q "Address already in use" "$home/postgres.log" && [ "$attempt" -lt 5 ] \
      || { tail -n 20 "$home/postgres.log" >&2; die "PostgreSQL did not start (log: $home/postgres.log)"; }
    log "port $PG_PORT is in use for a moment; trying again"
    sleep 2
  done
  wait_for "PostgreSQL" 60 pg_answers || die "PostgreSQL does not answer (log: $home/postgres.log)"
  if ! PGPASSWORD=$PG_PASSWORD "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
      "select 1 from pg_database where datname = 'braid'" | grep -q 1; then
    PGPASSWORD=$PG_PASSWORD "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" braid
  fi
}

pg_down() {
  local data; data=$(pg_home)/data
  [ -f "$data/postmaster.pid" ] || return 0
  log "stopping PostgreSQL"
  as_pg_user "$(pg_bin)/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
}

# ---------------------------------------------------------------- Kafka
KAFKA_HOME=$STATE/kafka
kafka_pid() { cat "$KAFKA_HOME/kafka.pid" 2>/dev/null || true; }
kafka_running() { local pid; pid=$(kafka_pid); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
kafka_answers() { port_open 127.0.0.1 "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_HOME/logs/server.log" 2>/dev/null; }

kafka_install() {
  [ -f "$KAFKA_HOME/libs/.complete-$KAFKA_VERSION" ] && return
  command -v java >/dev/null || apt_install default-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "fetching the Apache Kafka $KAFKA_VERSION broker jars from Maven Central"
  rm -rf "$KAFKA_HOME/libs"; mkdir -p "$KAFKA_HOME/libs"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$KAFKA_HOME/libs" >&2 \
    || die "could not fetch the Kafka jars from Maven Central"
  touch "$KAFKA_HOME/libs/.complete-$KAFKA_VERSION"
}

kafka_tool() { java -cp "$KAFKA_HOME/libs/*" -Dkafka.logs.dir="$KAFKA_HOME/logs" \
  -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" "$@"; }

kafka_up() {
  kafka_install
  mkdir -p "$KAFKA_HOME/logs"
  cat >"$KAFKA_HOME/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_HOME/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
message.max.bytes=10485760
PROPS
  if kafka_running && kafka_answers; then log "Kafka already answers on $OWN_KAFKA_BROKERS"; return; fi
  kafka_running && { log "Kafka process $(kafka_pid) does not answer; restarting it"; kill -9 "$(kafka_pid)" || true; }
  port_open 127.0.0.1 "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by something that is not Braid's Kafka; set BRAID_KAFKA_PORT"
  if [ ! -f "$KAFKA_HOME/data/meta.properties" ]; then
    log "formatting Kafka's KRaft storage in $KAFKA_HOME/data"
    kafka_tool kafka.tools.StorageTool format -t "$(kafka_tool kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" \
      -c "$KAFKA_HOME/server.properties" >"$KAFKA_HOME/logs/format.log" 2>&1 \
      || { cat "$KAFKA_HOME/logs/format.log" >&2; die "formatting Kafka storage failed"; }
  fi
  log "starting Kafka $KAFKA_VERSION (KRaft) on $OWN_KAFKA_BROKERS"
  : >"$KAFKA_HOME/logs/server.log"
  setsid nohup java -Xms256m "-Xmx$KAFKA_HEAP" -cp "$KAFKA_HOME/libs/*" -Dkafka.logs.dir="$KAFKA_HOME/logs" \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" kafka.Kafka "$KAFKA_HOME/server.properties" \
    >"$KAFKA_HOME/logs/kafka.out" 2>&1 </dev/null &
  echo $! >"$KAFKA_HOME/kafka.pid"
  wait_for "Kafka" 120 kafka_answers || { tail -n 20 "$KAFKA_HOME/logs/kafka.out" >&2; die "Kafka did not start (logs: $KAFKA_HOME/logs)"; }
}

# stop_pidfile WHAT PIDFILE: SIGTERM, up to 30 s to exit, then SIGKILL; removes the pid file.
stop_pidfile() {
  local pid; pid=$(cat "$2" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping $1"
    kill "$pid" 2>/dev/null || true
    wait_for "$1 shutdown" 30 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$2"
}

kafka_down() { stop_pidfile Kafka "$KAFKA_HOME/kafka.pid"; }

# ---------------------------------------------------------------- S3 (versitygw)
# versitygw is a production S3 gateway (Apache-2.0); its posix backend keeps each bucket as a
# folder. It enforces conditional writes (PUT with If-None-Match: * answers 412 when the object
# exists), which Delta commits on S3 rely on; tests/integration/s3.rs checks that it does.
S3_HOME=$STATE/s3
s3_pid() { cat "$S3_HOME/versitygw.pid" 2>/dev/null || true; }
s3_running() { local pid; pid=$(s3_pid); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
s3_answers() { port_open 127.0.0.1 "$S3_PORT" && grep -q "listening on" "$S3_HOME/versitygw.log" 2>/dev/null; }

s3_install() {
  [ -x "$S3_HOME/bin/versitygw-$VERSITYGW_VERSION" ] && return
  if ! command -v go >/dev/null; then
    log "not starting the S3 server: building versitygw needs Go 1.24 or later (https://go.dev/dl). The demo does not need it; the tests' tables on S3 do (or set BRAID_S3_ENDPOINT to an S3-compatible server)"
    return 1
  fi
  log "building versitygw $VERSITYGW_VERSION from the Go module proxy (a few minutes, once)"
  mkdir -p "$S3_HOME/bin"
  GOBIN="$S3_HOME/bin" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2 \
    || die "could not build versitygw $VERSITYGW_VERSION"
  mv "$S3_HOME/bin/versitygw" "$S3_HOME/bin/versitygw-$VERSITYGW_VERSION"
}

s3_up() {
  s3_install || return 0
  mkdir -p "$S3_HOME/data/$S3_BUCKET"
  if s3_running && s3_answers; then log "the S3 server already answers on $OWN_S3_ENDPOINT"; return; fi
  s3_running && { log "versitygw $(s3_pid) does not answer; restarting it"; kill -9 "$(s3_pid)" || true; }
  port_open 127.0.0.1 "$S3_PORT" && die "port $S3_PORT is taken by something that is not Braid's S3 server; set BRAID_S3_PORT"
  log "starting versitygw (S3) on $OWN_S3_ENDPOINT, bucket $S3_BUCKET in $S3_HOME/data"
  : >"$S3_HOME/versitygw.log"
  # The keys go through the environment, not the command line (process lists show arguments).
  ROOT_ACCESS_KEY=$S3_ACCESS_KEY ROOT_SECRET_KEY=$S3_SECRET_KEY setsid nohup "$S3_HOME/bin/versitygw-$VERSITYGW_VERSION" \
    --port "127.0.0.1:$S3_PORT" posix "$S3_HOME/data" >"$S3_HOME/versitygw.log" 2>&1 </dev/null &
  echo $! >"$S3_HOME/versitygw.pid"
  wait_for "the S3 server" 60 s3_answers || { tail -n 20 "$S3_HOME/versitygw.log" >&2; die "versitygw did not start (log: $S3_HOME/versitygw.log)"; }
}

s3_down() { stop_pidfile "the S3 server" "$S3_HOME/versitygw.pid"; }

# ---------------------------------------------------------------- schema registry (Apicurio)
# Apicurio Registry 2.4.2.Final, assembled from Maven Central by scripts/registry/pom.xml (a
# few minutes, once per machine: the build is kept in $BRAID_CACHE_DIR, shared by every
# checkout and by scripts/chaos), serving Confluent's REST API under /apis/ccompat/v7. Its
# storage is in memory: schemas registered are gone when it stops (tests register their own).
REGISTRY_HOME=$STATE/registry
# Keyed by the POM's digest: a changed POM builds afresh beside the old build, which a registry
# still running from it keeps.
REGISTRY_POM_DIGEST=$(sha256sum "$ROOT/scripts/registry/pom.xml" | cut -c1-12)
REGISTRY_BUILD=${BRAID_CACHE_DIR:-$HOME/.cache/braid}/apicurio-registry-2.4.2.Final-$REGISTRY_POM_DIGEST
REGISTRY_JAR=$REGISTRY_BUILD/target/registry-server-1-runner.jar
registry_pid() { cat "$REGISTRY_HOME/registry.pid" 2>/dev/null || true; }
registry_running() { local pid; pid=$(registry_pid); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
registry_answers() { port_open 127.0.0.1 "$REGISTRY_PORT" && grep -q "Listening on" "$REGISTRY_HOME/registry.log" 2>/dev/null; }

registry_install() {
  [ -f "$REGISTRY_BUILD/.complete" ] && [ -f "$REGISTRY_JAR" ] && return
  command -v java >/dev/null || apt_install default-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "assembling Apicurio Registry 2.4.2.Final from Maven Central into $REGISTRY_BUILD (a few minutes, once)"
  rm -rf "$REGISTRY_BUILD"; mkdir -p "$REGISTRY_BUILD"
  cp "$ROOT/scripts/registry/pom.xml" "$REGISTRY_BUILD/pom.xml"
  mvn -q -B -s "$ROOT/scripts/registry/settings.xml" -f "$REGISTRY_BUILD/pom.xml" package -DskipTests >&2 \
    || die "could not assemble Apicurio Registry from Maven Central"
  [ -f "$REGISTRY_JAR" ] || die "the registry build made no $REGISTRY_JAR"
  touch "$REGISTRY_BUILD/.complete"
}

registry_up() {
  registry_install
  mkdir -p "$REGISTRY_HOME"
  if registry_running && registry_answers; then log "the schema registry already answers on $OWN_REGISTRY_URL"; return; fi
  registry_running && { log "registry $(registry_pid) does not answer; restarting it"; kill -9 "$(registry_pid)" || true; }
  port_open 127.0.0.1 "$REGISTRY_PORT" && die "port $REGISTRY_PORT is taken by something that is not Braid's schema registry; set BRAID_REGISTRY_PORT"
  log "starting Apicurio Registry on $OWN_REGISTRY_URL (in-memory storage)"
  : >"$REGISTRY_HOME/registry.log"
  setsid nohup java -Xmx256m -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$REGISTRY_PORT" \
    -jar "$REGISTRY_JAR" >"$REGISTRY_HOME/registry.log" 2>&1 </dev/null &
  echo $! >"$REGISTRY_HOME/registry.pid"
  wait_for "the schema registry" 120 registry_answers || { tail -n 20 "$REGISTRY_HOME/registry.log" >&2; die "the schema registry did not start (log: $REGISTRY_HOME/registry.log)"; }
}

registry_down() { stop_pidfile "the schema registry" "$REGISTRY_HOME/registry.pid"; }

# ---------------------------------------------------------------- given services
url_host_port() { # postgres://user:pw@host:port/db -> host port
  local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; rest=${rest%%\?*}
  local host=${rest%%:*} port=5432; [ "$rest" != "$host" ] && port=${rest##*:}
  echo "$host $port"
}

check_given() {
  if [ -n "${DATABASE_URL:-}" ]; then
    read -r host port < <(url_host_port "$DATABASE_URL")
    port_open "$host" "$port" || die "DATABASE_URL points at $host:$port, which does not answer"
    log "using the given PostgreSQL at $host:$port"
  fi
  if [ -n "${KAFKA_BROKERS:-}" ]; then
    local first=${KAFKA_BROKERS%%,*}
    port_open "${first%:*}" "${first##*:}" || die "KAFKA_BROKERS points at $first, which does not answer"
    log "using the given Kafka at $KAFKA_BROKERS"
  fi
  if [ -n "${BRAID_S3_ENDPOINT:-}" ]; then
    read -r host port < <(url_host_port "$BRAID_S3_ENDPOINT")
    port_open "$host" "$port" || die "BRAID_S3_ENDPOINT points at $host:$port, which does not answer"
    log "using the given S3 server at $BRAID_S3_ENDPOINT (bucket ${BRAID_S3_BUCKET:-unset})"
  fi
  if [ -n "${BRAID_SCHEMA_REGISTRY_URL:-}" ]; then
    read -r host port < <(url_host_port "$BRAID_SCHEMA_REGISTRY_URL")
    port_open "$host" "$port" || die "BRAID_SCHEMA_REGISTRY_URL points at $host:$port, which does not answer"
    log "using the given schema registry at $host:$port"
  fi
}

print_env() {
  echo "export DATABASE_URL='${DATABASE_URL:-$OWN_DATABASE_URL}'"
  echo "export KAFKA_BROKERS='${KAFKA_BROKERS:-$OWN_KAFKA_BROKERS}'"
  # The registry's Confluent API, for Avro topics (Braid takes schema_registry.url, or
  # BRAID__SCHEMA_REGISTRY__URL).
  [ -z "${BRAID_SCHEMA_REGISTRY_URL:-}" ] && [ "${BRAID_REGISTRY:-1}" = 0 ] \
    || echo "export BRAID_SCHEMA_REGISTRY_URL='${BRAID_SCHEMA_REGISTRY_URL:-$OWN_REGISTRY_URL}'"
  # For the tests' tables on S3 (Braid itself takes lake.uri and [lake.storage_options], and the
  # credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY as the AWS SDK does).
  [ -n "${BRAID_S3_ENDPOINT:-}" ] || [ -x "$S3_HOME/bin/versitygw-$VERSITYGW_VERSION" ] || return 0
  echo "export BRAID_S3_ENDPOINT='${BRAID_S3_ENDPOINT:-$OWN_S3_ENDPOINT}'"
  echo "export BRAID_S3_BUCKET='${BRAID_S3_BUCKET:-$S3_BUCKET}'"
  echo "export BRAID_S3_ACCESS_KEY_ID='${BRAID_S3_ACCESS_KEY_ID:-$S3_ACCESS_KEY}'"
  echo "export BRAID_S3_SECRET_ACCESS_KEY='${BRAID_S3_SECRET_ACCESS_KEY:-$S3_SECRET_KEY}'"
}

case "${1:-}" in
  up)
    check_given
    [ -n "${DATABASE_URL:-}" ] || pg_up
    [ -n "${KAFKA_BROKERS:-}" ] || kafka_up
    [ -n "${BRAID_S3_ENDPOINT:-}" ] || s3_up
    [ -n "${BRAID_SCHEMA_REGISTRY_URL:-}" ] || [ "${BRAID_REGISTRY:-1}" = 0 ] || registry_up
    print_env ;;
  # The schema registry alone (its first build takes minutes: scripts/test.sh runs this beside
  # the compiler); prints its environment line.
  registry)
    if [ -n "${BRAID_SCHEMA_REGISTRY_URL:-}" ]; then check_given; else registry_up; fi
    echo "export BRAID_SCHEMA_REGISTRY_URL='${BRAID_SCHEMA_REGISTRY_URL:-$OWN_REGISTRY_URL}'" ;;
  down) registry_down; s3_down; kafka_down; pg_down ;;
  reset) registry_down; s3_down; kafka_down; pg_down; rm -rf "$STATE" "$(dirname "$(pg_home)")"; log "state deleted" ;;
  status)
    if pg_answers; then echo "postgres: running on 127.0.0.1:$PG_PORT (data $(pg_home)/data)"; else echo "postgres: not running"; fi
    if kafka_running && kafka_answers; then echo "kafka: running on $OWN_KAFKA_BROKERS (pid $(kafka_pid), logs $KAFKA_HOME/logs)"; else echo "kafka: not running"; fi
    if s3_running && s3_answers; then echo "s3: versitygw running on $OWN_S3_ENDPOINT (pid $(s3_pid), bucket $S3_BUCKET, data $S3_HOME/data)"; else echo "s3: not running"; fi
    if registry_running && registry_answers; then echo "registry: Apicurio running on $OWN_REGISTRY_URL (pid $(registry_pid), log $REGISTRY_HOME/registry.log)"; else echo "registry: not running"; fi ;;
  env) print_env ;;
  # Faults for scripts/chaos: an immediate shutdown of PostgreSQL (no checkpoint, clients cut
  # off, as in a crash), a SIGKILL of the broker and one of the S3 server. `up` starts them again.
  crash-postgres)
    [ -f "$(pg_home)/data/postmaster.pid" ] || die "PostgreSQL is not running"
    log "stopping PostgreSQL immediately (crash)"
    as_pg_user "$(pg_bin)/pg_ctl" -D "$(pg_home)/data" -m immediate -w stop >/dev/null ;;
  # A SIGKILL takes effect a moment later: until the process is gone its port and log still
  # look like a running server, and an `up` in that moment would start nothing.
  crash-kafka)
    kafka_running || die "Kafka is not running"
    log "killing Kafka (SIGKILL)"
    pid=$(kafka_pid); kill -9 "$pid"
    wait_for "Kafka's end" 30 bash -c "! kill -0 $pid 2>/dev/null" || die "Kafka $pid survived SIGKILL" ;;
  crash-s3)
    s3_running || die "the S3 server is not running"
    log "killing the S3 server (SIGKILL)"
    pid=$(s3_pid); kill -9 "$pid"
    wait_for "the S3 server's end" 30 bash -c "! kill -0 $pid 2>/dev/null" || die "the S3 server $pid survived SIGKILL" ;;
  *) sed -n '2,24p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] && exit 2 || exit 0 ;;
esac
