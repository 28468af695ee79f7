#!/bin/bash
# make e2e: bring the cluster up if it is not, run the end-to-end suite through the real
# kubectl (with kubectl-podtrace on PATH), and tear the cluster down unless KEEP=1.
#   KEEP=1          keep the cluster (and its state) after the suite; KEEP=0 always tears it down;
#                   by default a cluster this run brought up is torn down and one that was up is kept
#   NODES=2         (default) two nodes: the suite runs with ROUTING (default vxlan) between them, then
#                   the cross-node tests run again with the other routing (hostgw), and routing is
#                   switched back;  NODES=1: one node, no cross-node tests
#   kube-proxy runs in PROXY mode (default nftables) for the suite; the Service tests then run
#   again in the other mode (iptables), and the mode is switched back
#   E2E_RUN=regex   run only matching tests;  E2E_TESTFLAGS: more flags for go test
set -euo pipefail
E2E_SCRIPT=e2e
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
cluster_lock
# a cluster that was up before this run belongs to whoever brought it up: leave it up
if [ -z "${KEEP:-}" ]; then
  KEEP=0
  if cluster_ready; then KEEP=1; log "the cluster was already up: it stays up after the suite (KEEP=0 tears it down)"; fi
fi
finish() {
  rc=$?
  if [ "$KEEP" = 1 ]; then
    log "KEEP=1: cluster left up; admin kubeconfig $ADMIN_KUBECONFIG, user $USER_KUBECONFIG; make e2e-down removes it"
  else
    t=$(date +%s)
    "$HERE/down.sh" || rc=1
    "$HERE/check-clean.sh" || rc=1
    log "teardown ${t_down:=$(( $(date +%s) - t ))}s"
  fi
  log "timings: bring-up ${t_up:-?}s, suite ${t_suite:-?}s${t_down:+, teardown ${t_down}s}; exit $rc"
  exit "$rc"
}
trap finish EXIT
t=$(date +%s)
"$HERE/up.sh" >/dev/null
t_up=$(( $(date +%s) - t ))

# the plugin as a user installs it: an executable kubectl-podtrace on PATH
mkdir -p "$E2E_STATE/bin"
if [ -d "$ROOT/cmd/kubectl-podtrace" ]; then
  make --no-print-directory -C "$ROOT" plugin BIN="$E2E_STATE/bin" >&2
  log "kubectl-podtrace on PATH from $E2E_STATE/bin"
  export E2E_REQUIRE_PLUGIN=1
fi
export PATH=$E2E_STATE/bin:$PATH
export E2E_STATE AGENT_IMAGE WORKLOAD_IMAGE NODE_NAME POD_CIDR NODE2_NAME POD2_CIDR VXLAN_VNI VXLAN_PORT NODE_IP NODE2_IP
E2E_NODES=$(cluster_nodes)
export E2E_NODES

t=$(date +%s)
cd "$ROOT"
log "running the end-to-end suite (kubectl $(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -1))"
suite() { # label [-run regex]
  local label=$1 s rc; shift
  s=$(date +%s)
  set +e
  # shellcheck disable=SC2086
  "$GO" test -tags e2e -count=1 -v -timeout 30m "$@" ${E2E_TESTFLAGS:-} ./test/e2e/...
  rc=$?
  set -e
  log "suite ($label) finished in $(( $(date +%s) - s ))s (exit $rc)"
  return "$rc"
}
rc=0
if [ "$E2E_NODES" = 2 ]; then
  first=$(cat "$E2E_STATE/routing")
  other=vxlan; [ "$first" = vxlan ] && other=hostgw
  suite "2 nodes, routing $first" ${E2E_RUN:+-run "$E2E_RUN"} || rc=1
  "$HERE/node2.sh" routing "$other"
  suite "2 nodes, routing $other: cross-node tests" -run "${E2E_RUN:-CrossNode}" || rc=1
  "$HERE/node2.sh" routing "$first"
else
  log "one node: the cross-node tests are skipped (NODES=2 runs them)"
  suite "1 node" ${E2E_RUN:+-run "$E2E_RUN"} || rc=1
fi
proxy=$(cat "$E2E_STATE/proxy")
other=iptables; [ "$proxy" = iptables ] && other=nftables
"$HERE/proxy.sh" mode "$other"
suite "kube-proxy $other: Service tests" -run "${E2E_RUN:-Service}" || rc=1
"$HERE/proxy.sh" mode "$proxy"
t_suite=$(( $(date +%s) - t ))
exit "$rc"
