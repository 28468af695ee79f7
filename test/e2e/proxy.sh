#!/bin/bash
# kube-proxy on the end-to-end cluster's nodes (node 1 in the host's network namespace, node 2 in
# its own), run by up.sh and down.sh:
#
#   proxy.sh up [MODE]     start kube-proxy on every node in MODE (nftables or iptables; default
#                          $PROXY), wait until each has synced its rules and a Service answers
#                          through them
#   proxy.sh mode MODE     switch the running cluster to MODE: stop, clean up the rules, start again
#   proxy.sh down          stop kube-proxy on every node and remove its rules (kube-proxy --cleanup)
#
# kube-proxy leaves the host's sysctls alone (config/kube-proxy.yaml.in); its rules go with
# --cleanup, and down.sh removes what a crashed run may have left (KUBE-* chains, the kube-proxy
# nftables tables).
set -euo pipefail
E2E_SCRIPT=proxy
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || die "must run as root"
cluster_lock
KBIN=$(e2e_bindir)

start_proxy() { # name netns-command-prefix...: detached, in its own session, without the lock
  local n=$1; shift
  setsid "$@" >"$LOGS/$n.log" 2>&1 </dev/null 8>&- &
  echo $! >"$PIDS/$n.pid"
  log "started $n (pid $!, log $LOGS/$n.log)"
}

# healthy IP: kube-proxy's healthz answers 200 once it programmed its rules
healthy() { curl -sf "http://$1:10256/healthz" >/dev/null; }
healthy2() { n2 curl -sf "http://$1:10256/healthz" >/dev/null; }
# answers VIP PORT: a TCP connection to a Service from the node itself goes through the DNAT
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
# programmed2 MODE VIP: node 2's rules translate the VIP (node 2 has no default route, so a
# connection from the node itself fails its route lookup before any DNAT: its pods' traffic
# is DNATed in PREROUTING)
programmed2() {
  case $1 in
  nftables) n2 nft list table ip kube-proxy 2>/dev/null | grep -q "$2 . tcp . 80 : goto service-" ;;
  iptables) n2 iptables-save -t nat 2>/dev/null | grep -q -- "-d $2/32 .*-j KUBE-SVC-" ;;
  esac
}

up() {
  local mode=${1:-$PROXY} s
  case $mode in nftables | iptables) ;; *) die "kube-proxy mode: want nftables or iptables, not $mode" ;; esac
  command -v nft >/dev/null || die "missing nft (apt-get install nftables)"
  s=$(date +%s%3N)
  mkkubeconfig "$E2E_STATE/kube-proxy.kubeconfig" system:kube-proxy "$(static_token 6)"
  PROXY=$mode render_proxy "$NODE_NAME" "$NODE_IP" "$E2E_STATE" "$E2E_STATE/config/kube-proxy.yaml"
  start_proxy kube-proxy "$KBIN/kube-proxy" --config="$E2E_STATE/config/kube-proxy.yaml" --v=1
  if [ "$(cluster_nodes)" = 2 ]; then
    cp "$E2E_STATE/kube-proxy.kubeconfig" "$NODE2_STATE/kube-proxy.kubeconfig"
    PROXY=$mode render_proxy "$NODE2_NAME" "$NODE2_IP" "$NODE2_STATE" "$NODE2_STATE/config/kube-proxy.yaml"
    start_proxy node2-kube-proxy nsenter --net="$NODE2_NETNS" -- "$KBIN/kube-proxy" --config="$NODE2_STATE/config/kube-proxy.yaml" --v=1
  fi
  waitfor "kube-proxy ($mode) on $NODE_NAME" 120 healthy "$NODE_IP" || { tail -n 30 "$LOGS/kube-proxy.log" >&2; die "kube-proxy did not sync on $NODE_NAME"; }
  if [ "$(cluster_nodes)" = 2 ]; then
    waitfor "kube-proxy ($mode) on $NODE2_NAME" 120 healthy2 "$NODE2_IP" || { tail -n 30 "$LOGS/node2-kube-proxy.log" >&2; die "kube-proxy did not sync on $NODE2_NAME"; }
  fi
  # the rules work: node 1 reaches a Service through its DNAT, node 2 has the rules for one
  # (once the endpoints are ready)
  if kc -n e2e get service svc-local >/dev/null 2>&1; then
    waitfor "svc-local through $mode rules on $NODE_NAME" 120 answers "$(kc -n e2e get service svc-local -o jsonpath='{.spec.clusterIP}')" 80 ||
      { tail -n 30 "$LOGS/kube-proxy.log" >&2; die "svc-local does not answer on $NODE_NAME"; }
    if [ "$(cluster_nodes)" = 2 ]; then
      waitfor "svc-remote in $mode rules on $NODE2_NAME" 120 programmed2 "$mode" "$(kc -n e2e get service svc-remote -o jsonpath='{.spec.clusterIP}')" ||
        { tail -n 30 "$LOGS/node2-kube-proxy.log" >&2; die "svc-remote does not answer on $NODE2_NAME"; }
    fi
  fi
  echo "$mode" >"$E2E_STATE/proxy"
  s=$(( $(date +%s%3N) - s ))
  log "kube-proxy $mode on $(cluster_nodes) node(s), synced in $(( s / 1000 )).$(( s % 1000 / 100 ))s"
}

render_proxy() { # node-name node-ip node-state out
  sed -e "s|@NODE_STATE@|$3|g" -e "s|@NODE_NAME@|$1|g" -e "s|@NODE_IP@|$2|g" -e "s|@PROXY@|$PROXY|g" \
    -e "s|@CLUSTER_CIDR@|$CLUSTER_CIDR|g" "$HERE/config/kube-proxy.yaml.in" >"$4"
}

down() {
  stop_pid node2-kube-proxy
  stop_pid kube-proxy
  # the rules of both modes; node 2's go with its network namespace too
  if [ -x "$KBIN/kube-proxy" ]; then
    "$KBIN/kube-proxy" --cleanup >>"$LOGS/kube-proxy-cleanup.log" 2>&1 || log "kube-proxy --cleanup on $NODE_NAME failed (see $LOGS/kube-proxy-cleanup.log)"
    if [ -e "$NODE2_NETNS" ] && [ -e "$E2E_STATE/node2-namespaces" ]; then
      nsenter --net="$NODE2_NETNS" -- "$KBIN/kube-proxy" --cleanup >>"$LOGS/kube-proxy-cleanup.log" 2>&1 || true
    fi
  fi
  rm -f "$E2E_STATE/proxy"
}

mkdir -p "$LOGS" "$PIDS"
case ${1:-} in
up) up "${2:-}" ;;
mode)
  [ -f "$E2E_STATE/up.done" ] || die "the cluster is not up (make e2e-up)"
  down
  up "${2:-}"
  ;;
down) down ;;
*) die "usage: $0 up [nftables|iptables] | mode nftables|iptables | down" ;;
esac
