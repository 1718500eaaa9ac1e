#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, broker+controller in one JVM).
#
#   bash deploy/kafka/broker.sh start            # fetch jars, format storage once, start
#   bash deploy/kafka/broker.sh wait [timeout_s] # until it answers metadata (default 60)
#   bash deploy/kafka/broker.sh status           # running or not (exit 0 / 3)
#   bash deploy/kafka/broker.sh bootstrap        # print the bootstrap address
#   bash deploy/kafka/broker.sh stop             # SIGTERM, after 30 s SIGKILL
#   bash deploy/kafka/broker.sh reset            # stop and delete the broker's data
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS  use this external cluster: start/stop do nothing, reset refuses
#   KAFKA_HOME               unpacked Apache Kafka distribution: use $KAFKA_HOME/libs/*
#                            instead of the jars fetched from jars.lock
#   KAFKA_PORT               client listener port (default 9092)
#   KAFKA_CONTROLLER_PORT    KRaft controller listener port (default 9093)
#   PLEDGEWATCH_HOME         where .kafka/ (lib, data, logs) lives (default: repo root)
#   KAFKA_HEAP_OPTS          JVM heap flags (default -Xmx512m -Xms128m)
#   KAFKA_JVM_OPTS           extra JVM flags
#   KAFKA_STOP_TIMEOUT       seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_EXTRA_PROPERTIES   a properties file appended to the generated server.properties (a key
#                            given there wins): extra listeners such as SASL_SSL, TLS key stores
#   JAVA_HOME                Java 17+ to use (default: java on PATH)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
PLEDGEWATCH_HOME="${PLEDGEWATCH_HOME:-$repo_root}"
export PLEDGEWATCH_HOME

kdir="$PLEDGEWATCH_HOME/.kafka"
data_dir="$kdir/data"
logs_dir="$kdir/logs"
props="$kdir/server.properties"
pid_file="$kdir/broker.pid"

port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
external="${KAFKA_BOOTSTRAP_SERVERS:-}"

say() { echo "broker: $*"; }
die() { echo "broker: error: $*" >&2; exit 1; }

bootstrap() {
  if [ -n "$external" ]; then echo "$external"; else echo "127.0.0.1:$port"; fi
}

# --- processes -----------------------------------------------------------------
command -v ps >/dev/null 2>&1 || die "ps not found: install procps"

# alive PID: the process exists and is not a zombie.
alive() {
  local stat
  stat="$(ps -p "$1" -o stat= 2>/dev/null || true)"
  [ -n "$stat" ] && [ "${stat#Z}" = "$stat" ]
}

# Live kafka.Kafka JVMs started with our server.properties, one pid a line. The
# pattern goes through the environment so awk's own command line never matches.
scan_pids() {
  ps -eo pid=,stat=,args= 2>/dev/null \
    | KAFKA_MATCH="kafka.Kafka $props" awk '$2 !~ /^Z/ && index($0, ENVIRON["KAFKA_MATCH"]) { print $1 }'
}

# PIDs of this checkout's broker: the pid file's process (if it is still a
# kafka.Kafka JVM) plus any kafka.Kafka JVM started with our server.properties.
broker_pids() {
  local pid args
  {
    if [ -f "$pid_file" ]; then
      pid="$(tr -dc '0-9' <"$pid_file")"
      if [ -n "$pid" ] && alive "$pid"; then
        args="$(ps -p "$pid" -o args= 2>/dev/null || true)"
        case "$args" in *kafka.Kafka*) echo "$pid" ;; esac
      fi
    fi
    scan_pids
  } | sort -u | tr '\n' ' ' | sed 's/ *$//'
}

tail_logs() {
  local f
  for f in "$logs_dir/broker.out:30" "$logs_dir/server.log:15"; do
    [ -s "${f%:*}" ] || continue
    echo "----- last lines of ${f%:*} -----" >&2
    tail -n "${f##*:}" "${f%:*}" >&2
  done
}

