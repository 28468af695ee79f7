#!/bin/bash
# Tear down what up.sh made: the processes it started (by recorded PID), pods and their
# containers, links, mounts, cgroups, iptables chains, host paths it created; restore sysctls;
# remove $E2E_STATE. The built Kubernetes binaries stay cached. Safe to run twice.
set -euo pipefail
E2E_SCRIPT=down
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
cluster_lock
if [ ! -d "$E2E_STATE" ]; then log "nothing to do ($E2E_STATE does not exist)"; exit 0; fi
BASE=$E2E_STATE/host-baseline
[ -f "$BASE" ] || BASE=/dev/null
baseline() { grep -q "^$*\$" "$BASE"; }

stop() { stop_pid "$@"; }

# 0. the NetworkPolicy engine on both nodes and its nftables table, kube-proxy on both nodes and
#    its rules, the controller manager; then the second node, while the API server runs: its pods,
#    daemons, leftovers, its Node
"$HERE/netpol.sh" down
"$HERE/proxy.sh" down
stop kube-controller-manager
"$HERE/node2.sh" down

# 1. pods go away through the API while the kubelet runs: CNI DEL releases veths and addresses
if pid_alive kube-apiserver && pid_alive kubelet && curl -sf http://127.0.0.1:10248/healthz >/dev/null 2>&1; then
  log "deleting all pods"
  kc delete pods --all --all-namespaces --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1 ||
    log "some pods did not go away in 60s; removing their containers directly"
fi
stop kubelet

# 2. whatever is left: stop sandboxes through containerd, then through runc (ours has its own root)
if pid_alive containerd; then
  for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
  for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true; done
  for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
fi
stop kube-apiserver
stop containerd
stop etcd
# shims are children of containerd that outlive it; ours name our socket on their command line
for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTR_SOCK( |\$)" 2>/dev/null || true); do
  log "killing leftover shim pid $p"; kill -9 "$p" 2>/dev/null || true
done
if [ -d "$E2E_STATE/runc" ]; then
  for c in $("$RUNC" --root "$E2E_STATE/runc" list -q 2>/dev/null || true); do
    log "killing leftover container $c"
    "$RUNC" --root "$E2E_STATE/runc" kill -a "$c" KILL 2>/dev/null || true
    "$RUNC" --root "$E2E_STATE/runc" delete -f "$c" 2>/dev/null || true
  done
fi
# processes left in the cgroups the kubelet and containerd made (their shim is gone): SIGKILL by pid
cgroup_pids() {
  local g
  for g in $CGROUPS; do
    baseline "absent-cgroup $g" || continue
    if [ -d "/sys/fs/cgroup/pids/$g" ]; then
      find "/sys/fs/cgroup/pids/$g" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    fi
  done | sort -un
}
left=$(cgroup_pids)
if [ -n "$left" ]; then
  log "killing processes left in pod cgroups: $(echo $left)"
  for p in $left; do kill -9 "$p" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do [ -z "$(cgroup_pids)" ] && break; sleep 0.2; done
fi

# 3. mounts under the state dir and the host paths we created (netns, overlays, shm, volumes), deepest first
mounts_left() {
  local roots="$E2E_STATE" p
  for p in $HOST_PATHS; do baseline "absent-path $p" && roots="$roots $p"; done
  awk '{print $5}' /proc/self/mountinfo | while read -r m; do
    for r in $roots; do case "$m" in "$r" | "$r"/*) echo "$m" ;; esac; done
  done | sort -r
}
# (unmounting a parent can take its submounts along: try each, report what is still there after)
for m in $(mounts_left); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
for m in $(mounts_left); do log "cannot unmount $m"; done

# 4. links: the routes and the VTEP between the nodes (node 2's own links went with its network
#    namespace: unmounted above, no process left in it), pod veths on cni0 (normally gone with their netns), cni0 and the node link if we made them
if ip link show cni0 >/dev/null 2>&1 && baseline "absent-link cni0"; then
  for v in $(ip -o link show master cni0 2>/dev/null | awk -F'[ :@]+' '{print $2}'); do ip link del "$v" 2>/dev/null || true; done
  ip link del cni0 && log "deleted cni0"
fi
ip route del "$POD2_CIDR" 2>/dev/null && log "deleted the route to $POD2_CIDR"
if ip link show "$VXLAN_DEV" >/dev/null 2>&1 && baseline "absent-link $VXLAN_DEV"; then
  ip link del "$VXLAN_DEV" && log "deleted $VXLAN_DEV"
fi
if ip link show "$NODE_LINK" >/dev/null 2>&1 && baseline "absent-link $NODE_LINK"; then
  ip link del "$NODE_LINK" && log "deleted $NODE_LINK"
fi

# 5. cgroups the kubelet and containerd made (cgroup v1, cgroupfs driver), empty ones only
for g in $CGROUPS; do
  baseline "absent-cgroup $g" || continue
  for h in /sys/fs/cgroup/*/"$g"; do
    [ -d "$h" ] || continue
    for ((i = 0; i < 10; i++)); do
      find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ -d "$h" ] || break
      sleep 0.2
    done
    if [ -d "$h" ]; then log "cgroup $h is not empty"; fi
  done
done

# 6. iptables chains the kubelet made (KUBE-*), in tables that had none before
for ipt in iptables ip6tables; do
  for t in filter nat mangle; do
    baseline "absent-kube-chains $ipt $t" || continue
    while read -r _ rule; do
      eval "$ipt -t $t -D $rule" 2>/dev/null || true
    done < <("$ipt-save" -t "$t" 2>/dev/null | grep -E '^-A [^ ]+ .*-j KUBE-' || true)
    chains=$("$ipt-save" -t "$t" 2>/dev/null | grep '^:KUBE-' | cut -d' ' -f1 | tr -d : || true)
    for c in $chains; do "$ipt" -t "$t" -F "$c" 2>/dev/null || true; done
    for c in $chains; do "$ipt" -t "$t" -X "$c" 2>/dev/null || true; done
    [ -z "$chains" ] || log "removed $ipt $t chains: $(echo $chains)"
  done
done

# 6b. kube-proxy's nftables tables (nftables mode) that a crashed run left behind
for f in ip ip6; do
  baseline "absent-nft-table $f kube-proxy" || continue
  if nft list table "$f" kube-proxy >/dev/null 2>&1; then nft delete table "$f" kube-proxy && log "removed nft table $f kube-proxy"; fi
done

# 7. sysctls the kubelet and the bridge plugin changed
while read -r _ k v; do
  [ "$(sysctl -n "$k")" = "$v" ] || { sysctl -qw "$k=$v"; log "restored $k=$v"; }
done < <(grep '^sysctl ' "$BASE" || true)

# 8. files: refuse to delete through a mount that is still there
left=$(mounts_left)
[ -z "$left" ] || die "mounts still present, not removing files: $left"
for p in $HOST_PATHS; do
  if baseline "absent-path $p" && [ -e "$p" ]; then rm -rf --one-file-system "$p"; log "removed $p"; fi
done
rm -rf --one-file-system "$E2E_STATE"
log "removed $E2E_STATE; down in ${SECONDS}s"
