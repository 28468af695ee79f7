#!/bin/bash
# Bring up a real single-node Kubernetes cluster for the end-to-end tests, as root:
# etcd, kube-apiserver (Node,RBAC authorization, PodSecurity admission), kube-controller-manager
# (the EndpointSlice controller only), containerd + runc, the bridge CNI (cni0, $POD_CIDR), a kubelet,
# kube-proxy (mode $PROXY: nftables or iptables, see proxy.sh), the NetworkPolicy engine
# kube-network-policies on every node (netpol.sh), the project's images, and the fixtures (namespaces, workload pods, Services, the limited user bound to deploy/user-rbac.yaml).
# Everything lives under $E2E_STATE (default /tmp/podtrace-e2e); down.sh removes it.
# Running it again while the cluster is up does nothing but start the NetworkPolicy engines if
# they do not run.
#
#   admin kubeconfig:         /tmp/podtrace-e2e/admin.kubeconfig   (system:masters)
#   limited user kubeconfig:  /tmp/podtrace-e2e/user.kubeconfig    (only the podtrace-user roles)
set -euo pipefail
E2E_SCRIPT=up
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
cluster_lock
for c in etcd containerd ctr kubectl openssl curl ip iptables-save flock "$RUNC" "$CNI_BIN/bridge" "$CNI_BIN/host-local" "$CNI_BIN/loopback"; do
  command -v "$c" >/dev/null 2>&1 || die "missing $c (apt-get install containerd runc containernetworking-plugins etcd-server iproute2 iptables openssl curl)"
done

case $NODES in 1 | 2) ;; *) die "NODES=$NODES: want 1 or 2" ;; esac
if cluster_ready; then
  if [ -n "$E2E_NODES_GIVEN" ] && [ "$(cluster_nodes)" != "$NODES" ]; then
    die "the cluster is up with $(cluster_nodes) node(s), NODES=$NODES asked: make e2e-down first"
  fi
  log "cluster already up with $(cluster_nodes) node(s) (admin kubeconfig $ADMIN_KUBECONFIG)"
  # the NetworkPolicy engines: started where they do not run (netpol.sh down stops them alone)
  knp_running || "$HERE/netpol.sh" up
  echo "$ADMIN_KUBECONFIG"
  exit 0
fi
if [ -d "$PIDS" ] && [ -n "$(ls -A "$PIDS" 2>/dev/null)" ]; then
  log "a partial cluster is left from an earlier run: tearing it down first"
  "$HERE/down.sh"
fi
for port in 2379 2380 6443 10248 10250 10249 10256 "$KNP_METRICS_PORT"; do
  if ss -Htln "sport = :$port" | grep -q .; then die "port $port is in use by another process"; fi
done

# --- Kubernetes binaries (cached; cold build ~20 min) -----------------------------------------
"$HERE/build-k8s.sh"
"$HERE/netpol.sh" build
KBIN=$(e2e_bindir)

# --- record the host as it was, before touching it -----------------------------------------------
mkdir -p "$E2E_STATE" "$E2E_CACHE_ROOT"
if [ ! -f "$E2E_STATE/host-baseline" ]; then
  # what the host looked like; down.sh undoes exactly what is not in here, check-clean.sh compares with it
  {
    for p in $HOST_PATHS; do [ -e "$p" ] || echo "absent-path $p"; done
    for l in cni0 "$NODE_LINK" "$VXLAN_DEV"; do ip link show "$l" >/dev/null 2>&1 || echo "absent-link $l"; done
    for g in $CGROUPS; do [ -e "/sys/fs/cgroup/cpu/$g" ] || echo "absent-cgroup $g"; done
    for ipt in iptables ip6tables; do
      for t in filter nat mangle; do
        "$ipt-save" -t "$t" 2>/dev/null | grep -q '^:KUBE-' || echo "absent-kube-chains $ipt $t"
      done
    done
    for f in ip ip6; do nft list table "$f" kube-proxy >/dev/null 2>&1 || echo "absent-nft-table $f kube-proxy"; done
    nft list table inet kube-network-policies >/dev/null 2>&1 || echo "absent-nft-table inet kube-network-policies"
    for s in $SYSCTLS; do echo "sysctl $s $(sysctl -n "$s")"; done
  } >"$E2E_STATE/host-baseline.tmp"
  cp "$E2E_STATE/host-baseline.tmp" "$HOST_BASELINE"
  rm -f "$E2E_CACHE_ROOT/node2-namespaces"
  mv "$E2E_STATE/host-baseline.tmp" "$E2E_STATE/host-baseline"
fi
mkdir -p "$PIDS" "$LOGS" "$E2E_STATE"/{etcd,containerd,kubelet,pki,cni/net.d,cni/networks,pod-logs,config}

