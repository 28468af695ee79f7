#!/bin/bash
# Build kube-apiserver, kubelet, kube-controller-manager (EndpointSlices for Services) and
# kube-proxy (plus kube-scheduler with BUILD_CONTROLLERS=1, and kubectl with BUILD_KUBECTL=1;
# only BUILD_ONLY="..." if set) from the Go module proxy, using k8s.io/kubernetes as a library,
# and cache the static binaries in $E2E_CACHE_ROOT/k8s-v<version>-<goversion>/.
# A cache hit returns at once. The cold build takes ~20 minutes on 2 cores.
set -euo pipefail
E2E_SCRIPT=build-k8s
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BIN=$(e2e_bindir)
SRC=$E2E_CACHE_ROOT/src-v$K8S_VERSION
want="kube-apiserver kubelet kube-controller-manager kube-proxy"
[ "${BUILD_CONTROLLERS:-0}" = 1 ] && want="$want kube-scheduler"
[ "${BUILD_KUBECTL:-0}" = 1 ] && want="$want kubectl"
# BUILD_ONLY="kubectl" builds just those (CI builds kubectl first on a machine without one)
[ -n "${BUILD_ONLY:-}" ] && want=$BUILD_ONLY

have_all() { local b; for b in $want; do [ -x "$BIN/$b" ] || return 1; done; }
if have_all; then log "cached: $BIN ($want)"; exit 0; fi

mkdir -p "$E2E_CACHE_ROOT"
# one build at a time: a second caller waits for the first and then finds the cache
exec 9>"$E2E_CACHE_ROOT/.build.lock"
if ! flock -n 9; then log "another build is running, waiting for it"; flock 9; fi
if have_all; then log "cached: $BIN ($want)"; exit 0; fi

log "building Kubernetes v$K8S_VERSION with $(e2e_goversion) into $BIN (cold: ~20 min on 2 cores)"
mkdir -p "$SRC"
cd "$SRC"
tools='//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)'
if [ ! -f go.sum ] || [ ! -f .tidy-ok ] || [ "$(cat tools.go 2>/dev/null)" != "$tools" ]; then
  s=$(date +%s)
  "$GO" mod download "k8s.io/kubernetes@v$K8S_VERSION"
  K=$("$GO" env GOMODCACHE)/k8s.io/kubernetes@v$K8S_VERSION
  # k8s.io/kubernetes replaces its staging modules with ./staging/...; a consumer must pin each to v0.<minor>.<patch>
  {
    printf 'module podtrace.local/e2e-k8s-build\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
    for m in $(grep -E '=> \./staging' "$K/go.mod" | awk '{print $1}' | sort -u); do
      printf '\t%s => %s v0.%s\n' "$m" "$m" "${K8S_VERSION#1.}"
    done
    printf ')\n'
  } >go.mod
  echo "$tools" >tools.go
  rm -f go.sum .tidy-ok
  log "resolving modules (go mod tidy, ~1 min)"
  "$GO" mod tidy
  touch .tidy-ok
  log "modules resolved in $(( $(date +%s) - s ))s"
fi

minor=$(echo "$K8S_VERSION" | cut -d. -f2)
LDF="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
LDF="$LDF -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
LDF="$LDF -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
pkgs=""
for b in $want; do pkgs="$pkgs k8s.io/kubernetes/cmd/$b"; done

tmp=$(mktemp -d "$E2E_CACHE_ROOT/.bin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# progress: the go command is silent for many minutes; report the build cache growth every minute
( while sleep 60; do log "still building... GOCACHE $(du -sh "$("$GO" env GOCACHE)" 2>/dev/null | cut -f1)"; done ) &
ticker=$!
s=$(date +%s)
# one go build for all binaries: shared packages compile once
# shellcheck disable=SC2086
if ! CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$LDF" -o "$tmp/" $pkgs; then
  kill "$ticker" 2>/dev/null; die "go build failed"
fi
kill "$ticker" 2>/dev/null || true
mkdir -p "$BIN"
for b in $want; do mv "$tmp/$b" "$BIN/$b"; done
log "built $want in $(( $(date +%s) - s ))s -> $BIN"
[ -x "$BIN/kube-apiserver" ] && "$BIN/kube-apiserver" --version >&2
true
