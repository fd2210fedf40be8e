#!/usr/bin/env bash
# Builds wheelhouse/<service>-<variant>/ on the host: every wheel the service image
# needs (its requirements and grpcio-tools for the stub stage), fetched with the
# host's own pip configuration. The Dockerfile installs from it with --no-index when
# it exists, so builds need no network, no package index and no TLS inside the build
# (this is also how the on-disk CPU torch wheel gets in). Without it, the Dockerfile
# installs from the package index as usual.
#   usage: deploy/docker/wheelhouse.sh SERVICE [cpu|gpu]
# Versions are pinned to the project's .venv (the one the tests ran in) when it exists:
# the pins go to <dir>/constraints.txt, which the Dockerfile passes to pip as well.
# Skips the work when requirements and pins are unchanged since the last run.
set -euo pipefail
cd "$(dirname "$0")/../.."
svc=$1 variant=${2:-cpu}
PY=${PYTHON:-python3}
out=wheelhouse/$svc-$variant
mkdir -p "$out"
req=$(mktemp) cons=$(mktemp) && trap 'rm -f "$req" "$cons"' EXIT
"$PY" deploy/docker/requirements.py pyproject.toml "$svc" --variant "$variant" >"$req"
"$PY" deploy/docker/requirements.py pyproject.toml "$svc" --tools >>"$req"
if [[ -x .venv/bin/python ]]; then
  # GPU images choose their own torch/onnxruntime builds.
  .venv/bin/python -m pip freeze --exclude-editable 2>/dev/null | grep -E '^[A-Za-z0-9_.-]+==' \
    | { if [[ $variant == gpu ]]; then grep -v -i -E '^(torch|onnxruntime|nvidia-[a-z0-9-]+)=='; else cat; fi; } \
    >"$cons" || true
fi
if cmp -s <(cat "$req" "$cons") "$out/.stamp" && ls "$out"/*.whl >/dev/null 2>&1; then
  echo "wheelhouse: $out is up to date ($(ls "$out"/*.whl | wc -l) wheels)"
  exit 0
fi
echo "wheelhouse: building $out"
# pip wheel = download wheels and build any sdist into a wheel, so --no-index works later.
# (Hosts whose pip config names local index folders warn once per package: filtered.)
"$PY" -m pip wheel -q --disable-pip-version-check --prefer-binary -w "$out" --find-links "$out" \
  -c "$cons" -r "$req" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# Keep only the pins of packages this image actually has wheels for: a package installed
# in .venv for something else must not change the image's inputs (and bust its cache).
have=$(ls "$out" | sed -n 's/^\([^-]*\)-.*\.whl$/\1/p' | tr 'A-Z_.' 'a-z--' | sort -u)
while IFS= read -r line; do
  name=$(echo "${line%%==*}" | tr 'A-Z_.' 'a-z--')
  if grep -qx -- "$name" <<<"$have"; then echo "$line"; fi
done <"$cons" | sort >"$out/constraints.txt"
cat "$req" "$cons" >"$out/.stamp"
echo "wheelhouse: $out has $(ls "$out"/*.whl | wc -l) wheels ($(du -sh "$out" | cut -f1))"
