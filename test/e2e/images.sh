#!/bin/bash
# Build the end-to-end images without a registry: the agent (only the static podtrace-agent),
# the workload and the pause image, each FROM scratch, as docker-archive tarballs in
# $E2E_STATE/images. If the harness's containerd is running, import them into its k8s.io namespace.
#   AGENT_BIN=/path/to/podtrace-agent  use a prebuilt agent binary instead of building ./cmd/podtrace-agent
set -euo pipefail
E2E_SCRIPT=images
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$E2E_STATE/images
mkdir -p "$OUT/bin"
cd "$ROOT"

s=$(date +%s)
CGO_ENABLED=0 "$GO" build -trimpath -ldflags '-s -w' -o "$OUT/bin/" ./images/mkimage ./images/workload ./images/pause
if [ -n "${AGENT_BIN:-}" ]; then
  log "agent: using prebuilt $AGENT_BIN"
  cp "$AGENT_BIN" "$OUT/bin/podtrace-agent"
else
  [ -d cmd/podtrace-agent ] || die "./cmd/podtrace-agent does not exist; set AGENT_BIN to a prebuilt agent"
  make --no-print-directory agent BIN="$OUT/bin" >&2
fi
log "built binaries in $(( $(date +%s) - s ))s"
"$OUT/bin/podtrace-agent" version >&2 || die "podtrace-agent version failed"

mk() { "$OUT/bin/mkimage" "$@" 2>&1 | sed 's/^/  /' >&2; }
mk -o "$OUT/agent.tar" -ref "$AGENT_IMAGE" -entrypoint /podtrace-agent "$OUT/bin/podtrace-agent:/podtrace-agent"
mk -o "$OUT/workload.tar" -ref "$WORKLOAD_IMAGE" -entrypoint /workload "$OUT/bin/workload:/workload"
mk -o "$OUT/pause.tar" -ref "$PAUSE_IMAGE" -entrypoint /pause "$OUT/bin/pause:/pause"

if pid_alive containerd; then
  for t in pause workload agent; do ctr_ images import "$OUT/$t.tar" >/dev/null; done
  log "imported $PAUSE_IMAGE $WORKLOAD_IMAGE $AGENT_IMAGE into containerd (k8s.io)"
fi
log "images ready in $OUT"
