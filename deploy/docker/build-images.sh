#!/usr/bin/env bash
# `make images`: build the service images, one at a time (2-core machines), on a
# machine with a container registry and on one without, with the one Dockerfile
# (deploy/docker/Dockerfile, SERVICE passed by compose.yaml).
#   deploy/docker/build-images.sh [trainer encoder describer reporter prometheus]
# Environment:
#   TRAJLAB_VARIANT=cpu|gpu   image variant (gpu adds deploy/compose.gpu.yaml)
#   TRAJLAB_WHEELHOUSE=auto|1|0  build wheelhouse/<svc>-<variant>/ on the host and install
#                             from it inside the build (auto: when no registry is reachable)
#   TRAJLAB_HOST_CAS=1        copy the host's extra CAs (/usr/local/share/ca-certificates/*.crt)
#                             to deploy/certs/ for builds behind a TLS-intercepting proxy
#   BASE_IMAGE=...            force a base image (default: see deploy/docker/base-image.sh)
#   TRAJLAB_PRUNE_BUILD_CACHE=12GB  trim Docker's build cache to that size afterwards (CI)
# Prints the build time and size of every image.
set -euo pipefail
cd "$(dirname "$0")/../.."
variant=${TRAJLAB_VARIANT:-cpu}
all=(trainer encoder describer reporter)
services=("$@")
((${#services[@]})) || services=("${all[@]}")

base=$(bash deploy/docker/base-image.sh)
export TRAJLAB_BASE_IMAGE=$base TRAJLAB_VARIANT=$variant
wheelhouse=${TRAJLAB_WHEELHOUSE:-auto}
if [[ $wheelhouse == auto ]]; then
  [[ $base == trajlab/debian:* ]] && wheelhouse=1 || wheelhouse=0
fi
if [[ -n "${TRAJLAB_HOST_CAS:-}" ]]; then
  mkdir -p deploy/certs
  cp /usr/local/share/ca-certificates/*.crt deploy/certs/ 2>/dev/null || true
fi
files=(-f compose.yaml)
[[ $variant == gpu ]] && files+=(-f deploy/compose.gpu.yaml)
# Compose builds with BuildKit even where the docker CLI has no buildx plugin.
export COMPOSE_BAKE=false

summary=()
for svc in "${services[@]}"; do
  start=$(date +%s)
  case $svc in
    prometheus)
      # Debian's Prometheus on the same base, for machines that cannot pull prom/prometheus.
      docker build -q -f deploy/prometheus/Dockerfile --build-arg BASE_IMAGE="$base" \
        -t trajlab/prometheus:debian deploy/prometheus >/dev/null
      image=trajlab/prometheus:debian ;;
    trainer|encoder|describer|reporter)
      if [[ $wheelhouse == 1 ]]; then
        bash deploy/docker/wheelhouse.sh "$svc" "$variant"
      else
        rm -rf "wheelhouse/$svc-$variant"  # a stale wheelhouse would shadow the index
      fi
      target=$svc
      [[ $svc == trainer ]] && target=trainer-b1
      echo "images: building $svc ($variant, base $base)"
      docker compose --progress "${TRAJLAB_BUILD_PROGRESS:-quiet}" "${files[@]}" build "$target"
      image=trajlab/$svc:$variant ;;
    *) echo "images: unknown image $svc (known: ${all[*]} prometheus)" >&2; exit 2 ;;
  esac
  size=$(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')
  summary+=("$(printf '%-28s %5d s  %s' "$image" $(( $(date +%s) - start )) "$size")")
done
# Superseded builds of these images (untagged, labelled trajlab) only take disk space.
docker image prune -f --filter label=org.opencontainers.image.vendor=trajlab >/dev/null || true
if [[ -n "${TRAJLAB_PRUNE_BUILD_CACHE:-}" ]]; then
  # CI machines: bound the BuildKit cache (it is global: opt-in, never on a user's machine by default).
  docker builder prune -f --keep-storage "$TRAJLAB_PRUNE_BUILD_CACHE" >/dev/null || true
fi
printf 'images: %s\n' "${summary[@]}"
