#!/usr/bin/env bash
# make bench: every benchmark in benchmarks/, the end-to-end ones on the real broker (the local one,
# started here unless KAFKA_BOOTSTRAP_SERVERS names another; stopped again if started here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
started_broker=0
# broker.sh refuses to stop anything while KAFKA_BOOTSTRAP_SERVERS (exported below) names a cluster
stop_broker() { if [ "$started_broker" = 1 ]; then env -u KAFKA_BOOTSTRAP_SERVERS bash "$root/deploy/kafka/broker.sh" stop; fi; }
trap stop_broker EXIT
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if ! bash deploy/kafka/broker.sh status >/dev/null 2>&1; then
    bash deploy/kafka/broker.sh start
    started_broker=1
  fi
  bash deploy/kafka/broker.sh wait 90
  KAFKA_BOOTSTRAP_SERVERS="$(bash deploy/kafka/broker.sh bootstrap)"
  export KAFKA_BOOTSTRAP_SERVERS
fi
cd benchmarks
start=$(date +%s)
for b in core_backtest rules_eval forecasters memory portfolio_page portfolio_shock e2e; do
  echo "== $b"
  ../.venv/bin/python "$b.py" > "results/$b.log"
  echo "   done at $(( $(date +%s) - start )) s"
done
../.venv/bin/python targets.py > /dev/null
echo "make bench: all benchmarks in $(( $(date +%s) - start )) s; table in docs/benchmarks.md"
