#!/usr/bin/env bash
# Builds the cluster's images with no image registry: cxmpute/base:bookworm (deploy/base-image.sh), then the
# compose file's two images, cxmpute/postgres:15 and cxmpute/platform:local. Docker's layer cache keeps a
# rebuild to the steps whose inputs changed.
#   bash deploy/build-images.sh
# torch's CPU build is fetched once on this host (its pip configuration, or PyTorch's CPU index) and served
# to the build from 127.0.0.1 (CXMPUTE_WHEELS_PORT): PyPI's own torch wheel pulls in gigabytes of CUDA.
set -euo pipefail
deploy="$(cd "$(dirname "$0")" && pwd)"
CACHE="${CXMPUTE_CACHE_DIR:-$HOME/.cache/cxmpute}"
PORT="${CXMPUTE_WHEELS_PORT:-18799}"
PYTHON="${PYTHON:-python3}"

bash "$deploy/base-image.sh"
torch="$("$PYTHON" "$deploy/image-requirements.py" "$deploy/../pyproject.toml" | grep -E '^torch==' || true)"
mkdir -p "$CACHE/wheels"
if [ -n "$torch" ] && ! ls "$CACHE/wheels/torch-${torch#torch==}+cpu-"*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip download --quiet --retries 1 --no-deps --only-binary=:all: --dest "$CACHE/wheels" \
    --extra-index-url https://download.pytorch.org/whl/cpu "${torch}+cpu"
fi
"$PYTHON" -m http.server --bind 127.0.0.1 --directory "$CACHE/wheels" "$PORT" >/dev/null 2>&1 &
server=$!
trap 'kill "$server"' EXIT
export CXMPUTE_WHEELS_URL="http://127.0.0.1:$PORT/"
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
images=(cxmpute/postgres:15 cxmpute/platform:local)
previous=()
for image in "${images[@]}"; do previous+=("$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"); done
# One service per image: the other services share them.
"${compose[@]}" -f "$deploy/docker-compose.yml" build postgres api
# A rebuilt image leaves its predecessor untagged, with its own layers: remove it (and so the layers no other
# image uses) unless a container still runs it, or rebuilds fill the disk.
for i in "${!images[@]}"; do
  old="${previous[$i]}"
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect --format '{{.Id}}' "${images[$i]}")" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
done
