# shellcheck shell=bash
# Common settings and helpers for the end-to-end harness. Sourced by the scripts in test/e2e.

# Pinned Kubernetes version. v1.37 is the last minor that still accepts containerd 1.x
# (Debian 12 ships 1.6) and runs on a cgroup v1 host with failCgroupV1: false.
K8S_VERSION=${K8S_VERSION:-1.37.2}

E2E_STATE=${E2E_STATE:-/tmp/podtrace-e2e}            # everything a running cluster owns
E2E_CACHE_ROOT=${E2E_CACHE_ROOT:-/var/cache/podtrace-e2e} # built Kubernetes binaries, kept across runs

GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi

e2e_goversion() { "$GO" env GOVERSION; }
e2e_bindir() { echo "$E2E_CACHE_ROOT/k8s-v$K8S_VERSION-$(e2e_goversion)"; }

# The NetworkPolicy engine on every node (netpol.sh): sigs.k8s.io/kube-network-policies, built from the
# Go module proxy and cached like the Kubernetes binaries; its NFQUEUE number and metrics port
# (its google/nftables patched by config/knp-nft-queue.patch, which keys the cache too)
KNP_VERSION=${KNP_VERSION:-0.8.0}
KNP_NFTABLES=v0.3.0
KNP_QUEUE=100
KNP_METRICS_PORT=9080
knp_running() { # every node's engine runs
  pid_alive kube-network-policies && { [ "$(cluster_nodes)" != 2 ] || pid_alive node2-kube-network-policies; }
}
knp_bindir() {
  echo "$E2E_CACHE_ROOT/kube-network-policies-v$KNP_VERSION-$(sha256sum "$(dirname "${BASH_SOURCE[0]}")/config/knp-nft-queue.patch" | cut -c1-12)-$(e2e_goversion)"
}

_e2e_t0=${_e2e_t0:-$(date +%s)}
export _e2e_t0
log() { printf '[%s +%ss] %s: %s\n' "$(date +%T)" "$(( $(date +%s) - _e2e_t0 ))" "${E2E_SCRIPT:-e2e}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# waitfor DESC TIMEOUT_SECONDS CMD...: poll CMD every 0.2s until it succeeds.
waitfor() { # the bound is elapsed time: a slow CMD does not stretch it
  local d=$1 to=$2 end; shift 2
  end=$(( $(date +%s) + to ))
  while :; do
    if "$@" >/dev/null 2>&1; then log "$d ready"; return 0; fi
    [ "$(date +%s)" -lt "$end" ] || break
    sleep 0.2
  done
  log "timeout after ${to}s waiting for $d"
  return 1
}

# The node. Node-specific settings are kept together so a second node can get its own set.
NODE_NAME=${NODE_NAME:-podtrace-e2e-node}
NODE_IP=${NODE_IP:-10.250.0.1}         # on an otherwise empty bridge $NODE_LINK, so apiserver->kubelet stays on an address we own
NODE_LINK=${NODE_LINK:-podtrace-e2e0}
POD_CIDR=${POD_CIDR:-10.244.0.0/24}
POD_GW=${POD_GW:-10.244.0.1}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/16}
SERVICE_IP=${SERVICE_IP:-10.96.0.1}      # first address of SERVICE_CIDR (the kubernetes Service)
CLUSTER_CIDR=${CLUSTER_CIDR:-10.244.0.0/16}  # every node's pod CIDR: kube-proxy's clusterCIDR
# kube-proxy's mode on both nodes (switch a running cluster with proxy.sh mode / make e2e-proxy)
PROXY=${PROXY:-nftables}