# --- network probes ----------------------------------------------------------
# tcp_open HOST:PORT[,HOST:PORT...]: true if any of them accepts a connection.
tcp_open() {
  local hp host p
  local IFS=,
  for hp in $1; do
    host="${hp%:*}"; p="${hp##*:}"
    host="${host#[}"; host="${host%]}"
    if command -v timeout >/dev/null 2>&1; then
      # shellcheck disable=SC2016  # $0/$1 expand in the inner bash
      timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$p" 2>/dev/null && return 0
    else
      # shellcheck disable=SC2016
      bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$p" 2>/dev/null && return 0
    fi
  done
  return 1
}

# A Python that can import kafka-python, or nothing.
kafka_python() {
  local py
  for py in "$PLEDGEWATCH_HOME/.venv/bin/python" "$repo_root/.venv/bin/python" python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import kafka' >/dev/null 2>&1; then echo "$py"; return 0; fi
  done
  return 0
}

# metadata_ok PYTHON BOOTSTRAP: the cluster answers a metadata request.
metadata_ok() {
  "$1" - "$2" <<'PY'
import logging, sys
logging.disable(logging.CRITICAL)
from kafka import KafkaAdminClient
opts = {"bootstrap_servers": sys.argv[1], "client_id": "pledgewatch-broker-wait",
        "request_timeout_ms": 5000}
if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python >= 3
    opts["bootstrap_timeout_ms"] = 5000
try:
    admin = KafkaAdminClient(**opts)
    try:
        topics = admin.list_topics()
    finally:
        admin.close()
except Exception as exc:  # not ready yet
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
print(f"{len(topics)} topics")
PY
}

# --- java / classpath --------------------------------------------------------
java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then command -v java
  else die "java not found: install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
  fi
}

check_java() {  # JAVA MIN_MAJOR
  local v major
  v="$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')"
  major="${v%%.*}"
  [ "$major" = 1 ] && { major="${v#1.}"; major="${major%%.*}"; }
  case "$major" in ''|*[!0-9]*) die "cannot tell the version of $1 (got '${v}'); need Java $2+" ;; esac
  [ "$major" -ge "$2" ] || die "$1 is Java $major; Kafka needs Java $2+: install a Java $2+ runtime or set JAVA_HOME"
}

# Sets classpath and lib_dir.
resolve_classpath() {
  if [ -n "${KAFKA_HOME:-}" ]; then
    lib_dir="$KAFKA_HOME/libs"
    compgen -G "$lib_dir/kafka_2.*.jar" >/dev/null \
      || die "KAFKA_HOME=$KAFKA_HOME does not look like an Apache Kafka distribution (no $lib_dir/kafka_2.*.jar)"
    say "using Kafka from KAFKA_HOME=$KAFKA_HOME"
  else
    bash "$here/fetch.sh"
    lib_dir="$kdir/lib"
  fi
  classpath="$lib_dir/*"
}

# JVM flags that point logging at $logs_dir, for log4j2 (Kafka 4.x, and our jars)
# or log4j 1.x / reload4j (a Kafka 3.x distribution in KAFKA_HOME).
log_opts() {
  if compgen -G "$lib_dir/log4j-core-2*.jar" >/dev/null; then
    echo "-Dkafka.logs.dir=$logs_dir -Dlog4j2.configurationFile=$here/log4j2.xml"
  else
    echo "-Dkafka.logs.dir=$logs_dir -Dlog4j.configuration=file:$here/log4j.properties"
  fi
}

