#!/usr/bin/env bash
# Installs the host programs the full test suite needs (Debian 12, as root):
# Prometheus (reporter and dashboard tests). Docker engine + Compose are added by
# the containers work (issue 7). Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package starts a system Prometheus on :9090 where systemd runs; tests start their own.
echo "prometheus: $(prometheus --version 2>&1 | head -1)"