# start NAME CMD...: run detached in its own session; the pid goes to $PIDS/NAME.pid, output to $LOGS/NAME.log
start() {
  local n=$1; shift
  setsid "$@" >"$LOGS/$n.log" 2>&1 </dev/null 8>&- &
  echo $! >"$PIDS/$n.pid"
  log "started $n (pid $!, log $LOGS/$n.log)"
}
fail_with_log() { log "last lines of $LOGS/$1.log:"; tail -n 30 "$LOGS/$1.log" >&2 || true; die "$1 did not come up"; }

# --- images ------------------------------------------------------------------------------------
"$HERE/images.sh"

# --- PKI: one CA; API server and kubelet serving certs; the API server's client cert for kubelets --
PKI=$E2E_STATE/pki
if [ ! -f "$PKI/tokens.csv" ]; then
  s=$(date +%s)
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 -subj "/CN=podtrace-e2e-ca" 2>/dev/null
    cert() { # name subject [san]
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      local ext="extendedKeyUsage=serverAuth,clientAuth"
      [ -n "${3:-}" ] && ext="$ext
subjectAltName=$3"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 7 \
        -extfile <(echo "$ext") 2>/dev/null
      rm -f "$1.csr"
    }
    cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    cert apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client"
    cert "$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
    cert "$NODE2_NAME" "/O=system:nodes/CN=system:node:$NODE2_NAME" "IP:$NODE2_IP,DNS:$NODE2_NAME"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # static tokens: token,user,uid,"group1,group2"
    {
      echo "$(openssl rand -hex 24),podtrace-e2e-admin,podtrace-e2e-admin,system:masters"
      echo "$(openssl rand -hex 24),system:node:$NODE_NAME,system:node:$NODE_NAME,system:nodes"
      echo "$(openssl rand -hex 24),podtrace-e2e-user,podtrace-e2e-user"
      echo "$(openssl rand -hex 24),system:node:$NODE2_NAME,system:node:$NODE2_NAME,system:nodes"
      echo "$(openssl rand -hex 24),system:kube-controller-manager,system:kube-controller-manager"
      echo "$(openssl rand -hex 24),system:kube-proxy,system:kube-proxy"
    } >tokens.csv
    chmod 600 ./*.key tokens.csv
  )
  log "PKI and tokens in $PKI ($(( $(date +%s) - s ))s)"
fi
mkkubeconfig "$ADMIN_KUBECONFIG" podtrace-e2e-admin "$(static_token 1)"
mkkubeconfig "$E2E_STATE/kubelet.kubeconfig" "system:node:$NODE_NAME" "$(static_token 2)"
mkkubeconfig "$USER_KUBECONFIG" podtrace-e2e-user "$(static_token 3)"
mkkubeconfig "$E2E_STATE/controller-manager.kubeconfig" system:kube-controller-manager "$(static_token 5)"

# --- etcd ----------------------------------------------------------------------------------------
start etcd etcd --name podtrace-e2e --data-dir "$E2E_STATE/etcd/data" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster podtrace-e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
waitfor etcd 30 curl -sf http://127.0.0.1:2379/health || fail_with_log etcd

# --- containerd + bridge CNI, images imported -------------------------------------------------
render "$HERE/config/containerd.toml.in" "$E2E_STATE/config/containerd.toml"
render "$HERE/config/cni.conflist.in" "$E2E_STATE/cni/net.d/10-podtrace-e2e.conflist"
start containerd containerd --config "$E2E_STATE/config/containerd.toml"
waitfor containerd 30 ctr_ version || fail_with_log containerd
for t in pause workload agent; do ctr_ images import "$E2E_STATE/images/$t.tar" >/dev/null; done
log "imported $PAUSE_IMAGE $WORKLOAD_IMAGE $AGENT_IMAGE"

# --- node address: the API server listens on it, so that a second node reaches it too ------------
echo "$NODES" >"$E2E_STATE/nodes"
if [ "$NODES" = 2 ]; then
  "$HERE/node2.sh" link
elif ! ip link show "$NODE_LINK" >/dev/null 2>&1; then
  ip link add "$NODE_LINK" type bridge
  ip addr add "$NODE_IP/32" dev "$NODE_LINK"
  ip link set "$NODE_LINK" up
fi

# --- kube-apiserver --------------------------------------------------------------------------
start kube-apiserver "$KBIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="$NODE_IP" --secure-port=6443 --advertise-address="$NODE_IP" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --token-auth-file="$PKI/tokens.csv" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction,PodSecurity \
  --disable-admission-plugins=ServiceAccount \
  --allow-privileged=true \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" \
  --kubelet-preferred-address-types=InternalIP \
  --endpoint-reconciler-type=none \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --v=1
waitfor kube-apiserver 180 kc get --raw /readyz || fail_with_log kube-apiserver
# RBAC bootstrap policy is in place once the system roles exist
waitfor "RBAC bootstrap roles" 60 kc get clusterrole system:kubelet-api-admin
kc apply -f "$HERE/fixtures/cluster.yaml" >/dev/null

# --- kube-controller-manager: EndpointSlices for the Services (nothing else: no node lifecycle) --
start kube-controller-manager "$KBIN/kube-controller-manager" \
  --kubeconfig="$E2E_STATE/controller-manager.kubeconfig" \
  --controllers=endpointslice --leader-elect=false --secure-port=0 --v=1
waitfor kube-controller-manager 60 pid_alive kube-controller-manager || fail_with_log kube-controller-manager

# --- node 1: kubelet; node 2 -------------------------------------------------------------------
render "$HERE/config/kubelet.yaml.in" "$E2E_STATE/config/kubelet.yaml"
start kubelet "$KBIN/kubelet" --config="$E2E_STATE/config/kubelet.yaml" \
  --kubeconfig="$E2E_STATE/kubelet.kubeconfig" --root-dir="$E2E_STATE/kubelet" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=2
waitfor "node $NODE_NAME Ready" 180 kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s || fail_with_log kubelet
if [ "$NODES" = 2 ]; then
  s=$(date +%s)
  "$HERE/node2.sh" up
  log "second node up in $(( $(date +%s) - s ))s"
fi

# --- fixtures: agent namespace, user RBAC and admission policies from deploy/, test namespaces, pods,
# the limited user; the policies admit the harness's agent image repository, set as an admin would
kc apply -f "$ROOT/deploy/agent-namespace.yaml" -f "$ROOT/deploy/user-rbac.yaml" -f "$ROOT/deploy/admission-policy.yaml" >/dev/null
kc -n podtrace-system patch configmap podtrace-agent-policy --type merge \
  -p "{\"data\":{\"images\":\"${AGENT_IMAGE%:*}\\n\"}}" >/dev/null
kc apply -f "$HERE/fixtures/namespaces.yaml" -f "$HERE/fixtures/user.yaml" >/dev/null
render "$HERE/fixtures/pods.yaml.in" "$E2E_STATE/config/pods.yaml"
kc apply -f "$E2E_STATE/config/pods.yaml" >/dev/null
if [ "$NODES" = 2 ]; then
  NODE_NAME=$NODE2_NAME render "$HERE/fixtures/pods-node2.yaml.in" "$E2E_STATE/config/pods-node2.yaml"
  kc apply -f "$E2E_STATE/config/pods-node2.yaml" >/dev/null
fi
waitfor "pods Ready" 120 kc wait --for=condition=Ready pod --all -n e2e --timeout=2s || { kc get pods -A -o wide >&2; fail_with_log kubelet; }
kc wait --for=condition=Ready pod --all -n e2e-baseline --timeout=60s >/dev/null
kc wait --for=condition=Ready pod --all -n e2e-restricted --timeout=60s >/dev/null
# The API server loads admission policies asynchronously: wait until each refuses what it must,
# probed as the limited user with server-side dry runs (nothing is created) and an attach.
policy_refuses() { # POLICY KUBECTL-ARGS...: the request is refused, naming POLICY
  local p=$1 out; shift
  ! out=$(timeout 20 kubectl --kubeconfig "$USER_KUBECONFIG" "$@" 2>&1) && grep -q "ValidatingAdmissionPolicy '$p'" <<<"$out"
}
waitfor "policy podtrace-agent-namespace" 60 policy_refuses podtrace-agent-namespace \
  -n podtrace-system run podtrace-policy-probe --image="$WORKLOAD_IMAGE" --restart=Never --dry-run=server ||
  die "the admission policy podtrace-agent-namespace does not refuse a foreign pod in podtrace-system"
waitfor "policy podtrace-agent-ephemeral" 60 policy_refuses podtrace-agent-ephemeral \
  -n e2e patch pod pod-a --subresource=ephemeralcontainers --type=strategic \
  -p "{\"spec\":{\"ephemeralContainers\":[{\"name\":\"podtrace-policy-probe\",\"image\":\"$WORKLOAD_IMAGE\"}]}}" --dry-run=server ||
  die "the admission policy podtrace-agent-ephemeral does not refuse a foreign ephemeral container"
# (attach has no dry run: refused, it returns at once; admitted, timeout ends it)
waitfor "policy podtrace-agent-attach" 60 policy_refuses podtrace-agent-attach -n e2e attach pod-a -c workload ||
  die "the admission policy podtrace-agent-attach does not refuse an attach to an application container"

# --- Services and kube-proxy on every node -----------------------------------------------------
kc apply -f "$HERE/fixtures/services.yaml" >/dev/null
"$HERE/proxy.sh" up "$PROXY"

# --- the NetworkPolicy engine on every node, enforcing ------------------------------------------
"$HERE/netpol.sh" up

touch "$E2E_STATE/up.done"
kc get nodes -o wide >&2
kc get pods -A -o wide >&2
log "cluster up with $NODES node(s) in ${SECONDS}s"
log "admin kubeconfig:        $ADMIN_KUBECONFIG"
log "limited user kubeconfig: $USER_KUBECONFIG"
echo "$ADMIN_KUBECONFIG"
