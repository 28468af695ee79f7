#!/bin/bash
# measure-node-agent.sh — figures, not assertions: what a node agent pod costs on the running
# e2e cluster (make e2e-up), measured where its limits apply: its pod's memory cgroup
# (memory.max_usage_in_bytes, what the memory limit bounds) and CPU (cpuacct.usage). A pod
# pair on node 1 floods each other (UDP, PPS datagrams/s), and the limited user traces across
# it through real kubectl: a passive trace whose --filter admits the flood (20 s), and an
# active trace of 5 probes. These figures size the node agent's requests and limits
# (pkg/kube/build.go, deploy/README.md).
#
#   test/e2e/measure-node-agent.sh            PPS=50000 by default
# Environment: PPS, PLUGIN_DIR (directory holding kubectl-podtrace; default $E2E_STATE/bin).
set -euo pipefail
E2E_SCRIPT=measure
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || die "must run as root"
cluster_ready || die "the cluster is not up: make e2e-up"
PLUGIN_DIR=${PLUGIN_DIR:-$E2E_STATE/bin}
[ -x "$PLUGIN_DIR/kubectl-podtrace" ] || die "no kubectl-podtrace in $PLUGIN_DIR"
export PATH=$PLUGIN_DIR:$PATH
PPS=${PPS:-50000}
NS=e2e
P=mna$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
W=$(mktemp -d)
cleanup() {
  kc delete pod -n "$NS" "$P-src" "$P-dst" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT

pod() { # NAME ARGS-JSON
  kc apply -f - >/dev/null <<J
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"$NS"},
"spec":{"nodeName":"$NODE_NAME","automountServiceAccountToken":false,"enableServiceLinks":false,"terminationGracePeriodSeconds":1,
"containers":[{"name":"workload","image":"$WORKLOAD_IMAGE","imagePullPolicy":"Never","args":$2}]}}
J
  kc wait --for=condition=Ready "pod/$1" -n "$NS" --timeout=60s >/dev/null
}
pod "$P-dst" '[]'
dip=$(kc get pod "$P-dst" -n "$NS" -o jsonpath='{.status.podIP}')
pod "$P-src" "[\"--flood\",\"$dip:8081\",\"--pps\",\"$PPS\"]"

# cgroup FILE UID: a file of the node agent pod's cgroup (cgroupfs driver, v1 hierarchies)
cgroup() {
  local d
  for d in /sys/fs/cgroup/"$1"/kubepods/burstable/pod"$2" /sys/fs/cgroup/"$1"/kubepods/pod"$2"; do
    [ -e "$d/$3" ] && { cat "$d/$3"; return 0; }
  done
  return 1
}

echo "node agent pod on $NODE_NAME, pods flooding each other at $PPS UDP datagrams/s"
for mode in passive active; do
  case $mode in
    passive) args=(--passive --duration 20s --filter udp) ;;
    active) args=(--count 5) ;;
  esac
  KUBECONFIG=$USER_KUBECONFIG kubectl podtrace "$NS/$P-src" "$NS/$P-dst" "${args[@]}" \
    --image "$AGENT_IMAGE" --image-pull-policy Never -o json >"$W/$mode.json" 2>"$W/$mode.err" &
  pid=$!
  uid= mem=0 c0= c1= t0= t1=
  while kill -0 "$pid" 2>/dev/null; do
    [ -n "$uid" ] || uid=$(kc get pod -n podtrace-system -l app.kubernetes.io/managed-by=kubectl-podtrace \
      -o jsonpath='{.items[0].metadata.uid}' 2>/dev/null || true)
    if [ -n "$uid" ]; then
      if m=$(cgroup memory "$uid" memory.max_usage_in_bytes 2>/dev/null) && [ "$m" -gt "$mem" ]; then mem=$m; fi
      if c=$(cgroup cpuacct "$uid" cpuacct.usage 2>/dev/null); then
        [ -n "$c0" ] || { c0=$c; t0=$(date +%s%N); }
        c1=$c t1=$(date +%s%N)
      fi
    fi
    sleep 0.3
  done
  rc=0
  wait "$pid" || rc=$?
  printf '%-8s exit %d  memory cgroup peak %3d MiB  CPU %s%% of one core over %.1f s  %s\n' "$mode" "$rc" $((mem / 1048576)) \
    "$(awk -v a="${c0:-0}" -v b="${c1:-0}" -v s="${t0:-0}" -v e="${t1:-1}" 'BEGIN { printf "%.0f", (e > s ? 100 * (b - a) / (e - s) : 0) }')" \
    "$(awk -v s="${t0:-0}" -v e="${t1:-0}" 'BEGIN { print (e - s) / 1e9 }')" "$(grep -o 'received .*' "$W/$mode.err" | tail -1)"
done
