# lib-node.sh — sourced by the bench scripts that measure a node agent on a
# "node" of network namespaces (kernel-drops.sh, node-agent-resources.sh):
# a bridge br0 in namespace $NODE with two veth ports, each the peer of a
# "pod" namespace's eth0 ($NSA holds $SRC, $NSB holds $DST, both /24).
#
#   bench_node NAME PREFIX SRC DST   checks root, sets NODE NSA NSB SRC DST,
#                                    W (a scratch dir), PIDS, AGENT (built
#                                    unless PODTRACE_BIN names a directory),
#                                    $W/udpflood (bench/udpflood), TCK; builds the
#                                    topology; removes all of it on exit
#   log, cpu_ticks PID, status_kb PID FIELD
# shellcheck shell=bash

log() { printf '%s\n' "$*" >&2; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

bench_cleanup() {
	local pid ns
	for pid in "${PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for ns in "$NSA" "$NSB" "$NODE"; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$W"
}

bench_node() {
	local name=$1 prefix=$2
	if [ "$(id -u)" != 0 ]; then
		echo "$name: needs root (network namespaces, veth, AF_PACKET)" >&2
		exit 1
	fi
	P=$prefix$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
	NODE=$P-node NSA=$P-a NSB=$P-b
	SRC=$3 DST=$4
	W=$(mktemp -d)
	PIDS=()
	trap bench_cleanup EXIT
	local bin
	if [ -n "${PODTRACE_BIN:-}" ]; then
		bin=$PODTRACE_BIN
	else
		bin=$W/bin
		make -s build BIN="$bin" >&2
	fi
	AGENT=$bin/podtrace-agent
	CGO_ENABLED=0 go build -trimpath -o "$W/udpflood" ./bench/udpflood
	TCK=$(getconf CLK_TCK)

	local ns pair addr i=0
	for ns in "$NODE" "$NSA" "$NSB"; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	ip -n "$NODE" link add br0 type bridge
	ip -n "$NODE" link set br0 up
	for pair in "$NSA:$SRC" "$NSB:$DST"; do
		ns=${pair%%:*} addr=${pair#*:}
		i=$((i + 1))
		ip -n "$NODE" link add "veth$i" type veth peer name eth0 netns "$ns"
		ip -n "$NODE" link set "veth$i" master br0 up
		ip -n "$ns" addr add "$addr/24" dev eth0
		ip -n "$ns" link set eth0 up
	done
}
