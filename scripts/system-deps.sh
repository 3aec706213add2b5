#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when missing and we are root;
# otherwise names each missing package in one line.
set -euo pipefail
declare -A need=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [prometheus-redis-exporter]=prometheus-redis-exporter
  [openssl]=openssl
  [chromium]=chromium  # the status page's browser tests (tests/e2e/test_status_page.py)
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  }
  # The Debian packages start their services; the tests start their own on free ports.
  for svc in prometheus prometheus-alertmanager prometheus-redis-exporter prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
    pkill -x "$svc" >/dev/null 2>&1 || true
  done
else
  echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
