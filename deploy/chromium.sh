#!/usr/bin/env bash
# Make sure Chromium (headless: the report's screenshot test, and kaleido's PNG export) and a CJK font
# (the Chinese labels) are installed: Debian packages `chromium` and `fonts-noto-cjk`.
# Usage: deploy/chromium.sh ensure        Environment: CHROMIUM_BIN overrides the browser's path.
set -euo pipefail

bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
have() { [ -x "$bin" ] && fc-list 2>/dev/null | grep -qi "noto sans cjk"; }

case "${1:-ensure}" in
  ensure)
    if have; then echo "chromium: $("$bin" --version 2>/dev/null | head -1)"; exit 0; fi
    if [ "$(id -u)" != "0" ]; then
      if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else
        echo "chromium: chromium / fonts-noto-cjk are missing and this user cannot install them;" >&2
        echo "  run as root: apt-get update && apt-get install -y --no-install-recommends chromium fonts-noto-cjk" >&2
        echo "  or set CHROMIUM_BIN to your own Chromium or Chrome" >&2
        exit 1
      fi
    else SUDO=""; fi
    echo "chromium: installing Debian packages chromium and fonts-noto-cjk"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null
    have || { echo "chromium: install finished but the browser or the font is missing" >&2; exit 1; }
    echo "chromium: $("$bin" --version 2>/dev/null | head -1)"
    ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
