#!/bin/bash
# measure-busy.sh — figures, not assertions: one probe traced across a busy pod pair on the
# running e2e cluster (make e2e-up), through real kubectl as the limited user, at each rate.
# The source pod floods the destination's UDP echo port (the echo floods back).
#
#   test/e2e/measure-busy.sh [RATE...]      rates in datagrams/s, 0 = idle (default: 0 5000 50000)
#
# For each rate it prints: wall time, exit code and verdict, bytes of JSON out, the plugin's
# peak RSS, the bytes of each agent's stream (the run is saved with --save: the streams'
# sizes), the plugin's own `received` line when it prints one, and the CPU time
# kube-apiserver and the kubelet spent during the run.
# Environment: PLUGIN_DIR (directory holding the kubectl-podtrace to measure; default
# $E2E_STATE/bin), AGENT_IMAGE (the agent image it starts), TRACE_ARGS (more plugin flags).
set -euo pipefail
E2E_SCRIPT=measure
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || die "must run as root"
cluster_ready || die "the cluster is not up: make e2e-up"
command -v /usr/bin/time >/dev/null || die "/usr/bin/time not found (apt-get install time)"
PLUGIN_DIR=${PLUGIN_DIR:-$E2E_STATE/bin}
[ -x "$PLUGIN_DIR/kubectl-podtrace" ] || die "no kubectl-podtrace in $PLUGIN_DIR"
export PATH=$PLUGIN_DIR:$PATH
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(0 5000 50000)
W=$(mktemp -d)
NS=e2e
P=meas$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
cleanup() {
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" delete pod -n $NS -l podtrace.io/measure=$P --wait=false >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT

workload() { # name [args...]
  local name=$1 args; shift
  args=$(printf '"%s",' "$@"); args="[${args%,}]"; [ $# -gt 0 ] || args="[]"
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" apply -f - >/dev/null <<YAML
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$name","namespace":"$NS","labels":{"podtrace.io/measure":"$P"}},
"spec":{"nodeName":"$NODE_NAME","automountServiceAccountToken":false,"enableServiceLinks":false,"terminationGracePeriodSeconds":1,
"containers":[{"name":"workload","image":"$WORKLOAD_IMAGE","imagePullPolicy":"Never","args":$args}]}}
YAML
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" wait -n $NS --for=condition=Ready "pod/$name" --timeout=60s >/dev/null
}
cpu() { # pid name: utime+stime in seconds
  local p; p=$(cat "$PIDS/$1.pid"); awk '{printf "%.2f", ($14+$15)/100}' "/proc/$p/stat"
}

workload "$P-dst"
DST_IP=$(kubectl --kubeconfig "$ADMIN_KUBECONFIG" get pod -n $NS "$P-dst" -o jsonpath='{.status.podIP}')
log "plugin $PLUGIN_DIR/kubectl-podtrace, agent image $AGENT_IMAGE, destination $P-dst $DST_IP"
printf '%-7s %7s %-18s %10s %9s %10s %10s  %s\n' rate time verdict json-bytes peak-rss apiserver kubelet streams
for rate in "${RATES[@]}"; do
  src=$P-src$rate
  if [ "$rate" = 0 ]; then workload "$src"; else workload "$src" --flood "$DST_IP:8081" --pps "$rate"; fi
  sleep 2 # the flood is on
  a0=$(cpu kube-apiserver); k0=$(cpu kubelet)
  set +e
  /usr/bin/time -f '%e %M' -o "$W/time" env KUBECONFIG="$USER_KUBECONFIG" kubectl podtrace "$NS/$src" "$NS/$P-dst" -o json \
    --image "$AGENT_IMAGE" --image-pull-policy Never --save "$W/rec-$rate" ${TRACE_ARGS:-} >"$W/out-$rate.json" 2>"$W/err-$rate"
  rc=$?
  set -e
  a1=$(cpu kube-apiserver); k1=$(cpu kubelet)
  read -r wall rss < <(tail -n1 "$W/time")
  verdict=$(tail -n1 "$W/out-$rate.json" | sed -n 's/.*"result":"\([a-z-]*\)".*/\1/p')
  streams=$(cd "$W/rec-$rate" 2>/dev/null && for f in *.jsonl; do printf '%s=%s ' "$(echo "$f" | sed 's/^[0-9]*-//; s/\.jsonl$//')" "$(stat -c %s "$f")"; done)
  printf '%-7s %6ss %-18s %10s %7sMB %9ss %9ss  %s\n' "$rate" "$wall" "$rc/${verdict:-none}" "$(stat -c %s "$W/out-$rate.json")" "$((rss / 1024))" \
    "$(echo "$a1 - $a0" | bc)" "$(echo "$k1 - $k0" | bc)" "$streams"
  grep -h '^podtrace: received' "$W/err-$rate" | sed 's/^/        /' || true
  grep -h '"kind":"warning"' "$W/out-$rate.json" | head -3 | cut -c1-240 | sed 's/^/        /' || true
  [ "$rc" -le 3 ] || sed 's/^/        /' "$W/err-$rate"
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" delete pod -n $NS "$src" --wait=false >/dev/null
done
