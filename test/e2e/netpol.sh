#!/bin/bash
# The NetworkPolicy engine of the end-to-end cluster: kube-network-policies (sigs.k8s.io,
# v$KNP_VERSION) on every node (node 1 in the host's network namespace, node 2 in its own), run by
# up.sh and down.sh:
#
#   netpol.sh build     build the binary from the Go module proxy and cache it (a cache hit returns
#                       at once)
#   netpol.sh up        start the engine on every node where it does not run, and wait until each
#                       enforces: a deny-all policy on a fixture pod of that node blocks a connection
#                       to it, a rule admitting its port lets it through (the engine answered
#                       accept), and the policy's deletion lets it through again
#   netpol.sh kill N    SIGKILL the engine of node N (1 or 2), as a crash would: its nftables table
#                       stays and keeps queueing the packets of the pods policies select, with no one
#                       to answer them (the engine fails closed); netpol.sh up restarts it
#   netpol.sh stop N    stop the engine of node N (SIGINT: it removes its nftables table, and the
#                       policies are no longer enforced there); netpol.sh up restarts it
#   netpol.sh down      stop the engine on every node (SIGINT: it removes its nftables table) and
#                       remove the table a killed engine left
#
# The engine (https://github.com/kubernetes-sigs/kube-network-policies) programs one nftables table,
# inet kube-network-policies, whose postrouting chain sends the first packet of each connection from
# or to a local pod that a NetworkPolicy selects to NFQUEUE $KNP_QUEUE; the engine evaluates the
# policies in userspace and returns accept or drop. Its defaults are kept (fail closed); it reads the
# API with its own identity, as its own manifests deploy it: the ServiceAccount
# kube-system/kube-network-policies (fixtures/netpol.yaml: list and watch networkpolicies, pods and
# namespaces, nothing else), whose token netpol.sh requests (TokenRequest) at each start, so it runs
# on any cluster up.sh brought up. It takes the in-cluster configuration only (a service account
# token at a fixed path): each instance runs in a private mount namespace with a tmpfs over /run
# holding its token and the CA, so the host's /run is untouched.
set -euo pipefail
E2E_SCRIPT=netpol
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || die "must run as root"

BIN=$(knp_bindir)/kube-network-policies

