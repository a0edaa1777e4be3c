#!/usr/bin/env bash
# Build a real kube-apiserver (Kubernetes v1.20.2) from Debian bookworm's
# `kubernetes` SOURCE package (full upstream tree incl. vendor/), using
# Debian's golang-go (1.19). Needs only the Debian archive (apt). Run as root.
#
# Usage: build.sh [WORKDIR]   (default ${XDG_CACHE_HOME:-$HOME/.cache}/painchain-envtest)
# Result: $WORKDIR/bin/kube-apiserver, kube-controller-manager, kube-scheduler
#         (+ etcd from the etcd-server package)
# A second run with every binary present returns at once (the cache); a cache
# holding only kube-apiserver (older versions of this script) builds just the
# two controllers, reusing the unpacked tree and Go's build cache.
# Adapted from ../shared/envtest/build.sh (the project owns this copy).
set -euo pipefail

W="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/painchain-envtest}"
log() { echo "[envtest-build $(date +%H:%M:%S)] $*"; }
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)
missing=()
for b in "${BINARIES[@]}"; do [[ -x $W/bin/$b ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]] && command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
  log "cached: $(IFS=,; echo "${BINARIES[*]}") in $W/bin ($("$W/bin/kube-apiserver" --version))"
  exit 0
fi
[[ ${#missing[@]} -gt 0 ]] || missing=(kube-apiserver)   # only etcd missing: apt below
log "building ${missing[*]} into $W (first run only: ~9 min for kube-apiserver on 2 cores, controllers extra)"
mkdir -p "$W/src" "$W/bin"

# 1. deb-src entry (same mirrors as the binary entries) + tools
SRCLIST=/etc/apt/sources.list.d/k8s-envtest-debsrc.sources
if [[ ! -f $SRCLIST ]]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$SRCLIST"
  trap 'rm -f "$SRCLIST"' EXIT   # only needed for `apt-get source`; drop it afterwards
fi
log "apt: installing golang-go etcd-server etcd-client and build tools"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go etcd-server etcd-client dpkg-dev rsync jq make openssl >/dev/null
# etcd-server's postinst does not start etcd when there is no systemd; make sure:
if command -v systemctl >/dev/null && systemctl is-active -q etcd 2>/dev/null; then
  systemctl stop etcd; systemctl disable etcd || true
fi

# 2. source package (34 MB .orig.tar.gz; unpacks to ~280 MB; ~2.2 GB after build)
cd "$W/src"
if ! ls -d kubernetes-*/ >/dev/null 2>&1; then
  log "fetching the kubernetes source package"
  apt-get source --download-only kubernetes
  dpkg-source -x kubernetes_*.dsc
fi
K=$(ls -d "$W"/src/kubernetes-*/ | head -n1)
cd "$K"

# 2b. Go >= 1.18 fix: the vendored github.com/modern-go/reflect2 v1.0.1 makes
#     the apiserver crash ("fatal error: fault ... mapiterinit") the first time
#     it JSON-encodes a map (labels, selectors) when built with Go 1.18+.
#     Swap in reflect2 v1.0.2 (API-compatible; same bump upstream did) taken
#     from Debian's golang-github-modern-go-reflect2-dev .deb (not installed).
R=vendor/github.com/modern-go/reflect2
if ! [[ -f $R/go_above_118.go ]]; then
  mkdir -p "$W/debs" && (cd "$W/debs" && apt-get download golang-github-modern-go-reflect2-dev \
    && dpkg-deb -x golang-github-modern-go-reflect2-dev_*.deb x)
  rm -f $R/*.go $R/*.s
  cp "$W"/debs/x/usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} $R/
  sed -i "s|github.com/modern-go/reflect2 v1.0.1|github.com/modern-go/reflect2 v1.0.2|g" vendor/modules.txt
fi

# 3. build with upstream's Makefile (GOPATH mode, GO111MODULE=off, vendor/),
#    which first runs the code generators (openapi-gen etc.: the generated
#    OpenAPI file is not in the tarball, so a plain `go build` does not work).
export GOPATH="$K/.go"           # same trick as debian/rules
mkdir -p .go/src/k8s.io
[[ -L .go/src/k8s.io/kubernetes ]] || ln -s ../../.. .go/src/k8s.io/kubernetes
# (hack/lib/golang.sh puts GOCACHE under _output/local/go/cache itself; the
#  version/commit come from the tarball's git-archive substitutions)
export CGO_ENABLED=0 HOME="$W/home" GOFLAGS= GO111MODULE=off
mkdir -p "$HOME"

# kube-controller-manager and kube-scheduler: the tests' real controllers
# (Deployments, ReplicaSets, StatefulSets, ... and binding pods to fake Nodes).
# One make call shares the code generators and Go's build cache.
whats=$(printf 'cmd/%s ' "${missing[@]}")
log "make WHAT=\"${whats% }\" (the long step)"
make WHAT="${whats% }"
for b in "${missing[@]}"; do
  install -m 0755 "_output/bin/$b" "$W/bin/$b"
  ls -la "$W/bin/$b"
done
ln -sf /usr/bin/etcd "$W/bin/etcd"
"$W/bin/kube-apiserver" --version
