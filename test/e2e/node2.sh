#!/bin/bash
# The second node of the end-to-end cluster (NODES=2), run by up.sh and down.sh:
#
#   node2.sh link            the underlay: node 2's network namespace (bind-mounted at $NODE2_NETNS),
#                            $NODE_LINK ($NODE_IP/24, node 1) and eth0 ($NODE2_IP/24, node 2), veths
#                            into the bridge "wire" in a namespace of its own ($WIRE_NETNS);
#                            up.sh runs it before the API server, which listens on $NODE_IP
#   node2.sh up              node 2's containerd + kubelet, Ready, images imported, ROUTING set up
#   node2.sh routing vxlan|hostgw|none   switch how pod traffic crosses between the nodes
#   node2.sh down            stop node 2 (pods through the API first), kill what is left of it,
#                            delete its Node; the network goes with down.sh's unmounting
#
# Node 2 is a second machine made of namespaces: containerd and the kubelet run inside its network
# namespace and one private mount + UTS namespace (hostname $NODE2_NAME), with private bind mounts over
# the host paths containerd and the kubelet hard-code, a sysfs of its own for /sys/class/net, and the
# kubelet's cgroupRoot /$NODE2_CGROUP. Its pods (CIDR $POD2_CIDR) hang off its own cni0.
set -euo pipefail
E2E_SCRIPT=node2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || die "must run as root"
cluster_lock

# the harness starts processes detached, in their own session, without the harness lock
start2() {
  local n=$1; shift
  setsid "$@" >"$LOGS/$n.log" 2>&1 </dev/null 8>&- &
  echo $! >"$PIDS/$n.pid"
  log "started $n (pid $!, log $LOGS/$n.log)"
}

wire() { nsenter --net="$WIRE_NETNS" -- "$@"; }

link() {
  [ -e "$NODE2_NETNS" ] && die "$NODE2_NETNS exists already"
  ip link show "$VXLAN_DEV" >/dev/null 2>&1 && die "the host has a link $VXLAN_DEV: the second node's VTEP needs the name"
  mkdir -p "$(dirname "$NODE2_NETNS")"
  touch "$NODE2_NETNS"
  unshare --net="$NODE2_NETNS" true
  touch "$WIRE_NETNS"
  unshare --net="$WIRE_NETNS" true
  ip link add "$NODE_LINK" mtu "$UNDERLAY_MTU" type veth peer name node1 mtu "$UNDERLAY_MTU" netns "$WIRE_NETNS"
  wire ip link add node2 mtu "$UNDERLAY_MTU" type veth peer name eth0 mtu "$UNDERLAY_MTU" netns "$NODE2_NETNS"
  wire ip link add wire type bridge
  wire ip link set node1 master wire up
  wire ip link set node2 master wire up
  wire ip link set wire up
  ip addr add "$NODE_IP/$UNDERLAY_PREFIX" dev "$NODE_LINK"
  ip link set "$NODE_LINK" up
  n2 ip link set lo up
  n2 ip addr add "$NODE2_IP/$UNDERLAY_PREFIX" dev eth0
  n2 ip link set eth0 up
  # no default route on node 2: nothing of it can leave the host
  n2 sysctl -qw net.ipv4.ip_forward=1
  log "underlay: $NODE_LINK $NODE_IP/$UNDERLAY_PREFIX (node 1) <-> bridge wire (netns $WIRE_NETNS) <-> eth0 $NODE2_IP/$UNDERLAY_PREFIX (node 2, netns $NODE2_NETNS)"
}

