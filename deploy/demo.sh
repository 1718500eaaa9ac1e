#!/usr/bin/env bash
# make demo: local broker -> worker -> replay of real Auckland bus data with two injected incidents,
# alerts and margin calls printed live from the output topics. Ctrl-C stops everything it started.
#
# Environment: KAFKA_BOOTSTRAP_SERVERS (use your cluster, start no broker), DEMO_RATE (events/s,
# default 500), DEMO_INCIDENT (space-separated; default: cut:akl-routes-7xx@3h:0.6, an activity
# collapse -> margin call, and outage:akl-routes-9xx@3h, a dark feed -> feed-silent), DEMO_SECONDS (stop by itself
# after this many seconds; default: run until Ctrl-C), PLEDGEWATCH_METRICS_PORT (default 9108).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin
run_id="demo-$(date +%Y%m%d%H%M%S)"
export PLEDGEWATCH_TOPIC_PREFIX="$run_id."
export PLEDGEWATCH_APP_ID="$run_id"
export PLEDGEWATCH_DATA_DIR="$PWD/.pledgewatch/$run_id"
export PLEDGEWATCH_DISPLAY_TIMEZONE="${PLEDGEWATCH_DISPLAY_TIMEZONE:-Asia/Shanghai}"
rate="${DEMO_RATE:-500}"
incident="${DEMO_INCIDENT:-cut:akl-routes-7xx@3h:0.6 outage:akl-routes-9xx@3h}"
inject=()
for i in $incident; do inject+=(--inject "$i"); done
logs=".pledgewatch/logs"
mkdir -p "$logs"
started_broker=0
pids=()

cleanup() {
  trap - INT TERM EXIT
  trap '' INT PIPE HUP  # a second Ctrl-C or a closed terminal must not interrupt the clean-up
  set +e
  echo "demo: stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  timeout 30 "$PY/pledgewatch" topics delete --prefix "$run_id" >/dev/null 2>&1 || true
  rm -rf "$PLEDGEWATCH_DATA_DIR"
  if [ "$started_broker" = 1 ]; then bash deploy/kafka/broker.sh stop; fi
  echo "demo: stopped; nothing left running."
}
trap cleanup INT TERM EXIT

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if ! bash deploy/kafka/broker.sh status >/dev/null 2>&1; then
    bash deploy/kafka/broker.sh start
    started_broker=1
  fi
  bash deploy/kafka/broker.sh wait 90
  # the local broker listens on KAFKA_PORT (default 9092); every command below talks to it
  export PLEDGEWATCH_BOOTSTRAP_SERVERS="$(bash deploy/kafka/broker.sh bootstrap)"
fi

echo "demo: topics ${run_id}.*, worker log $logs/$run_id-worker.log"
"$PY/pledgewatch" topics create >/dev/null
"$PY/pledgewatch" worker > "$logs/$run_id-worker.log" 2>&1 &
pids+=($!)
echo "demo: worker started (pid ${pids[0]}); metrics on http://127.0.0.1:${PLEDGEWATCH_METRICS_PORT:-9108}/metrics"
sleep 8
"$PY/pledgewatch" replay --rate "$rate" "${inject[@]}" --no-progress > "$logs/$run_id-replay.log" 2>&1 &
replay_pid=$!
pids+=($replay_pid)
# say when the replay is done: the watch below keeps listening, and a silent screen reads as a hang
( while kill -0 "$replay_pid" 2>/dev/null; do sleep 1; done
  sleep 5
  # the sample ends at 15:00 NZST (03:00 UTC): say the open window's end in the zone the lines above use
  last_end=$("$PY/python" -c 'import datetime as dt, sys, zoneinfo; from monitor.display import format_time
print(format_time(dt.datetime(2016, 5, 20, 3, tzinfo=dt.UTC), zoneinfo.ZoneInfo(sys.argv[1])))' "$PLEDGEWATCH_DISPLAY_TIMEZONE")
  echo "demo: replay finished: every record is on the topics. The last 15-min window (to $last_end, 15:00 NZST) stays open:"
  echo "demo: it closes when event time passes its end, which a live feed does and a replay, ending there, cannot."
  echo "demo: Ctrl-C stops the watch, the worker and the broker." ) &
pids+=($!)
echo "demo: replaying Friday 2016-05-20 05:00-15:00 NZST of Auckland Transport trip updates at $rate events/s"
echo "demo: injected incidents: $incident (cut: 60 % of the trips stop while the feed reports -> margin call; outage: the feed goes dark -> feed-silent, the value carried within its 12 h grace)"
echo "demo: valuations, alerts and margin calls as they come out of Kafka (times in $PLEDGEWATCH_DISPLAY_TIMEZONE):"
if [ -n "${DEMO_SECONDS:-}" ]; then
  timeout --signal=INT "$DEMO_SECONDS" "$PY/pledgewatch" watch || true
else
  "$PY/pledgewatch" watch
fi
