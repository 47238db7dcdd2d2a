#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback,
# without Docker: the jars come from Maven Central through Maven and are cached.
#
#   deploy/kafka/kafka-local.sh fetch     # resolve the jars once (cached afterwards)
#   deploy/kafka/kafka-local.sh start     # fetch if needed, format storage, start, wait until it answers
#   deploy/kafka/kafka-local.sh stop      # SIGTERM by pid, wait; SIGKILL after a timeout
#   deploy/kafka/kafka-local.sh kill      # SIGKILL (crash test)
#   deploy/kafka/kafka-local.sh status    # prints running/stopped, exit 0 if running
#   deploy/kafka/kafka-local.sh logs      # tail of the broker log
#
# Environment (all optional):
#   PULSE_KAFKA_PORT            client port                      (default 9092)
#   PULSE_KAFKA_CONTROLLER_PORT KRaft controller port            (default client port + 1)
#   PULSE_KAFKA_DATA_DIR        log.dirs, pid file and broker log (default .pulse/kafka under the repo)
#   PULSE_KAFKA_JARS_DIR        where the jars are cached        (default ~/.cache/frontend-pulse/kafka-<version>)
#   PULSE_KAFKA_HEAP            JVM heap                         (default 512m)
#   PULSE_KAFKA_START_TIMEOUT   seconds to wait for readiness    (default 90)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
PORT="${PULSE_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${PULSE_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
DATA_DIR="${PULSE_KAFKA_DATA_DIR:-$REPO/.pulse/kafka}"
JARS_DIR="${PULSE_KAFKA_JARS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/frontend-pulse/kafka-$KAFKA_VERSION}"
HEAP="${PULSE_KAFKA_HEAP:-512m}"
START_TIMEOUT="${PULSE_KAFKA_START_TIMEOUT:-90}"
PID_FILE="$DATA_DIR/broker.pid"
LOG_FILE="$DATA_DIR/broker.log"

say() { echo "[kafka-local] $*" >&2; }
die() { say "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed: $2"; }

fetch() {
  if [ -f "$JARS_DIR/.complete" ]; then return 0; fi
  need java "install a JDK 17 (e.g. apt-get install openjdk-17-jre-headless)"
  need mvn "install Maven (e.g. apt-get install maven)"
  say "fetching Apache Kafka $KAFKA_VERSION jars with Maven into $JARS_DIR (first time only)..."
  mkdir -p "$JARS_DIR"
  # (Maven 3.8 prints bare ANSI resets even in batch mode: strip them; pipefail keeps its status)
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$JARS_DIR" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2 \
    || die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (is Maven Central reachable?)"
  ls "$JARS_DIR"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13 jar missing after fetch"
  touch "$JARS_DIR/.complete"
  say "jars cached ($(ls "$JARS_DIR"/*.jar | wc -l) files)"
}

running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  mkdir -p "$DATA_DIR/logs"
  cat > "$DATA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR/logs
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=10485760
log.retention.hours=168
PROPS
}

start() {
  if pid="$(running_pid)"; then say "already running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
  if port_open "$PORT"; then die "port $PORT is already in use by another process; set PULSE_KAFKA_PORT"; fi
  fetch
  write_config
  local cp="$JARS_DIR/*"
  if [ ! -f "$DATA_DIR/logs/meta.properties" ]; then
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    java -Dlog4j.configuration="file:$HERE/log4j.properties" -Dkafka.log.file="$LOG_FILE" \
      -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" -c "$DATA_DIR/server.properties" --ignore-formatted >/dev/null \
      || die "formatting KRaft storage in $DATA_DIR/logs failed"
  fi
  say "starting broker on 127.0.0.1:$PORT (data: $DATA_DIR)"
  nohup java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$HERE/log4j.properties" -Dkafka.log.file="$LOG_FILE" \
    -cp "$cp" kafka.Kafka "$DATA_DIR/server.properties" > "$DATA_DIR/stdout.log" 2>&1 &
  echo $! > "$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    if ! running_pid >/dev/null; then
      tail -20 "$DATA_DIR/stdout.log" "$LOG_FILE" >&2 2>/dev/null || true
      die "broker exited during start-up (see $LOG_FILE)"
    fi
    if port_open "$PORT" && grep -q "Kafka Server started" "$LOG_FILE" 2>/dev/null; then
      say "ready (pid $(cat "$PID_FILE"))"; return 0
    fi
    sleep 0.3
  done
  die "broker did not become ready within ${START_TIMEOUT}s (see $LOG_FILE)"
}

stop() {
  local sig="${1:-TERM}" pid
  if ! pid="$(running_pid)"; then say "not running"; rm -f "$PID_FILE"; return 0; fi
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then say "did not stop after 30s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$PID_FILE"
  say "stopped (pid $pid, SIG$sig)"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop TERM ;;
  kill) stop KILL ;;
  status) if pid="$(running_pid)"; then echo "running pid=$pid port=$PORT"; else echo "stopped"; exit 1; fi ;;
  logs) tail -n "${2:-50}" "$LOG_FILE" ;;
  *) echo "usage: $0 {fetch|start|stop|kill|status|logs}" >&2; exit 2 ;;
esac