routing() {
  local mode=$1
  ip route del "$POD2_CIDR" 2>/dev/null || true
  n2 ip route del "$POD_CIDR" 2>/dev/null || true
  ip link del "$VXLAN_DEV" 2>/dev/null || true
  n2 ip link del "$VXLAN_DEV" 2>/dev/null || true
  case $mode in
  hostgw)
    ip route replace "$POD2_CIDR" via "$NODE2_IP" dev "$NODE_LINK"
    n2 ip route replace "$POD_CIDR" via "$NODE_IP" dev eth0
    ;;
  vxlan)
    # flannel's vxlan backend: VTEP with the node's underlay address, the pod subnet's .0/32 on it,
    # no learning; per remote node a route <cidr> via <cidr>.0 onlink, a permanent neighbour
    # <cidr>.0 -> remote VTEP MAC, an FDB entry remote VTEP MAC -> remote node address
    local v1=${POD_CIDR%/*} v2=${POD2_CIDR%/*} m1 m2
    ip link add "$VXLAN_DEV" type vxlan id "$VXLAN_VNI" local "$NODE_IP" dev "$NODE_LINK" dstport "$VXLAN_PORT" nolearning
    n2 ip link add "$VXLAN_DEV" type vxlan id "$VXLAN_VNI" local "$NODE2_IP" dev eth0 dstport "$VXLAN_PORT" nolearning
    ip link set "$VXLAN_DEV" mtu 1500 up
    n2 ip link set "$VXLAN_DEV" mtu 1500 up
    ip addr add "$v1/32" dev "$VXLAN_DEV"
    n2 ip addr add "$v2/32" dev "$VXLAN_DEV"
    m1=$(cat "/sys/class/net/$VXLAN_DEV/address")
    m2=$(n2 ip -o link show "$VXLAN_DEV" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
    ip neigh replace "$v2" lladdr "$m2" dev "$VXLAN_DEV" nud permanent
    bridge fdb append "$m2" dev "$VXLAN_DEV" dst "$NODE2_IP" self permanent
    ip route replace "$POD2_CIDR" via "$v2" dev "$VXLAN_DEV" onlink
    n2 ip neigh replace "$v1" lladdr "$m1" dev "$VXLAN_DEV" nud permanent
    n2 bridge fdb append "$m1" dev "$VXLAN_DEV" dst "$NODE_IP" self permanent
    n2 ip route replace "$POD_CIDR" via "$v1" dev "$VXLAN_DEV" onlink
    ;;
  none) ;;
  *) die "routing: want vxlan, hostgw or none, not $mode" ;;
  esac
  echo "$mode" >"$E2E_STATE/routing"
  log "routing between the nodes: $mode"
}

up() {
  local s
  s=$(date +%s%3N)
  mkdir -p "$NODE2_STATE"/{containerd,kubelet,cni/net.d,cni/networks,pod-logs,config,host,sysfs}
  # cgroup root of node 2's kubelet, in every v1 hierarchy (cpuset needs cpus and mems)
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h$NODE2_CGROUP" ] && continue
    mkdir "$h$NODE2_CGROUP"
    if [ -f "${h}cpuset.cpus" ]; then
      cat "${h}cpuset.cpus" >"$h$NODE2_CGROUP/cpuset.cpus"
      cat "${h}cpuset.mems" >"$h$NODE2_CGROUP/cpuset.mems"
    fi
  done
  # the bind-mount points must exist on the shared root filesystem (node 1 made them, normally)
  for p in $HOST_PATHS; do [ -e "$p" ] || mkdir -p "$p"; done

  NODE_STATE=$NODE2_STATE NODE_NAME=$NODE2_NAME NODE_IP=$NODE2_IP POD_CIDR=$POD2_CIDR POD_GW=$POD2_GW \
    render "$HERE/config/containerd.toml.in" "$NODE2_STATE/config/containerd.toml"
  NODE_STATE=$NODE2_STATE NODE_NAME=$NODE2_NAME NODE_IP=$NODE2_IP POD_CIDR=$POD2_CIDR POD_GW=$POD2_GW \
    render "$HERE/config/cni.conflist.in" "$NODE2_STATE/cni/net.d/10-podtrace-e2e.conflist"
  NODE_STATE=$NODE2_STATE NODE_NAME=$NODE2_NAME NODE_IP=$NODE2_IP POD_CIDR=$POD2_CIDR POD_GW=$POD2_GW \
    render "$HERE/config/kubelet.yaml.in" "$NODE2_STATE/config/kubelet.yaml"
  echo "cgroupRoot: /$NODE2_CGROUP" >>"$NODE2_STATE/config/kubelet.yaml"
  mkkubeconfig "$NODE2_STATE/kubelet.kubeconfig" "system:node:$NODE2_NAME" "$(static_token 4)"

  # runs once inside node 2's namespaces: private mounts, then the daemons (they keep the namespaces)
  cat >"$NODE2_STATE/enter.sh" <<EOF
#!/bin/bash
set -euo pipefail
# copies of the host's mounts node 2 must not pin: node 1's pod mounts, every network namespace
awk '{for (i = 7; \$i != "-"; i++); print \$5, \$(i + 1)}' /proc/self/mountinfo | while read -r m fs; do
  case "\$m" in "$E2E_STATE"/*) echo "\$m" ;; *) [ "\$fs" != nsfs ] || echo "\$m" ;; esac
done | sort -r | while read -r m; do umount -l "\$m" 2>/dev/null || true; done
for p in $HOST_PATHS; do d="$NODE2_STATE/host/\$(echo "\$p" | tr / _)"; mkdir -p "\$d"; mount --bind "\$d" "\$p"; done
# /sys/class/net as node 2 sees it (a sysfs mounted in its netns), keeping the host's /sys/fs/cgroup
mount -t sysfs sysfs-podtrace-e2e-node2 "$NODE2_STATE/sysfs"
mount --bind "$NODE2_STATE/sysfs/class/net" /sys/class/net
mount --bind "$NODE2_STATE/sysfs/devices/virtual/net" /sys/devices/virtual/net
umount -l "$NODE2_STATE/sysfs"
hostname "$NODE2_NAME"
setsid containerd --config "$NODE2_STATE/config/containerd.toml" >"$LOGS/node2-containerd.log" 2>&1 </dev/null 8>&- &
echo \$! >"$PIDS/node2-containerd.pid"
for i in \$(seq 1 150); do ctr --address "$CTR2_SOCK" version >/dev/null 2>&1 && break; sleep 0.2; done
for t in pause workload agent; do ctr --address "$CTR2_SOCK" -n k8s.io images import "$E2E_STATE/images/\$t.tar" >/dev/null; done
setsid "$(e2e_bindir)/kubelet" --config="$NODE2_STATE/config/kubelet.yaml" --kubeconfig="$NODE2_STATE/kubelet.kubeconfig" \\
  --root-dir="$NODE2_STATE/kubelet" --hostname-override="$NODE2_NAME" --node-ip="$NODE2_IP" --v=2 \\
  >"$LOGS/node2-kubelet.log" 2>&1 </dev/null 8>&- &
echo \$! >"$PIDS/node2-kubelet.pid"
EOF
  nsenter --net="$NODE2_NETNS" -- unshare --mount --uts --propagation private -- bash "$NODE2_STATE/enter.sh" 8>&-
  pid_alive node2-containerd || { tail -n 30 "$LOGS/node2-containerd.log" >&2; die "node 2's containerd did not start"; }
  log "node 2: containerd pid $(cat "$PIDS/node2-containerd.pid"), kubelet pid $(cat "$PIDS/node2-kubelet.pid"), images imported"
  # the namespaces of node 2, for down.sh (leftover processes) and check-clean.sh
  {
    echo "mnt $(readlink "/proc/$(cat "$PIDS/node2-containerd.pid")/ns/mnt")"
    echo "net $(readlink "/proc/$(cat "$PIDS/node2-containerd.pid")/ns/net")"
  } | tee "$E2E_STATE/node2-namespaces" >"$E2E_CACHE_ROOT/node2-namespaces"
  waitfor "node $NODE2_NAME Ready" 180 kc wait --for=condition=Ready "node/$NODE2_NAME" --timeout=2s ||
    { tail -n 30 "$LOGS/node2-kubelet.log" >&2; die "node 2 did not become Ready"; }
  routing "$ROUTING"
  s=$(( $(date +%s%3N) - s ))
  log "node 2 up in $(( s / 1000 )).$(( s % 1000 / 100 ))s (namespaces, containerd, images, kubelet, Ready, routing)"
}

down() {
  [ -e "$PIDS/node2-kubelet.pid" ] || [ -e "$PIDS/node2-containerd.pid" ] || [ -e "$E2E_STATE/node2-namespaces" ] || return 0
  local api=0
  pid_alive kube-apiserver && kc get --raw /readyz >/dev/null 2>&1 && api=1
  if [ "$api" = 1 ] && pid_alive node2-kubelet; then
    log "deleting node 2's pods"
    kc delete pods --all-namespaces --field-selector "spec.nodeName=$NODE2_NAME" --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1 ||
      log "some pods on node 2 did not go away in 60s; removing their containers directly"
  fi
  stop_pid node2-kubelet
  if pid_alive node2-containerd; then
    for c in $(ctr2_ tasks ls -q 2>/dev/null); do ctr2_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr2_ tasks ls -q 2>/dev/null); do ctr2_ tasks delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr2_ containers ls -q 2>/dev/null); do ctr2_ containers delete "$c" >/dev/null 2>&1 || true; done
  fi
  stop_pid node2-containerd
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTR2_SOCK( |\$)" 2>/dev/null || true); do
    log "killing node 2's leftover shim pid $p"; kill -9 "$p" 2>/dev/null || true
  done
  if [ -d "$NODE2_STATE/runc" ]; then
    for c in $("$RUNC" --root "$NODE2_STATE/runc" list -q 2>/dev/null || true); do
      log "killing node 2's leftover container $c"
      "$RUNC" --root "$NODE2_STATE/runc" kill -a "$c" KILL 2>/dev/null || true
      "$RUNC" --root "$NODE2_STATE/runc" delete -f "$c" 2>/dev/null || true
    done
  fi
  # anything else still inside node 2's mount or network namespace keeps its mounts and links alive
  local mnt net d
  mnt=$(sed -n 's/^mnt //p' "$E2E_STATE/node2-namespaces" 2>/dev/null || true)
  net=$(sed -n 's/^net //p' "$E2E_STATE/node2-namespaces" 2>/dev/null || true)
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" = $$ ] && continue
    if [ -n "$mnt" ] && [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$mnt" ] ||
      [ -n "$net" ] && [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$net" ]; then
      log "killing process ${d#/proc/} left in node 2's namespaces: $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null | cut -c1-80)"
      kill -9 "${d#/proc/}" 2>/dev/null || true
    fi
  done
  if [ "$api" = 1 ]; then
    # pods still bound to node 2 (no controller runs here to collect them), then the Node and its lease
    kc delete pods --all-namespaces --field-selector "spec.nodeName=$NODE2_NAME" --force --grace-period=0 >/dev/null 2>&1 || true
    kc delete node "$NODE2_NAME" --ignore-not-found --wait=true --timeout=30s >/dev/null 2>&1 || true
    kc -n kube-node-lease delete lease "$NODE2_NAME" --ignore-not-found >/dev/null 2>&1 || true
  fi
  rm -f "$E2E_STATE/node2-namespaces"
  log "node 2 stopped"
}

case ${1:-} in
link) link ;;
up) up ;;
routing) routing "${2:-}" ;;
down) down ;;
*) die "usage: $0 link|up|routing vxlan|hostgw|none|down" ;;
esac
