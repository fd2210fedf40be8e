#!/usr/bin/env bash
# Chooses the base image for the service images and prints its name on stdout.
#   - the official python:3.11-slim-bookworm when it is present or can be pulled;
#   - otherwise a local Debian 12 base, trajlab/debian:bookworm, made with
#     debootstrap from Debian's archive (plain HTTP, reachable where no container
#     registry is). Built once (~1 min); skipped when the image exists.
# Override with BASE_IMAGE=... (used as is) or TRAJLAB_LOCAL_BASE=1 (force local).
set -euo pipefail
OFFICIAL=python:3.11-slim-bookworm
LOCAL=trajlab/debian:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "base-image: $*" >&2; }

if [[ -n "${BASE_IMAGE:-}" ]]; then echo "$BASE_IMAGE"; exit 0; fi
if [[ -z "${TRAJLAB_LOCAL_BASE:-}" ]]; then
  if docker image inspect "$OFFICIAL" >/dev/null 2>&1 || timeout 120 docker pull -q "$OFFICIAL" >/dev/null 2>&1; then
    log "using the official $OFFICIAL"
    echo "$OFFICIAL"; exit 0
  fi
  log "no registry reachable for $OFFICIAL: using the local Debian base $LOCAL"
fi
if docker image inspect "$LOCAL" >/dev/null 2>&1; then
  echo "$LOCAL"; exit 0
fi
command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; exit 1; }
rootfs=$(mktemp -d /tmp/trajlab-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap --variant=minbase bookworm ($MIRROR)"
debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/tmp/trajlab-debootstrap.log 2>&1 || {
  tail -20 /tmp/trajlab-debootstrap.log >&2; exit 1; }
# Slim the rootfs like the official images do: no apt lists, caches or docs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
# Same sources as the official Debian image, so `apt-get update` works inside builds.
echo "deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main" >"$rootfs"/etc/apt/sources.list
tar -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  -c 'CMD ["bash"]' -m "debootstrap minbase bookworm" - "$LOCAL" >/dev/null
log "built $LOCAL ($(docker image inspect -f '{{.Size}}' "$LOCAL" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$LOCAL"