build() {
  [ -x "$BIN" ] && { log "cached: $BIN"; return 0; }
  mkdir -p "$E2E_CACHE_ROOT"
  # one build at a time (shared with build-k8s.sh): a second caller waits and finds the cache
  exec 9>"$E2E_CACHE_ROOT/.build.lock"
  if ! flock -n 9; then log "another build is running, waiting for it"; flock 9; fi
  [ -x "$BIN" ] && { log "cached: $BIN"; exec 9>&-; return 0; }
  local src s k n
  src=$E2E_CACHE_ROOT/src-knp-v$KNP_VERSION
  s=$(date +%s)
  log "building kube-network-policies v$KNP_VERSION with $(e2e_goversion) (cold: ~10 CPU-minutes)"
  rm -rf "$src"
  mkdir -p "$src"
  dir() { (cd "$src" && "$GO" mod download -json "$1") | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'; }
  k=$(dir "sigs.k8s.io/kube-network-policies@v$KNP_VERSION")
  n=$(dir "github.com/google/nftables@$KNP_NFTABLES")
  [ -d "$k" ] && [ -d "$n" ] || die "go mod download of kube-network-policies v$KNP_VERSION or google/nftables $KNP_NFTABLES failed"
  grep -q "github.com/google/nftables $KNP_NFTABLES\$" "$k/go.mod" || die "kube-network-policies v$KNP_VERSION does not require google/nftables $KNP_NFTABLES"
  cp -r "$k" "$src/knp"
  cp -r "$n" "$src/nftables"
  chmod -R u+w "$src"
  # this kernel has the xtables NFQUEUE target but not the nft queue expression (CONFIG_NFT_QUEUE):
  # the engine's queue rules are written as that target (config/knp-nft-queue.patch)
  patch -s -d "$src/nftables" -p1 <"$HERE/config/knp-nft-queue.patch" || die "config/knp-nft-queue.patch does not apply"
  # its own go.mod and go.sum, CGO_ENABLED=0, ./cmd, as its Dockerfile builds it
  if ! (cd "$src/knp" && "$GO" mod edit -replace "github.com/google/nftables=../nftables" &&
    CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$src/kube-network-policies" ./cmd); then
    die "go build of kube-network-policies v$KNP_VERSION failed"
  fi
  mkdir -p "$(dirname "$BIN")"
  mv "$src/kube-network-policies" "$BIN"
  rm -rf "$src"
  exec 9>&-
  log "built kube-network-policies in $(( $(date +%s) - s ))s -> $BIN"
}

# node N: name, address, netns prefix (empty for node 1), the fixture pod the check uses
node_name() { if [ "$1" = 1 ]; then echo "$NODE_NAME"; else echo "$NODE2_NAME"; fi; }
node_ip() { if [ "$1" = 1 ]; then echo "$NODE_IP"; else echo "$NODE2_IP"; fi; }
pidname() { if [ "$1" = 1 ]; then echo kube-network-policies; else echo node2-kube-network-policies; fi; }
check_pod() { if [ "$1" = 1 ]; then echo pod-c; else echo pod-x; fi; }
on() { # N CMD...: CMD in node N's network namespace
  local n=$1; shift
  if [ "$n" = 1 ]; then "$@"; else nsenter --net="$NODE2_NETNS" -- "$@"; fi
}
nodes() { if [ "$(cluster_nodes)" = 2 ]; then echo 1 2; else echo 1; fi; }

start() { # N: the engine of node N, detached, in its own session, without the harness lock
  local n=$1 name dir
  name=$(pidname "$n")
  dir=$E2E_STATE/kube-network-policies/$name # one a node: the engines start at once, and each copies its own
  mkdir -p "$dir"
  # a bound token of its ServiceAccount, valid for as long as a cluster of this harness lives (its
  # CA is valid 7 days); the engine reads it once, from its private /run
  (umask 077; kc -n kube-system create token kube-network-policies --duration=168h >"$dir/token") ||
    die "no token for ServiceAccount kube-system/kube-network-policies"
  cp "$E2E_STATE/pki/ca.crt" "$dir/ca.crt"
  # shellcheck disable=SC2016 # expanded by the inner shell
  local inner='mount -t tmpfs -o size=1m,mode=0755 podtrace-e2e-knp /run &&
    mkdir -p /run/secrets/kubernetes.io/serviceaccount &&
    cp "$1/token" "$1/ca.crt" /run/secrets/kubernetes.io/serviceaccount/ &&
    shift && exec "$@"'
  if [ "$n" = 1 ]; then set --; else set -- nsenter --net="$NODE2_NETNS" --; fi
  KUBERNETES_SERVICE_HOST=$NODE_IP KUBERNETES_SERVICE_PORT=6443 \
    setsid "$@" unshare --mount --propagation private -- bash -c "$inner" knp "$dir" \
    "$BIN" --hostname-override="$(node_name "$n")" --metrics-bind-address="$(node_ip "$n"):$KNP_METRICS_PORT" \
    --nfqueue-id="$KNP_QUEUE" --v=2 >"$LOGS/$name.log" 2>&1 </dev/null 8>&- &
  echo $! >"$PIDS/$name.pid"
  log "started $name on $(node_name "$n") (pid $!, log $LOGS/$name.log)"
}

pod_ip() { kc -n e2e get pod "$1" -o jsonpath='{.status.podIP}'; }
# connects N IP: a TCP connection from node N to IP:8080 by an unprivileged user (the engine
# lets the node's root through, so that kubelet probes are never blocked)
connects() {
  on "$1" timeout 3 setpriv --reuid=65534 --regid=65534 --clear-groups -- bash -c "exec 3<>/dev/tcp/$2/8080" 2>/dev/null
}
blocked() { ! connects "$@"; }
queue_ids() { on "$1" awk -v q="$KNP_QUEUE" '$1 == q { print $8 }' /proc/net/netfilter/nfnetlink_queue; } # id sequence
queue_bound() { on "$1" awk -v q="$KNP_QUEUE" '$1 == q { found = 1 } END { exit !found }' /proc/net/netfilter/nfnetlink_queue; }
table_present() { on "$1" nft list table inet kube-network-policies >/dev/null 2>&1; }

# enforces N: the engine of node N blocks a connection to its check pod once a deny-all policy
# selects that pod, and lets it through once the policy is gone
enforces() {
  local n=$1 name pod ip pol
  name=$(pidname "$n"); pod=$(check_pod "$n"); pol=podtrace-e2e-engine-check-$n
  ip=$(pod_ip "$pod")
  [ -n "$ip" ] || { log "no IP for e2e/$pod"; return 1; }
  waitfor "$name: nfqueue $KNP_QUEUE bound on $(node_name "$n")" 60 queue_bound "$n" || return 1
  waitfor "e2e/$pod ($ip) reachable from $(node_name "$n") without a policy" 60 connects "$n" "$ip" || return 1
  policy "$pol" "$pod" ""
  local ok=0 q0 q1
  if waitfor "$name enforces a deny-all policy on e2e/$pod" 60 blocked "$n" "$ip"; then
    # an accept verdict too, not only drops: a rule that admits the port lets the connection
    # through, after the engine answered for it (its queue's packet ids advanced)
    q0=$(queue_ids "$n")
    policy "$pol" "$pod" "[{ports: [{protocol: TCP, port: 8080}]}]"
    if waitfor "$name admits tcp/8080 to e2e/$pod by a rule" 60 connects "$n" "$ip"; then
      q1=$(queue_ids "$n")
      if [ "${q1:-0}" -gt "${q0:-0}" ]; then ok=1; else log "$name: the connection went through without being queued (ids $q0 -> $q1)"; fi
    fi
  fi
  kc -n e2e delete networkpolicy "$pol" --wait=true >/dev/null
  [ "$ok" = 1 ] || return 1
  waitfor "$name lifts it once deleted" 60 connects "$n" "$ip"
}
policy() { # NAME POD INGRESS: a policy selecting e2e/POD with these ingress rules (none: deny all)
  kc apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: $1, namespace: e2e}
spec:
  podSelector: {matchLabels: {podtrace.io/e2e: $2}}
  policyTypes: [Ingress]
  ingress: ${3:-[]}
EOF
}

up() {
  command -v nft >/dev/null || die "missing nft (apt-get install nftables)"
  [ -x "$BIN" ] || build
  local n s
  s=$(date +%s%3N)
  kc apply -f "$HERE/fixtures/netpol.yaml" >/dev/null
  # a cluster brought up before up.sh recorded the engine's table in the host's baseline: no engine
  # has run on node 1 yet if the table is absent, so it was absent before the cluster too
  if ! pid_alive "$(pidname 1)" && ! table_present 1 && ! baseline_absent; then
    local b
    for b in "$E2E_STATE/host-baseline" "$HOST_BASELINE"; do
      [ -f "$b" ] && echo "absent-nft-table inet kube-network-policies" >>"$b"
    done
  fi
  for n in $(nodes); do pid_alive "$(pidname "$n")" || start "$n"; done
  for n in $(nodes); do
    enforces "$n" || { tail -n 30 "$LOGS/$(pidname "$n").log" >&2; die "kube-network-policies does not enforce on $(node_name "$n")"; }
  done
  s=$(( $(date +%s%3N) - s ))
  log "kube-network-policies enforcing on $(cluster_nodes) node(s) in $(( s / 1000 )).$(( s % 1000 / 100 ))s"
}

kill_engine() { # N: SIGKILL, as a crash
  local name
  name=$(pidname "$1")
  pid_alive "$name" || die "$name does not run"
  kill -9 "$(cat "$PIDS/$name.pid")"
  for ((i = 0; i < 50; i++)); do pid_alive "$name" || break; sleep 0.2; done
  rm -f "$PIDS/$name.pid"
  log "killed $name; its table stays: $(table_present "$1" && echo present || echo absent)"
}

# stop N...: SIGINT, the signal it handles: it deletes its table, then waits 5 s before exiting
stop() {
  local n name p i
  for n in "$@"; do
    name=$(pidname "$n")
    pid_alive "$name" && { log "stopping $name (pid $(cat "$PIDS/$name.pid"))"; kill -INT "$(cat "$PIDS/$name.pid")" || true; }
  done
  for n in "$@"; do
    name=$(pidname "$n")
    pid_alive "$name" || { rm -f "$PIDS/$name.pid"; continue; }
    p=$(cat "$PIDS/$name.pid")
    for ((i = 0; i < 75; i++)); do pid_running "$p" || break; sleep 0.2; done
    if pid_running "$p"; then log "$name still alive, SIGKILL"; kill -9 "$p" 2>/dev/null || true; fi
    rm -f "$PIDS/$name.pid"
  done
}

down() {
  stop 1 2
  # the table a killed engine left (node 2's goes with its network namespace too)
  if nft list table inet kube-network-policies >/dev/null 2>&1 && baseline_absent; then
    nft delete table inet kube-network-policies && log "removed nft table inet kube-network-policies on $NODE_NAME"
  fi
  if [ -e "$NODE2_NETNS" ] && [ -e "$E2E_STATE/node2-namespaces" ] && table_present 2; then
    n2 nft delete table inet kube-network-policies && log "removed nft table inet kube-network-policies on $NODE2_NAME"
  fi
  rm -rf "$E2E_STATE/kube-network-policies"
}
baseline_absent() { grep -q '^absent-nft-table inet kube-network-policies$' "$E2E_STATE/host-baseline" 2>/dev/null; }

case ${1:-} in
build) build ;;
up)
  cluster_lock
  mkdir -p "$LOGS" "$PIDS"
  up
  ;;
stop)
  cluster_lock
  case ${2:-} in 1 | 2) stop "$2"; log "stopped $(pidname "$2"); its table: $(table_present "$2" && echo present || echo removed)" ;; *) die "usage: $0 stop 1|2" ;; esac
  ;;
kill)
  cluster_lock
  case ${2:-} in 1 | 2) kill_engine "$2" ;; *) die "usage: $0 kill 1|2" ;; esac
  ;;
down)
  cluster_lock
  down
  ;;
*) die "usage: $0 build | up | stop 1|2 | kill 1|2 | down" ;;
esac
