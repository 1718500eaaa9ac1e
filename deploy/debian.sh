#!/usr/bin/env bash
# Shared by deploy/observability.sh and deploy/chromium.sh (sourced, not run):
#   debian_install LABEL PACKAGE...   installs Debian packages as root, or with password-less sudo;
#                                     otherwise prints the command to run as root and returns 1.
debian_install() {
  local label="$1"; shift
  local sudo=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=sudo; else
      echo "$label: $* missing and this user cannot install them;" >&2
      echo "  run as root: apt-get update && apt-get install -y --no-install-recommends $*" >&2
      return 1
    fi
  fi
  echo "$label: installing Debian packages $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