# --- configuration and storage ----------------------------------------------
write_config() {
  mkdir -p "$kdir" "$data_dir" "$logs_dir"
  cat >"$props.tmp" <<EOF
# Generated by deploy/kafka/broker.sh on every start - edit the script, not this file.
process.roles=broker,controller
node.id=1
# Static single-voter quorum: works with Kafka 3.3+ and 4.x, needs no
# --standalone at format time and survives a change of KAFKA_CONTROLLER_PORT.
controller.quorum.voters=1@127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT

log.dirs=$data_dir
num.partitions=4
auto.create.topics.enable=true
delete.topic.enable=true

# Single node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Small footprint for a dev/test box.
num.network.threads=2
num.io.threads=4
log.segment.bytes=16777216
log.retention.hours=24
log.cleaner.dedupe.buffer.size=16777216
EOF
  if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then
    [ -r "$KAFKA_EXTRA_PROPERTIES" ] || die "KAFKA_EXTRA_PROPERTIES=$KAFKA_EXTRA_PROPERTIES is not a readable file"
    { echo "# from KAFKA_EXTRA_PROPERTIES=$KAFKA_EXTRA_PROPERTIES"; cat "$KAFKA_EXTRA_PROPERTIES"; } >>"$props.tmp"
  fi
  mv -f "$props.tmp" "$props"
}

# A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what
# `kafka-storage random-uuid` prints; Kafka never hands out ids starting with '-').
new_cluster_id() {
  local java="$1" id
  if command -v base64 >/dev/null 2>&1 && [ -r /dev/urandom ]; then
    while :; do
      id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
      case "$id" in -*) ;; *) echo "$id"; return 0 ;; esac
    done
  fi
  # shellcheck disable=SC2046  # log_opts is a list of flags
  "$java" $(log_opts) -cp "$classpath" kafka.tools.StorageTool random-uuid 2>>"$logs_dir/format.log" | tail -n 1
}

format_storage() {
  local java="$1" cluster_id
  [ -f "$data_dir/meta.properties" ] && return 0
  cluster_id="$(new_cluster_id "$java")"
  [ -n "$cluster_id" ] || { cat "$logs_dir/format.log" >&2; die "could not generate a cluster id"; }
  say "formatting KRaft storage in $data_dir (cluster id $cluster_id)"
  # shellcheck disable=SC2046
  "$java" $(log_opts) -cp "$classpath" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$props" >>"$logs_dir/format.log" 2>&1 \
    || { tail -n 30 "$logs_dir/format.log" >&2; die "kafka.tools.StorageTool format failed (full output: $logs_dir/format.log)"; }
}

# --- subcommands ---------------------------------------------------------------
cmd_start() {
  if [ -n "$external" ]; then
    say "KAFKA_BOOTSTRAP_SERVERS is set: using the external cluster at $external, nothing to start"
    return 0
  fi
  local pids java
  pids="$(broker_pids)"
  if [ -n "$pids" ]; then
    say "already running (pid $pids), bootstrap $(bootstrap)"
    return 0
  fi
  rm -f "$pid_file"
  java="$(java_bin)"
  if [ -n "${KAFKA_HOME:-}" ]; then check_java "$java" 11; else check_java "$java" 17; fi
  tcp_open "127.0.0.1:$port" && die "port $port is already in use by another process (set KAFKA_PORT, or KAFKA_BOOTSTRAP_SERVERS to use a running cluster)"
  tcp_open "127.0.0.1:$controller_port" && die "controller port $controller_port is already in use (set KAFKA_CONTROLLER_PORT)"
  resolve_classpath
  write_config
  format_storage "$java"

  local setsid=()
  command -v setsid >/dev/null 2>&1 && setsid=(setsid)  # own session: not killed with the caller's terminal
  # shellcheck disable=SC2046,SC2086
  (cd "$kdir" && exec nohup "${setsid[@]}" "$java" ${KAFKA_HEAP_OPTS:--Xmx512m -Xms128m} \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true ${KAFKA_JVM_OPTS:-} \
      $(log_opts) -cp "$classpath" kafka.Kafka "$props" \
      >"$logs_dir/broker.out" 2>&1 </dev/null) &
  # The JVM keeps the subshell's pid (exec chain) unless setsid had to fork, so
  # look the java process up by its command line to be sure.
  local pid=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    sleep 0.2
    pid="$(scan_pids | sed -n 1p)"  # sed reads all: no SIGPIPE under pipefail
    [ -n "$pid" ] && break
  done
  sleep 0.5
  if [ -z "$pid" ] || ! alive "$pid"; then
    rm -f "$pid_file"
    tail_logs
    die "the broker exited right after starting (logs in $logs_dir)"
  fi
  echo "$pid" >"$pid_file"
  say "started (pid $pid), bootstrap $(bootstrap), logs in $logs_dir"
}