# A second node (NODES=2): its own containerd and kubelet in their own network, mount and UTS
# namespaces and cgroup root on this host. The nodes' underlay NICs, $NODE_LINK ($NODE_IP/24, node 1)
# and eth0 ($NODE2_IP/24, node 2), are veths into a "wire": a bridge in a network namespace of its
# own where no agent runs (the network between two machines; tests drop traffic there).
# Cross-node pod traffic takes ROUTING: vxlan (a flannel-style VTEP $VXLAN_DEV, VNI $VXLAN_VNI,
# UDP port $VXLAN_PORT, static FDB, neighbour and route entries) or hostgw (routes via the other node).
E2E_NODES_GIVEN=${NODES:+1}   # NODES set by the caller (a running cluster with another count is then an error)
NODES=${NODES:-2}
ROUTING=${ROUTING:-vxlan}
NODE2_NAME=${NODE2_NAME:-podtrace-e2e-node2}
NODE2_IP=${NODE2_IP:-10.250.0.2}
POD2_CIDR=${POD2_CIDR:-10.244.1.0/24}
POD2_GW=${POD2_GW:-10.244.1.1}
NODE2_STATE=$E2E_STATE/node2                 # node 2's containerd, kubelet, CNI state, logs
NODE2_NETNS=$E2E_STATE/netns/node2           # its network namespace, bind-mounted here (not in /run/netns)
WIRE_NETNS=$E2E_STATE/netns/wire            # the switch between the nodes
NODE2_CGROUP=${NODE2_CGROUP:-podtrace-e2e-n2}  # its kubelet's cgroupRoot, in every v1 hierarchy
UNDERLAY_PREFIX=24
UNDERLAY_MTU=1550                            # room for VXLAN's 50 bytes around a 1500-byte pod frame
VXLAN_DEV=${VXLAN_DEV:-flannel.1}
VXLAN_VNI=${VXLAN_VNI:-1}
VXLAN_PORT=${VXLAN_PORT:-8472}
CTR2_SOCK=$NODE2_STATE/containerd/containerd.sock
ctr2_() { ctr --address "$CTR2_SOCK" -n k8s.io "$@"; }
n2() { nsenter --net="$NODE2_NETNS" -- "$@"; }   # a command in node 2's network namespace
# nodes the running cluster was brought up with (1 when it is not up)
cluster_nodes() { cat "$E2E_STATE/nodes" 2>/dev/null || echo 1; }

# Images, imported into containerd's k8s.io namespace; pods use imagePullPolicy: Never.
AGENT_IMAGE=${AGENT_IMAGE:-podtrace.local/podtrace-agent:e2e}
WORKLOAD_IMAGE=${WORKLOAD_IMAGE:-podtrace.local/workload:e2e}
PAUSE_IMAGE=${PAUSE_IMAGE:-podtrace.local/pause:e2e}

RUNC=${RUNC:-/usr/sbin/runc}
CNI_BIN=${CNI_BIN:-/usr/lib/cni}

