#!/usr/bin/env bash
# node-agent-resources.sh — what a node agent costs under a flood: the figures
# behind the node agent pod's resource requests and limits (pkg/kube/build.go,
# deploy/README.md). Figures, not assertions. Run as root:
#
#   sudo bench/node-agent-resources.sh
#
# It builds a "node" out of network namespaces: a bridge with two veth ports,
# each the peer of a "pod" namespace's eth0. One pod floods the other with
# UDP (bench/udpflood, full rate) to a MAC nobody owns, so the bridge floods
# every frame to all its ports: the node agent sees each frame on the source
# veth, the bridge and the destination veth. The agent runs as the plugin runs
# it on a node (--role node, interfaces chosen by itself), its stream read
# through a pipe, in three ways:
#   trace:   an active trace's probe-scoped filter (the flood is dropped in the kernel);
#   passive: a --filter that admits the flood, per-flow summaries above
#            500 frames/s (what `kubectl podtrace --passive` passes);
#   lines:   the same filter, one line per frame (--summarize-above 0), the
#            stream capped by the default byte budget.
# For each: CPU time over the flood as a share of one core, peak VmRSS (which
# counts the capture rings the kernel maps in: not charged to the pod's memory
# cgroup), peak RssAnon (the Go heap and stacks: what the memory limit bounds),
# frames captured and dropped by the kernel (the agent's last stats line),
# and the sender's rate. Environment: FLOOD_SECONDS (default 10), PODTRACE_BIN
# (a directory holding podtrace-agent; default: make build into a scratch dir).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-node.sh
. bench/lib-node.sh
DUR=${FLOOD_SECONDS:-10}
bench_node node-agent-resources.sh pnr 10.204.0.1 10.204.0.2
# a MAC nobody owns: the bridge floods every frame to every port
ip -n "$NSA" neigh replace "$DST" lladdr 02:00:00:00:00:99 dev eth0 nud permanent

# measure NAME AGENT-ARGS...: start the agent, flood, print one line of figures.
measure() {
	local name=$1
	shift
	mkfifo "$W/$name.fifo"
	tee -p >(grep -q -m1 -F '"kind":"hello"' && : >"$W/$name.hello") >(grep -F '"kind":"stats"' >"$W/$name.stats") \
		<"$W/$name.fifo" | wc -c >"$W/$name.bytes" &
	local wc_pid=$!
	PIDS+=("$wc_pid")
	"$AGENT" --netns "$NODE" --role node --id node --node bench --hosts "$SRC,$DST" --deadline 300s "$@" \
		>"$W/$name.fifo" 2>"$W/$name.err" </dev/null &
	local pid=$!
	PIDS+=("$pid")
	# armed once it said hello
	local n
	for n in $(seq 300); do
		[ -e "$W/$name.hello" ] && break
		sleep 0.1
	done
	[ -e "$W/$name.hello" ] || { log "$name: no hello in 30 s: $(tail -3 "$W/$name.err")"; return 1; }
	local c0 c1 anon=0 a
	c0=$(cpu_ticks "$pid")
	ip netns exec "$NSA" "$W/udpflood" --dst "$DST" --duration "${DUR}s" >"$W/$name.flood" &
	local fl=$!
	PIDS+=("$fl")
	while kill -0 "$fl" 2>/dev/null; do
		a=$(status_kb "$pid" RssAnon)
		[ "${a:-0}" -gt "$anon" ] && anon=$a
		sleep 0.2
	done
	wait "$fl" || true
	c1=$(cpu_ticks "$pid")
	local hwm rss
	hwm=$(status_kb "$pid" VmHWM)
	rss=$(status_kb "$pid" VmRSS)
	kill -TERM "$pid"
	wait "$pid" || log "$name: agent exited $?: $(tail -3 "$W/$name.err")"
	wait "$wc_pid" || true
	local pps
	pps=$(sed -nE 's/.*: ([0-9]+) pps.*/\1/p' "$W/$name.flood")
	local st pk dr
	for n in $(seq 50); do # the stats reader is a process substitution: let it finish
		grep -q -F '"socket":"all"' "$W/$name.stats" 2>/dev/null && break
		sleep 0.1
	done
	st=$(grep -F '"socket":"all"' "$W/$name.stats" | tail -1)
	pk=$(sed -nE 's/.*"packets":([0-9]+).*/\1/p' <<<"$st")
	dr=$(sed -nE 's/.*"drops":([0-9]+).*/\1/p' <<<"$st")
	printf '%-8s captured %9s dropped %9s  ' "$name" "${pk:-?}" "${dr:-?}"
	printf 'CPU %4s%% of one core  VmHWM %4d MiB  VmRSS %4d MiB  RssAnon peak %3d MiB  stream %6.1f KiB/s  sender %s pps\n' \
		"$(awk -v t="$((c1 - c0))" -v k="$TCK" -v d="$DUR" 'BEGIN { printf "%.0f", 100 * t / k / d }')" \
		$((hwm / 1024)) $((rss / 1024)) $((anon / 1024)) \
		"$(awk -v b="$(cat "$W/$name.bytes")" -v d="$DUR" 'BEGIN { printf "%.1f", b / 1024 / d }')" "${pps:-?}"
}

echo "node agent, ${DUR}s UDP flood across a bridge (3 capture points), $(nproc) cores"
measure trace --trace-probe icmp --count 3 --probe-id 4711
measure passive --filter udp --summarize-above 500
measure lines --filter udp --summarize-above 0
