#!/bin/bash
# Prove that the end-to-end cluster left nothing behind: no process, netns, link, mount,
# cgroup, iptables chain, listening port or host path of the harness, and the sysctls
# back at the values recorded before the cluster came up. Exits 1 and lists what is left.
set -euo pipefail
E2E_SCRIPT=check-clean
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BASE=$HOST_BASELINE
[ -f "$BASE" ] || BASE=/dev/null
baseline() { grep -q "^$*\$" "$BASE"; }
bad=0
problem() { log "LEFT: $*"; bad=1; }

# state directory
[ ! -e "$E2E_STATE" ] || problem "state directory $E2E_STATE"

# processes: any that names the state dir or the cached binaries, or lives in a kubelet pod cgroup
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = $$ ] && continue
  { cmd=$(tr '\0' ' ' <"$d/cmdline"); } 2>/dev/null || continue
  # a zombie holds no resources; a reaper may take a moment to collect it
  [ "$(awk '{print $3}' "$d/stat" 2>/dev/null)" = Z ] && continue
  case "$cmd" in
    *"$E2E_STATE"* | *"$E2E_CACHE_ROOT/k8s-"* | *"$E2E_CACHE_ROOT/kube-network-policies-"*) problem "process $p: $cmd" ;;
  esac
  if grep -qE ":/($NODE2_CGROUP(/|\$)|kubepods(/|\$)|k8s\.io(/|\$))" "$d/cgroup" 2>/dev/null; then
    problem "process $p in a pod cgroup: $cmd"
  fi
done

# processes still in the second node's network or mount namespace (recorded when it came up)
if [ -f "$E2E_CACHE_ROOT/node2-namespaces" ]; then
  while read -r kind ns; do
    for d in /proc/[0-9]*; do
      [ "$(readlink "$d/ns/$kind" 2>/dev/null)" = "$ns" ] &&
        problem "process ${d#/proc/} in node 2's $kind namespace: $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)"
    done
  done <"$E2E_CACHE_ROOT/node2-namespaces"
fi

# mounts (pod netns bind mounts, overlay rootfs, shm, volumes) under the state dir or host paths we create
while read -r m fstype; do
  case "$m" in "$E2E_STATE" | "$E2E_STATE"/*) problem "mount $m ($fstype)" ;; esac
  for p in $HOST_PATHS; do
    baseline "absent-path $p" || continue
    case "$m" in "$p" | "$p"/*) problem "mount $m ($fstype)" ;; esac
  done
done < <(awk '{for (i = 7; $i != "-"; i++); print $5, $(i + 1)}' /proc/self/mountinfo)

# network namespaces of pods: containerd names them cni-<uuid>
for n in /var/run/netns/cni-*; do [ -e "$n" ] && problem "netns $n"; done
# an nsfs mount anywhere whose path names the harness
while read -r l; do problem "netns mount $l"; done < <(grep ' nsfs ' /proc/self/mountinfo | grep -e "$E2E_STATE" -e '/cni-' || true)

# links
for l in cni0 "$NODE_LINK" "$VXLAN_DEV"; do
  baseline "absent-link $l" && ip link show "$l" >/dev/null 2>&1 && problem "link $l"
done
# host-side pod veths made by the bridge plugin are named veth<8 hex digits>
while read -r v; do problem "link $v (a pod veth)"; done < <(ip -o link show type veth 2>/dev/null |
  awk -F'[ :@]+' '{print $2}' | grep -E '^veth[0-9a-f]{8}$' || true)

# the route to node 2's pods (host-gw or through the VTEP)
[ -z "$(ip route show "$POD2_CIDR" 2>/dev/null)" ] || problem "route $(ip route show "$POD2_CIDR")"

# cgroups
for g in $CGROUPS; do
  baseline "absent-cgroup $g" || continue
  for h in /sys/fs/cgroup/*/"$g"; do [ -e "$h" ] && problem "cgroup $h"; done
done

# iptables chains
for ipt in iptables ip6tables; do
  for t in filter nat mangle; do
    baseline "absent-kube-chains $ipt $t" || continue
    c=$("$ipt-save" -t "$t" 2>/dev/null | grep '^:KUBE-' | cut -d' ' -f1 | tr '\n' ' ' || true)
    [ -z "$c" ] || problem "$ipt -t $t chains $c"
  done
done

# kube-proxy's nftables tables
for f in ip ip6; do
  baseline "absent-nft-table $f kube-proxy" || continue
  nft list table "$f" kube-proxy >/dev/null 2>&1 && problem "nft table $f kube-proxy"
done

# the NetworkPolicy engine's nftables table (its NFQUEUE rules)
if baseline "absent-nft-table inet kube-network-policies"; then
  nft list table inet kube-network-policies >/dev/null 2>&1 && problem "nft table inet kube-network-policies"
fi

# listening ports of etcd, the API server, the kubelet, kube-proxy (healthz, metrics), the
# NetworkPolicy engine (metrics)
for port in 2379 2380 2381 6443 10248 10250 10249 10256 "$KNP_METRICS_PORT"; do
  ss -Htln "sport = :$port" | grep -q . && problem "something listens on port $port"
done

# host paths
for p in $HOST_PATHS; do baseline "absent-path $p" && [ -e "$p" ] && problem "path $p"; done

# sysctls
while read -r _ k v; do
  [ "$(sysctl -n "$k")" = "$v" ] || problem "sysctl $k=$(sysctl -n "$k"), was $v"
done < <(grep '^sysctl ' "$BASE" || true)

if [ "$bad" = 0 ]; then
  log "clean: no process, mount, netns, link, cgroup, iptables chain, nft table, port or path of the harness is left"
  [ "$BASE" != /dev/null ] || log "(no baseline recorded at $HOST_BASELINE: host paths and sysctls not compared)"
fi
exit "$bad"
