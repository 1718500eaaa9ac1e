#!/usr/bin/env bash
# Make sure Prometheus, promtool and Alertmanager are installed (Debian packages `prometheus` and
# `prometheus-alertmanager`); the integration tests start them on loopback ports themselves.
# Usage: deploy/observability.sh ensure
# Environment: PROMETHEUS_BIN, PROMTOOL_BIN, ALERTMANAGER_BIN override the binaries' paths.
set -euo pipefail
# shellcheck source=deploy/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

prom="${PROMETHEUS_BIN:-/usr/bin/prometheus}"
promtool="${PROMTOOL_BIN:-/usr/bin/promtool}"
am="${ALERTMANAGER_BIN:-/usr/bin/prometheus-alertmanager}"

have() { [ -x "$prom" ] && [ -x "$promtool" ] && [ -x "$am" ]; }

case "${1:-ensure}" in
  ensure)
    if have; then
      echo "observability: $("$prom" --version 2>&1 | head -1); $("$am" --version 2>&1 | head -1)"
      exit 0
    fi
    debian_install observability prometheus prometheus-alertmanager || {
      echo "  or set PROMETHEUS_BIN, PROMTOOL_BIN and ALERTMANAGER_BIN to your own binaries" >&2
      exit 1
    }
    SUDO=""; [ "$(id -u)" = "0" ] || SUDO=sudo
    # the packages' init scripts may start system services on the default ports; the tests use their own
    for svc in prometheus prometheus-alertmanager; do
      $SUDO service "$svc" stop >/dev/null 2>&1 || true
    done
    have || { echo "observability: install finished but binaries are missing" >&2; exit 1; }
    echo "observability: $("$prom" --version 2>&1 | head -1); $("$am" --version 2>&1 | head -1)"
    ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
