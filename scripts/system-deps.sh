#!/usr/bin/env bash
# Install the Debian packages the integration tests need, only those missing.
# Each entry: "<command that must exist>:<debian package>".
set -euo pipefail
NEEDED=(
  "node:nodejs"
  "npm:npm"
  "redis-server:redis-server"
  "wrk:wrk"
  "nginx:nginx-light"
  # promtool checks and unit-tests deploy/observability's alert rules. The package also holds
  # the Prometheus server: where policy-rc.d forbids it (containers, CI) it is not started;
  # elsewhere systemd starts it on :9090 (`systemctl disable --now prometheus` if unwanted).
  "promtool:prometheus"
)
missing=()
for entry in "${NEEDED[@]}"; do
  cmd=${entry%%:*}; pkg=${entry#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
