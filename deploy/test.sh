#!/usr/bin/env bash
# make test: start the local broker (unless KAFKA_BOOTSTRAP_SERVERS names one), run the whole suite,
# stop what was started. pytest's exit 5 (no tests collected) counts as a failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Prometheus, promtool and Alertmanager (Debian packages) for the observability tests
bash deploy/observability.sh ensure || exit 1
# Chromium and a CJK font (Debian packages) for the report's headless screenshot test and PNG export
bash deploy/chromium.sh ensure || exit 1
started_broker=0
stop_broker() { if [ "$started_broker" = 1 ]; then bash deploy/kafka/broker.sh stop; fi; }
trap stop_broker EXIT
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if ! bash deploy/kafka/broker.sh status >/dev/null 2>&1; then
    bash deploy/kafka/broker.sh start || exit 1
    started_broker=1
  fi
  bash deploy/kafka/broker.sh wait 90 || exit 1
  KAFKA_BOOTSTRAP_SERVERS_LOCAL="$(bash deploy/kafka/broker.sh bootstrap)"
  export KAFKA_BOOTSTRAP_SERVERS_LOCAL PLEDGEWATCH_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS_LOCAL"
fi
if [ "$#" -eq 0 ]; then set -- tests monitor rules streams; fi
.venv/bin/pytest "$@" -q -p no:cacheprovider
rc=$?
if [ "$rc" = 5 ]; then echo "test: pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