cmd_wait() {
  local timeout="${1:-60}" bs py deadline last_err="" out
  case "$timeout" in ''|*[!0-9]*) die "wait: timeout must be whole seconds, got '$timeout'" ;; esac
  bs="$(bootstrap)"
  py="$(kafka_python)"
  deadline=$((SECONDS + timeout))
  wait_err="$(mktemp)"
  trap 'rm -f "$wait_err"' EXIT
  while :; do
    if [ -z "$external" ] && [ -z "$(broker_pids)" ]; then
      tail_logs
      die "the broker is not running (start it with: bash deploy/kafka/broker.sh start)"
    fi
    if tcp_open "$bs"; then
      if [ -z "$py" ]; then
        say "ready: $bs accepts connections (TCP check; kafka-python not importable)"
        return 0
      fi
      if out="$(metadata_ok "$py" "$bs" 2>"$wait_err")"; then
        say "ready: $bs answers metadata ($out)"
        return 0
      fi
      last_err="$(tail -n 1 "$wait_err" 2>/dev/null || true)"
    fi
    if [ "$SECONDS" -gt "$deadline" ]; then
      [ -z "$external" ] && tail_logs
      die "Kafka at $bs not ready after ${timeout}s${last_err:+ (last error: $last_err)}"
    fi
    sleep 0.5
  done
}

cmd_stop() {
  if [ -n "$external" ]; then
    say "KAFKA_BOOTSTRAP_SERVERS is set: external cluster at $external is not ours to stop"
    return 0
  fi
  local pids pid waited=0 limit="${KAFKA_STOP_TIMEOUT:-30}"
  pids="$(broker_pids)"
  if [ -z "$pids" ]; then
    rm -f "$pid_file"
    say "not running"
    return 0
  fi
  say "stopping (pid $pids)"
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  while [ -n "$(broker_pids)" ] && [ "$waited" -lt $((limit * 5)) ]; do
    sleep 0.2; waited=$((waited + 1))
  done
  pids="$(broker_pids)"
  if [ -n "$pids" ]; then
    say "still running after ${limit}s, sending SIGKILL to $pids"
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    waited=0
    while [ -n "$(broker_pids)" ] && [ "$waited" -lt 50 ]; do sleep 0.2; waited=$((waited + 1)); done
    [ -z "$(broker_pids)" ] || die "could not stop the broker (pid $(broker_pids))"
  fi
  rm -f "$pid_file"
  say "stopped"
}

cmd_status() {
  if [ -n "$external" ]; then
    say "using the external cluster at $external (KAFKA_BOOTSTRAP_SERVERS)"
    return 0
  fi
  local pids
  pids="$(broker_pids)"
  if [ -n "$pids" ]; then
    say "running (pid $pids), bootstrap $(bootstrap), data in $data_dir"
  else
    say "not running"
    return 3
  fi
}

cmd_reset() {
  [ -z "$external" ] || die "KAFKA_BOOTSTRAP_SERVERS is set: refusing to reset an external cluster"
  cmd_stop
  rm -rf -- "$data_dir" "$props"
  say "deleted $data_dir (storage is formatted afresh on the next start)"
}

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

case "${1:-}" in
  start) cmd_start ;;
  wait) cmd_wait "${2:-60}" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  bootstrap) bootstrap ;;
  reset) cmd_reset ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
