#!/usr/bin/env bash
# Make sure Chromium (headless: the report's screenshot test, and kaleido's PNG export) and a CJK font
# (the Chinese labels) are installed: Debian packages `chromium` and `fonts-noto-cjk`.
# Usage: deploy/chromium.sh ensure        Environment: CHROMIUM_BIN overrides the browser's path.
set -euo pipefail
# shellcheck source=deploy/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
have() { [ -x "$bin" ] && fc-list 2>/dev/null | grep -qi "noto sans cjk"; }

case "${1:-ensure}" in
  ensure)
    if have; then echo "chromium: $("$bin" --version 2>/dev/null | head -1)"; exit 0; fi
    debian_install chromium chromium fonts-noto-cjk || {
      echo "  or set CHROMIUM_BIN to your own Chromium or Chrome" >&2
      exit 1
    }
    have || { echo "chromium: install finished but the browser or the font is missing" >&2; exit 1; }
    echo "chromium: $("$bin" --version 2>/dev/null | head -1)"
    ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