ADMIN_KUBECONFIG=$E2E_STATE/admin.kubeconfig
USER_KUBECONFIG=$E2E_STATE/user.kubeconfig
PIDS=$E2E_STATE/pids
LOGS=$E2E_STATE/logs
CTR_SOCK=$E2E_STATE/containerd/containerd.sock
ctr_() { ctr --address "$CTR_SOCK" -n k8s.io "$@"; }
kc() { kubectl --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# Paths containerd 1.6 and the kubelet use outside their configured directories.
# up.sh records in host-baseline which of them did not exist before; down.sh removes only those.
HOST_PATHS="/run/containerd /var/lib/cni /var/lib/kubelet /var/log/containers /var/log/pods"
# cgroup v1 parents: the kubelet's pods (cgroupfs driver) and containerd's own containers in k8s.io
CGROUPS="kubepods k8s.io $NODE2_CGROUP"
# Sysctls the kubelet or the bridge plugin change; up.sh saves them, down.sh restores them.
SYSCTLS="kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom net.ipv4.ip_forward"
# Written by up.sh before it touches the host, kept after down.sh so check-clean.sh can compare.
HOST_BASELINE=$E2E_CACHE_ROOT/host-baseline

# pid NAME: the recorded pid of a process the harness started, if it is still alive
# (a zombie does not count: a killed daemon may stay unreaped when its parent is gone)
pid_running() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pid_alive() { [ -f "$PIDS/$1.pid" ] && pid_running "$(cat "$PIDS/$1.pid")"; }

# stop_pid NAME: SIGTERM the recorded pid, wait up to 10 s, then SIGKILL that pid
stop_pid() {
  local p i
  if ! pid_alive "$1"; then rm -f "$PIDS/$1.pid"; return 0; fi
  p=$(cat "$PIDS/$1.pid")
  log "stopping $1 (pid $p)"
  kill "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do pid_running "$p" || break; sleep 0.2; done
  if pid_running "$p"; then log "$1 still alive, SIGKILL"; kill -9 "$p" 2>/dev/null || true; fi
  rm -f "$PIDS/$1.pid"
}

# mkkubeconfig FILE USER TOKEN: a kubeconfig (mode 0600) for USER, authenticated by TOKEN, to the
# API server on node 1, trusting the harness's CA
mkkubeconfig() {
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: podtrace-e2e
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 "$E2E_STATE/pki/ca.crt")
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2@podtrace-e2e
  context: {cluster: podtrace-e2e, user: "$2"}
current-context: $2@podtrace-e2e
KC
  chmod 600 "$1"
}
# static_token N: the token of line N of the API server's token file (up.sh writes it)
static_token() { sed -n "${1}p" "$E2E_STATE/pki/tokens.csv" | cut -d, -f1; }

# cluster_ready: up.sh finished, every daemon it started runs, the API server is ready (the
# NetworkPolicy engines aside: up.sh starts them on a ready cluster where they do not run)
cluster_ready() {
  local p
  for p in etcd containerd kube-apiserver kube-controller-manager kubelet kube-proxy; do pid_alive "$p" || return 1; done
  if [ "$(cluster_nodes)" = 2 ]; then
    for p in node2-containerd node2-kubelet node2-kube-proxy; do pid_alive "$p" || return 1; done
  fi
  [ -f "$E2E_STATE/up.done" ] && kc get --raw /readyz >/dev/null 2>&1
}

# cluster_lock: one harness command at a time on this host (up, down, a whole make e2e run).
# The lock is held until the calling script exits; the scripts it runs inherit it, the daemons
# up.sh starts must not (start closes fd 8), or the lock would live as long as the cluster.
cluster_lock() {
  [ -n "${E2E_LOCK_HELD:-}" ] && return 0
  mkdir -p "$E2E_CACHE_ROOT"
  exec 8>"$E2E_CACHE_ROOT/.harness.lock"
  if ! flock -n 8; then
    log "another harness command is running on this host; waiting for it (up to 30 min)"
    flock -w 1800 8 || die "timed out waiting for $E2E_CACHE_ROOT/.harness.lock"
  fi
  export E2E_LOCK_HELD=1
}

# render TEMPLATE OUT: substitute @VARS@ in a config template
render() {
  sed -e "s|@STATE@|$E2E_STATE|g" -e "s|@NODE_STATE@|${NODE_STATE:-$E2E_STATE}|g" -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
      -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@POD_GW@|$POD_GW|g" -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" \
      -e "s|@AGENT_IMAGE@|$AGENT_IMAGE|g" -e "s|@WORKLOAD_IMAGE@|$WORKLOAD_IMAGE|g" \
      -e "s|@RUNC@|$RUNC|g" -e "s|@CNI_BIN@|$CNI_BIN|g" "$1" >"$2"
}

# kubectl: the one on PATH; on a machine without one, the one build-k8s.sh built (BUILD_KUBECTL=1)
if ! command -v kubectl >/dev/null 2>&1 && [ -x "$(e2e_bindir)/kubectl" ]; then
  PATH=$(e2e_bindir):$PATH
fi
