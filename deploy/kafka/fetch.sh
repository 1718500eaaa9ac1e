#!/usr/bin/env bash
# Make $PLEDGEWATCH_HOME/.kafka/lib hold exactly the jars listed in jars.lock,
# each verified against its SHA-256.
#
#   bash deploy/kafka/fetch.sh
#
# Sources, in order, for each jar that is missing or does not verify:
#   1. the local Maven repository ($KAFKA_M2_REPO, default ~/.m2/repository)
#   2. Maven itself (mvn dependency:copy-dependencies on pom.xml), if mvn exists
#   3. plain HTTPS from $KAFKA_MAVEN_URL (default https://repo1.maven.org/maven2)
#      with curl, or python3's urllib when curl is missing
# A jar whose checksum does not match the lock is an error. When every jar is
# already present and verified, nothing is fetched.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PLEDGEWATCH_HOME="${PLEDGEWATCH_HOME:-$(cd "$here/../.." && pwd)}"
lock="$here/jars.lock"
lib="$PLEDGEWATCH_HOME/.kafka/lib"
m2="${KAFKA_M2_REPO:-$HOME/.m2/repository}"
maven_url="${KAFKA_MAVEN_URL:-https://repo1.maven.org/maven2}"

say() { echo "fetch: $*" >&2; }
die() { echo "fetch: error: $*" >&2; exit 1; }

[ -f "$lock" ] || die "lock list not found: $lock"

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else die "neither sha256sum nor shasum found: install coreutils"; fi
}

# --- read the lock list ------------------------------------------------------
coords=() sums=() names=()
while read -r coord sum name extra; do
  case "$coord" in ''|'#'*) continue ;; esac
  if [ -z "$name" ] || [ -n "${extra:-}" ] || [ "${#sum}" -ne 64 ]; then
    die "malformed line in $lock: $coord $sum $name ${extra:-}"
  fi
  coords+=("$coord"); sums+=("$sum"); names+=("$name")
done <"$lock"
[ "${#names[@]}" -gt 0 ] || die "no jars listed in $lock"

mkdir -p "$lib"

# Remove anything in lib/ that the lock does not list (old versions etc.).
for f in "$lib"/* "$lib"/.[!.]*; do
  [ -e "$f" ] || continue
  b="$(basename "$f")"
  keep=no
  for n in "${names[@]}"; do [ "$n" = "$b" ] && { keep=yes; break; }; done
  if [ "$keep" = no ]; then say "removing $b (not in jars.lock)"; rm -rf -- "$f"; fi
done

# Indexes of jars that are missing or fail verification.
missing=()
for i in "${!names[@]}"; do
  f="$lib/${names[$i]}"
  if [ -f "$f" ] && [ "$(sha256 "$f")" = "${sums[$i]}" ]; then continue; fi
  [ -f "$f" ] && { say "${names[$i]} in $lib does not verify, fetching it again"; rm -f -- "$f"; }
  missing+=("$i")
done
if [ "${#missing[@]}" -eq 0 ]; then
  say "all ${#names[@]} jars present and verified in $lib"
  exit 0
fi
say "${#missing[@]} of ${#names[@]} jars to fetch into $lib"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Copy $1 into lib/ as jar number $2 if its checksum matches; $3 names the source.
install_jar() {
  local src="$1" i="$2" from="$3" got
  got="$(sha256 "$src")"
  [ "$got" = "${sums[$i]}" ] || die "checksum mismatch for ${coords[$i]} (${names[$i]}) from $from:
  file:     $src
  expected: ${sums[$i]}
  actual:   $got
If pom.xml changed on purpose, regenerate the lock with deploy/kafka/lock.sh; otherwise delete the corrupt file and retry."
  cp -- "$src" "$lib/${names[$i]}.part"
  mv -f -- "$lib/${names[$i]}.part" "$lib/${names[$i]}"
}

# Repository path of jar number $1: group/path/artifact/version/filename
repo_path() {
  local g a v
  IFS=: read -r g a v _ <<<"${coords[$1]}"
  printf '%s/%s/%s/%s' "${g//.//}" "$a" "$v" "${names[$1]}"
}

still_missing() {
  local i out=()
  for i in "${missing[@]}"; do [ -f "$lib/${names[$i]}" ] || out+=("$i"); done
  missing=("${out[@]+"${out[@]}"}")
}

# --- 1. local Maven repository ----------------------------------------------
n=0
for i in "${missing[@]}"; do
  src="$m2/$(repo_path "$i")"
  if [ -f "$src" ]; then install_jar "$src" "$i" "local Maven repository"; n=$((n + 1)); fi
done
[ "$n" -eq 0 ] || say "copied $n jars from $m2"
still_missing

# --- 2. Maven -----------------------------------------------------------------
if [ "${#missing[@]}" -gt 0 ] && command -v mvn >/dev/null 2>&1; then
  say "resolving ${#missing[@]} jars with mvn (Maven Central)"
  if mvn -B -q -f "$here/pom.xml" dependency:copy-dependencies \
       -DincludeScope=runtime -DoutputDirectory="$tmp/mvn" >"$tmp/mvn.log" 2>&1; then
    for i in "${missing[@]}"; do
      src="$tmp/mvn/${names[$i]}"
      [ -f "$src" ] && install_jar "$src" "$i" "mvn dependency:copy-dependencies"
    done
  else
    say "mvn failed (falling back to HTTPS download); its output:"
    tail -n 20 "$tmp/mvn.log" >&2
  fi
  still_missing
fi

# --- 3. plain HTTPS -------------------------------------------------------------
download() {  # url dest
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --connect-timeout 20 -o "$2" "$1"
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$1" "$2" <<'PY'
import shutil, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as out:
        shutil.copyfileobj(r, out)
except Exception as exc:
    sys.exit(f"fetch: {sys.argv[1]}: {exc}")
PY
  else
    die "cannot download $1: neither curl nor python3 found (install curl)"
  fi
}
if [ "${#missing[@]}" -gt 0 ]; then
  say "downloading ${#missing[@]} jars from $maven_url"
  for i in "${missing[@]}"; do
    url="$maven_url/$(repo_path "$i")"
    download "$url" "$tmp/dl.jar" || die "download failed: $url
Check network access to Maven Central, or set KAFKA_HOME to an unpacked Apache Kafka distribution."
    install_jar "$tmp/dl.jar" "$i" "$url"
    rm -f "$tmp/dl.jar"
  done
  still_missing
fi

if [ "${#missing[@]}" -gt 0 ]; then
  for i in "${missing[@]}"; do say "still missing: ${coords[$i]} (${names[$i]})"; done
  die "could not fetch ${#missing[@]} jars; is jars.lock out of date with pom.xml? (regenerate with deploy/kafka/lock.sh)"
fi
say "all ${#names[@]} jars present and verified in $lib"
