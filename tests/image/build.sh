#!/usr/bin/env bash
# Build the connector's container image on a machine with no container registry and no
# Docker engine, the way CI does it (tox -e image calls this, then runs the image tests).
#
#   bash tests/image/build.sh [IMAGE [PODMAN-BUILD-ARGS...]]
#   (IMAGE defaults to painchain/kubernetes-connector:ci; run as root)
#
# 1. apt: rootful podman, runc, mmdebstrap (skipped when present).
# 2. The base image: the Dockerfile asks for python:3.11-slim, which no reachable registry
#    serves here. A stand-in made with mmdebstrap from Debian bookworm packages (python3,
#    python3-venv, ca-certificates, a venv on PATH) is tagged with that name. It is built
#    once and cached as a tarball under ${XDG_CACHE_HOME:-~/.cache}/painchain-image/,
#    keyed by its recipe; a real python:3.11-slim already in podman's store is left alone.
# 3. The unmodified Dockerfile, built with podman.
#
# The podman flags come from the recipe that first built this image on these machines:
#   --runtime runc       crun refuses the hybrid cgroup (v1 + unified) layout
#   --ulimit ...         the machine cannot raise limits; without them `podman run` fails
#                        ("error setting rlimit type 7: operation not permitted", seen here)
#   --isolation chroot   (RUN steps) and --network host (the build): each answered a failure
#                        where the recipe was worked out; kept, harmless where not needed
#   -v CA bundle :ro     the host trusts an HTTPS authority the base image does not (pip:
#                        "certificate verify failed" without it, seen here); a bind mount is
#                        never committed, so the bundle stays out of the image (a test checks)
#   --format docker      OCI images have no HEALTHCHECK; the docker format keeps it
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE="${1:-painchain/kubernetes-connector:ci}"
EXTRA=("${@:2}")
BASE=docker.io/library/python:3.11-slim
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/painchain-image"
HOST_CA=/etc/ssl/certs/ca-certificates.crt
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=16384:16384 --ulimit nproc=16384:16384)
log() { echo "[image $(date +%H:%M:%S)] $*"; }
started=$(date +%s)

# -- 1. tools ------------------------------------------------------------------------
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; then
  log "apt: installing podman runc mmdebstrap"
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
    --no-install-recommends podman runc mmdebstrap uidmap ca-certificates >/dev/null
fi

# -- 2. the stand-in base --------------------------------------------------------------
# The recipe is data: its hash names the cached tarball and labels the imported image,
# so changing any line here builds a new stand-in.
RECIPE=(
  --variant=minbase
  --include=python3,python3-venv,ca-certificates
  # what debian:bookworm-slim (python:3.11-slim's base) leaves out
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  # python:3.11-slim has python and pip on PATH outside the system site-packages
  --customize-hook='chroot "$1" python3 -m venv /opt/python'
  bookworm
)
KEY=$(printf '%s\n' "${RECIPE[@]}" | sha256sum | cut -c1-16)
TARBALL="$CACHE/python-3.11-slim-standin-$KEY.tar"
label=absent
if "${PODMAN[@]}" image exists "$BASE"; then
  label=$("${PODMAN[@]}" image inspect "$BASE" --format '{{index .Labels "painchain.standin"}}')
  [[ $label == "<no value>" ]] && label=
fi
if [[ $label == "$KEY" ]]; then
  log "base: stand-in $KEY already in podman's store"
elif [[ -z $label ]]; then
  log "base: a real $BASE is in podman's store; using it"
else
  if [[ ! -s $TARBALL ]]; then
    log "base: making the stand-in with mmdebstrap (first run only, about 2 min)"
    mkdir -p "$CACHE"
    rm -f "$CACHE"/python-3.11-slim-standin-*.tar  # stand-ins of older recipes
    mmdebstrap --quiet --format=tar "${RECIPE[@]}" "$TARBALL.partial"
    mv "$TARBALL.partial" "$TARBALL"
  fi
  log "base: importing $TARBALL as $BASE"
  "${PODMAN[@]}" import --quiet \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL painchain.standin=$KEY" \
    --change 'CMD ["python3"]' \
    "$TARBALL" "$BASE" >/dev/null
fi

# -- 3. the image ------------------------------------------------------------------------
version=$(sed -n 's/^ *version="\([^"]*\)".*/\1/p' setup.py)
revision=$(git rev-parse --short HEAD 2>/dev/null || true)
log "building $IMAGE (version $version${revision:+, revision $revision})"
mkdir -p "$CACHE"
if ! "${PODMAN[@]}" build --pull=never --format docker --isolation chroot --network host \
  "${ULIMITS[@]}" -v "$HOST_CA:$HOST_CA:ro" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" "${EXTRA[@]}" \
  -t "$IMAGE" . >"$CACHE/build.log" 2>&1; then
  tail -n 60 "$CACHE/build.log"
  log "podman build failed (whole log: $CACHE/build.log)"
  exit 1
fi
size=$("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}')
log "built $IMAGE: $(( size / 1000000 )) MB; image step took $(( $(date +%s) - started ))s"
