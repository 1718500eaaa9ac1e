#!/usr/bin/env bash
# Make sure Chromium (headless: the report's screenshot test, and kaleido's PNG export) and a CJK font
# (the Chinese labels) are installed: Debian packages `chromium` and `fonts-noto-cjk`.
# Usage: deploy/chromium.sh ensure        Environment: CHROMIUM_BIN overrides the browser's path.
set -euo pipefail
# shellcheck source=deploy/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
# fc-list's output is read whole before matching: `fc-list | grep -q` under pipefail fails at random when
# grep exits before fc-list's last write (SIGPIPE, exit 141), which is how a clean CI machine failed here.
have_browser() { [ -x "$bin" ]; }
have_font() {
  local fonts
  fonts="$(fc-list : family 2>/dev/null || true)"
  [[ "${fonts,,}" == *"noto sans cjk"* ]]
}
have() { have_browser && have_font; }
missing() {
  have_browser || echo "chromium: no executable browser at $bin (dpkg: $(dpkg-query -W -f='${Status}' chromium 2>&1))" >&2
  have_font || echo "chromium: fontconfig lists no 'Noto Sans CJK' font (fc-list: $(command -v fc-list || echo absent); dpkg: $(dpkg-query -W -f='${Status}' fonts-noto-cjk 2>&1))" >&2
}

case "${1:-ensure}" in
  ensure)
    if have; then echo "chromium: $("$bin" --version 2>/dev/null | head -1)"; exit 0; fi
    debian_install chromium chromium fonts-noto-cjk || {
      echo "  or set CHROMIUM_BIN to your own Chromium or Chrome" >&2
      exit 1
    }
    have || { echo "chromium: install finished but something is still missing:" >&2; missing; exit 1; }
    echo "chromium: $("$bin" --version 2>/dev/null | head -1)"
    ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
