#!/usr/bin/env bash
# kernel-drops.sh — what --kernel-drops costs a node agent while a busy flow is
# dropped: the eBPF program's build, load and attach time, and the agent's CPU
# and memory with and without it. Figures, not assertions. Run as root:
#
#   sudo bench/kernel-drops.sh
#
# A "node" of network namespaces: a bridge with two veth ports, each the peer of
# a "pod" namespace's eth0. An nftables rule in pod b's namespace drops UDP to
# port 9000, and pod a floods that port at full rate (bench/udpflood): every
# datagram is freed by the kernel as NETFILTER_DROP, so the program on
# skb:kfree_skb runs for each and filters it out in the kernel (the flood is not
# the probe: its source port differs). The node agent runs as the plugin runs it
# in an active UDP trace (--trace-probe udp), without and with --kernel-drops,
# its stream read through a pipe. For each: the program's load time (hello),
# CPU time over the flood as a share of one core, peak VmRSS and RssAnon, the
# program's counters (stats: examined, matched), and the sender's rate (the
# program runs in the sender's softirq: a cost there shows as a lower rate).
# Environment: FLOOD_SECONDS (default 10), PODTRACE_BIN (a directory holding
# podtrace-agent; default: make build into a scratch dir).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-node.sh
. bench/lib-node.sh
command -v nft >/dev/null || { echo "kernel-drops.sh: needs nft (apt-get install nftables)" >&2; exit 1; }
DUR=${FLOOD_SECONDS:-10}
bench_node kernel-drops.sh pkd 10.205.0.1 10.205.0.2
ip netns exec "$NSB" nft 'add table inet bench; add chain inet bench in { type filter hook input priority 0; }; add rule inet bench in udp dport 9000 drop'

# measure NAME AGENT-ARGS...: start the agent, flood, print one line of figures.
measure() {
	local name=$1
	shift
	mkfifo "$W/$name.fifo"
	tee -p >(grep -m1 -F '"kind":"hello"' >"$W/$name.hello") >(grep -F '"kind":"stats"' >"$W/$name.stats") \
		<"$W/$name.fifo" >/dev/null &
	local tee_pid=$!
	PIDS+=("$tee_pid")
	"$AGENT" --netns "$NODE" --role node --id node --node bench --hosts "$SRC,$DST" --deadline 300s \
		--trace-probe udp --probe-id 40000 --count 1 --port 9000 "$@" \
		>"$W/$name.fifo" 2>"$W/$name.err" </dev/null &
	local pid=$!
	PIDS+=("$pid")
	local n
	for n in $(seq 300); do
		[ -s "$W/$name.hello" ] && break
		sleep 0.1
	done
	[ -s "$W/$name.hello" ] || { log "$name: no hello in 30 s: $(tail -3 "$W/$name.err")"; return 1; }
	local load
	load=$(sed -nE 's/.*"kernelDrops":\{"armed":true,"loadTime":([0-9]+).*/\1/p' "$W/$name.hello")
	if grep -q -F '"kernelDrops":{"armed":false' "$W/$name.hello"; then
		log "$name: kernel drops not armed: $(sed -nE 's/.*"why":"([^"]*)".*/\1/p' "$W/$name.hello")"
		return 1
	fi
	local c0 c1 anon=0 a
	c0=$(cpu_ticks "$pid")
	ip netns exec "$NSA" "$W/udpflood" --dst "$DST" --port 9000 --duration "${DUR}s" >"$W/$name.flood" &
	local fl=$!
	PIDS+=("$fl")
	while kill -0 "$fl" 2>/dev/null; do
		a=$(status_kb "$pid" RssAnon)
		[ "${a:-0}" -gt "$anon" ] && anon=$a
		sleep 0.2
	done
	wait "$fl" || true
	c1=$(cpu_ticks "$pid")
	local hwm
	hwm=$(status_kb "$pid" VmHWM)
	kill -TERM "$pid"
	wait "$pid" || log "$name: agent exited $?: $(tail -3 "$W/$name.err")"
	wait "$tee_pid" || true
	local pps st ex ma
	pps=$(sed -nE 's/.*: ([0-9]+) pps.*/\1/p' "$W/$name.flood")
	for n in $(seq 50); do # the stats reader is a process substitution: let it finish
		grep -q -F '"socket":"all"' "$W/$name.stats" 2>/dev/null && break
		sleep 0.1
	done
	st=$(grep -F '"socket":"all"' "$W/$name.stats" | tail -1)
	ex=$(sed -nE 's/.*"examined":([0-9]+).*/\1/p' <<<"$st")
	ma=$(sed -nE 's/.*"matched":([0-9]+).*/\1/p' <<<"$st")
	printf '%-14s load %7s ms  CPU %4s%% of one core  VmHWM %3d MiB  RssAnon peak %3d MiB  drops examined %9s matched %s  sender %s pps\n' \
		"$name" "$(awk -v l="${load:-}" 'BEGIN { if (l == "") print "-"; else printf "%.1f", l / 1e6 }')" \
		"$(awk -v t="$((c1 - c0))" -v k="$TCK" -v d="$DUR" 'BEGIN { printf "%.1f", 100 * t / k / d }')" \
		$((hwm / 1024)) $((anon / 1024)) "${ex:--}" "${ma:--}" "${pps:-?}"
}

echo "node agent, ${DUR}s UDP flood dropped by an nftables rule, $(nproc) cores, $(uname -r)"
measure without
measure kernel-drops --kernel-drops
