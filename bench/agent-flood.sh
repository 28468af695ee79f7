#!/usr/bin/env bash
# agent-flood.sh — figures for the capture agent, not assertions.
# Run as root from anywhere in the repository:
#
#   sudo bench/agent-flood.sh
#
# It builds the binaries (make build into a scratch directory, or takes
# them from $PODTRACE_BIN), creates two network namespaces joined by a veth
# pair (unique prefix, removed on exit), floods the pair with UDP from one
# static sender (bench/udpflood, 32 datagrams per sendmmsg) and prints:
#  (a) packets/s the agent captures, and its kernel drops, next to
#      `tcpdump -i VETH -w /dev/null` on the same veth in the same run: at
#      the sender's full rate, then at lower paced rates until the agent
#      drops nothing;
#  (b) agent CPU% and RSS with a filter that matches the flood and with one
#      that matches nothing;
#  (c) `kubectl-podtrace lab` wall time to the verdict (5 runs, min/median);
#  (d) agent binary size, decode and encode cost per packet, and summary
#      mode's cost per packet (go test -bench; cpu-ns is the process's CPU
#      time, ns the wall time);
#  (e) passive mode at the sender's full rate, one line per packet (the
#      agent as (a) runs it: --summarize-above 0) against per-flow summaries
#      (--summarize-above 500, what passive traces pass): packets/s
#      captured and kernel drops next to tcpdump's in the same run, agent
#      CPU and RSS, and the bytes per second the agent streamed;
#  (f) the plugin on the same flood: `kubectl-podtrace local --passive`
#      between the two namespaces, with --summarize-above 0 and with the
#      default: bytes the agents streamed to it, -o json size, its peak RSS
#      (GNU time) and the agents' kernel drops.
# Environment: FLOOD_SECONDS (default 5), LAB_RUNS (default 5),
# PODTRACE_BIN (directory holding kubectl-podtrace and podtrace-agent),
# RATES (the paced rates tried, highest first, until one has no agent drops).
# On a small machine the sender, tcpdump, the agent and the kernel share the
# cores: the figures vary from run to run; run it several times.
set -euo pipefail

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "agent-flood.sh: needs root (network namespaces, veth, AF_PACKET)" >&2
	exit 1
fi
command -v tcpdump >/dev/null || { echo "agent-flood.sh: tcpdump not found" >&2; exit 1; }

DUR=${FLOOD_SECONDS:-5}
LAB_RUNS=${LAB_RUNS:-5}
P=pfl$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n') # not a lab prefix: `lab --cleanup` leaves it alone
NSA=$P-src NSB=$P-dst NSN=$P-node VA=$P-a VB=$P-b
SRC=10.203.0.1 DST=10.203.0.2
W=$(mktemp -d)
PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	ip netns del "$NSA" 2>/dev/null || true
	ip netns del "$NSB" 2>/dev/null || true
	ip netns del "$NSN" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# reap PID: wait for a process this script started and forget it.
reap() {
	local pid rc=0 keep=()
	wait "$1" || rc=$?
	for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
	PIDS=("${keep[@]}")
	return "$rc"
}

# --- binaries ---------------------------------------------------------------
if [ -n "${PODTRACE_BIN:-}" ]; then
	BIN=$PODTRACE_BIN
else
	BIN=$W/bin
	log "building: make build BIN=<scratch>"
	make -s build BIN="$BIN" >&2
fi
AGENT=$BIN/podtrace-agent
CGO_ENABLED=0 go build -trimpath -o "$W/udpflood" ./bench/udpflood

# --- namespaces ---------------------------------------------------------------
ip netns add "$NSA"
ip netns add "$NSB"
ip netns add "$NSN" # an empty "node" for (f): the plugin's node agent watches nothing of this host
ip link add "$VA" type veth peer name "$VB"
ip link set "$VA" netns "$NSA"
ip link set "$VB" netns "$NSB"
ip -n "$NSA" addr add "$SRC/24" dev "$VA"
ip -n "$NSB" addr add "$DST/24" dev "$VB"
for ns in "$NSA" "$NSB"; do ip -n "$ns" link set lo up; done
ip -n "$NSA" link set "$VA" up
ip -n "$NSB" link set "$VB" up
# Frames go to a MAC nobody owns: the receiving veth sees them (otherhost)
# and its IP stack discards them at once, so the receive side's cost is
# mostly the capture, and no replies flow back.
ip -n "$NSA" neigh replace "$DST" lladdr 02:00:00:00:00:99 dev "$VA" nud permanent

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
now_ns() { date +%s%N; }

# wait_for FILE PATTERN: until a line matches (10 s at most).
wait_for() {
	local i
	for i in $(seq 100); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	log "timed out waiting for '$2' in $1:"
	cat "$1" >&2 || true
	return 1
}

# start_agent NAME HOSTS [AGENT ARGS...]: agent in the receiving namespace;
# its stream goes through a FIFO to grep, which keeps every line but the
# packets. With COUNT_BYTES=1, tee counts the stream's bytes on the way
# (into NAME.bytes).
start_agent() {
	local name=$1 hosts=$2
	shift 2
	mkfifo "$W/$name.fifo"
	local in=$W/$name.fifo
	COUNT_PID=
	if [ "${COUNT_BYTES:-0}" = 1 ]; then
		mkfifo "$W/$name.fifo2"
		in=$W/$name.fifo2
	fi
	grep -F -v --line-buffered '"kind":"packet"' <"$in" >"$W/$name.out" &
	GREP_PID=$!
	PIDS+=("$GREP_PID")
	if [ "${COUNT_BYTES:-0}" = 1 ]; then
		tee "$W/$name.fifo2" <"$W/$name.fifo" | wc -c >"$W/$name.bytes" &
		COUNT_PID=$!
		PIDS+=("$COUNT_PID")
	fi
	"$AGENT" --netns "$NSB" --role pod --id bench --hosts "$hosts" --deadline 300s "$@" \
		>"$W/$name.fifo" 2>"$W/$name.err" </dev/null &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
	wait_for "$W/$name.out" '"kind":"hello"'
}

stop_agent() {
	kill -TERM "$AGENT_PID"
	reap "$AGENT_PID" || log "agent exited $?: $(cat "$W/$1.err")"
	[ -z "$COUNT_PID" ] || reap "$COUNT_PID" || true
	reap "$GREP_PID" || true
}

# stats FILE FIELD: a field of the agent's stats line.
stats() { grep -F '"kind":"stats"' "$1" | sed -E "s/.*\"$2\":([0-9]+).*/\1/;t;s/.*/0/"; }

start_tcpdump() {
	ip netns exec "$NSB" tcpdump -i "$VB" -w /dev/null 2>"$W/$1.td" &
	TD_PID=$!
	PIDS+=("$TD_PID")
	wait_for "$W/$1.td" 'listening on'
}

stop_tcpdump() {
	kill -INT "$TD_PID"
	reap "$TD_PID" || true
}

td_field() { sed -nE "s/^([0-9]+) packets? $2.*/\1/p" "$1" | head -1; }

# flood NAME [PPS]: one sender for DUR seconds; prints nothing, leaves
# the sender's line in NAME.flood and the CPU/RSS samples in NAME.res.
flood() {
	local pps=${2:-0} c0 c1 t0 t1
	c0=$(cpu_ticks "$AGENT_PID")
	t0=$(now_ns)
	ip netns exec "$NSA" "$W/udpflood" --dst "$DST" --duration "${DUR}s" --pps "$pps" >"$W/$1.flood"
	t1=$(now_ns)
	c1=$(cpu_ticks "$AGENT_PID")
	echo "$(((c1 - c0) * 1000000000 / TCK)) $((t1 - t0)) $(status_kb "$AGENT_PID" VmRSS) $(status_kb "$AGENT_PID" VmHWM)" >"$W/$1.res"
	sleep 1.2 # let the last ring blocks retire (tcpdump hands over partly filled ones after 1 s)
}

sender_pps() { sed -nE 's/.*: ([0-9]+) pps.*/\1/p' "$1"; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b > 0 ? 100 * a / b : 0) }'; }
per_s() { awk -v n="$1" -v s="$DUR" 'BEGIN { printf "%.0f", n / s }'; }

# --- (a) agent vs tcpdump, full rate then paced down until no drops ---------------
ROWS_A=()
run_a() { # NAME PPS
	start_agent "$1" "$SRC,$DST" --summarize-above 0
	start_tcpdump "$1"
	flood "$1" "$2"
	stop_tcpdump
	stop_agent "$1"
	local sent pk dr tc tk cpu_ns el rss hwm
	sent=$(sender_pps "$W/$1.flood")
	pk=$(stats "$W/$1.out" packets)
	dr=$(stats "$W/$1.out" drops)
	tc=$(td_field "$W/$1.td" captured)
	tk=$(td_field "$W/$1.td" 'dropped by kernel')
	read -r cpu_ns el rss hwm <"$W/$1.res"
	local rate=$2
	[ "$rate" = 0 ] && rate=max
	ROWS_A+=("$(printf '%-10s %10s %12s %10s %12s %10s %6s%% %8s' \
		"$rate" "$sent" "$(per_s $((pk - dr)))" "$dr" "$(per_s "$tc")" "$tk" \
		"$(pct "$cpu_ns" "$el")" "$((hwm / 1024))MiB")")
	AGENT_DROPS=$dr
	MATCH_RES="$cpu_ns $el $rss $hwm"
}

log "(a) flood ${DUR}s at full rate, agent (filter matches) + tcpdump on $VB"
run_a full 0
MATCH_FULL=$MATCH_RES
RATES=${RATES:-400000 300000 250000 200000 150000 100000 50000 25000 12500}
ZERO_DROP="none down to ${RATES##* } pps"
[ "$AGENT_DROPS" = 0 ] && ZERO_DROP="full rate"
for pps in $RATES; do
	[ "$AGENT_DROPS" = 0 ] && break
	log "(a) flood ${DUR}s paced at $pps pps"
	run_a "p$pps" "$pps"
	[ "$AGENT_DROPS" = 0 ] && ZERO_DROP="$pps pps"
done

# --- (b) filter matching nothing -------------------------------------------------
log "(b) flood ${DUR}s at full rate, agent filter matches nothing"
start_agent none "10.203.9.1,10.203.9.2" --summarize-above 0
flood none 0
stop_agent none
read -r N_CPU N_EL N_RSS N_HWM <"$W/none.res"
N_SENT=$(sender_pps "$W/none.flood")
N_PK=$(stats "$W/none.out" packets)
read -r M_CPU M_EL M_RSS M_HWM <<<"$MATCH_FULL"

# --- (e) passive at full rate: one line per packet against summaries ---------------
ROWS_E=()
run_e() { # NAME LABEL AGENT-ARGS...
	local name=$1 label=$2
	shift 2
	COUNT_BYTES=1 start_agent "$name" "$SRC,$DST" "$@"
	start_tcpdump "$name"
	flood "$name" 0
	stop_tcpdump
	stop_agent "$name"
	local sent pk dr sm em tc tk cpu_ns el rss hwm bytes
	sent=$(sender_pps "$W/$name.flood")
	pk=$(stats "$W/$name.out" packets)
	dr=$(stats "$W/$name.out" drops)
	sm=$(stats "$W/$name.out" summarized)
	em=$(stats "$W/$name.out" emitted)
	tc=$(td_field "$W/$name.td" captured)
	tk=$(td_field "$W/$name.td" 'dropped by kernel')
	bytes=$(tr -d ' ' <"$W/$name.bytes")
	read -r cpu_ns el rss hwm <"$W/$name.res"
	ROWS_E+=("$(printf '%-22s %10s %12s %10s %12s %10s %6s%% %12s %8s %10s %12s' \
		"$label" "$sent" "$(per_s $((pk - dr)))" "$dr" "$(per_s "$tc")" "$tk" \
		"$(pct "$cpu_ns" "$el")" "$(per_s "$bytes")" "$((hwm / 1024))MiB" "$em" "$sm")")
}
log "(e) flood ${DUR}s at full rate, agent one line per packet + tcpdump"
run_e epp "per packet (before)" --summarize-above 0
log "(e) flood ${DUR}s at full rate, agent summarizing + tcpdump"
run_e esum "summaries (after)" --summarize-above 500

# --- (f) the plugin, passive, on the flood ----------------------------------------
ROWS_F=()
run_f() { # NAME LABEL SUMMARIZE-ABOVE
	local name=$1 label=$2 above=$3 fpid rss=? streamed out drops
	ip netns exec "$NSA" "$W/udpflood" --dst "$DST" --duration "$((DUR + 5))s" >"$W/$name.flood" &
	fpid=$!
	PIDS+=("$fpid")
	sleep 0.5
	local timer=()
	[ -x /usr/bin/time ] && timer=(/usr/bin/time -f %M -o "$W/$name.rss")
	"${timer[@]}" "$BIN/kubectl-podtrace" local --from "$NSA" --to "$NSB" --node-netns "$NSN" --passive --duration "${DUR}s" \
		--summarize-above "$above" --agent-binary "$AGENT" --save "$W/$name.rec" -o json >"$W/$name.json" 2>"$W/$name.err" ||
		log "plugin exited $?: $(tail -3 "$W/$name.err")"
	reap "$fpid" || true
	[ -s "$W/$name.rss" ] && rss="$(($(tail -1 "$W/$name.rss") / 1024))MiB"
	streamed=$(cat "$W/$name.rec"/*.jsonl | wc -c)
	out=$(wc -c <"$W/$name.json")
	drops=$(cat "$W/$name.rec"/*.jsonl | awk -F'"drops":' '/"kind":"stats"/ { split($2, a, /[^0-9]/); n += a[1] } END { print n + 0 }')
	ROWS_F+=("$(printf '%-22s %10s %14s %12s %10s %12s' "$label" "$(sender_pps "$W/$name.flood")" "$streamed" "$out" "$rss" "$drops")")
}
log "(f) kubectl-podtrace local --passive on the flood, one line per packet"
run_f fpp "per packet (before)" 0
log "(f) kubectl-podtrace local --passive on the flood, summaries"
run_f fsum "summaries (after)" 500

# --- (c) kubectl-podtrace lab ------------------------------------------------
log "(c) kubectl-podtrace lab x $LAB_RUNS"
VERDICT_MS=() TOTAL_MS=()
for i in $(seq "$LAB_RUNS"); do
	t0=$(now_ns)
	"$BIN/kubectl-podtrace" lab --agent-binary "$AGENT" 2>&1 | while IFS= read -r line; do
		case $line in
		*verdict*) echo $((($(now_ns) - t0) / 1000000)) >"$W/lab.verdict" ;;
		esac
		printf '%s\n' "$line" >>"$W/lab.out"
	done
	TOTAL_MS+=($((($(now_ns) - t0) / 1000000)))
	[ -s "$W/lab.verdict" ] || { log "no verdict line:"; cat "$W/lab.out" >&2; exit 1; }
	VERDICT_MS+=("$(cat "$W/lab.verdict")")
	rm -f "$W/lab.verdict"
done
minmed() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "min %d ms, median %d ms", v[1], v[int((NR + 1) / 2)] }'; }

# --- (d) size and decode cost -----------------------------------------------
SIZE=$(stat -c %s "$AGENT")
LINK=$(file -b "$AGENT" | grep -o 'statically linked' || echo 'dynamically linked')
log "(d) go test -run '^\$' -bench . -benchmem ./pkg/decode/ ./pkg/wire/ ./pkg/flowsum/"
BENCH=$(go test -run '^$' -bench . -benchmem ./pkg/decode/ ./pkg/wire/ ./pkg/flowsum/ | awk '/^Benchmark/ {
	sub(/-[0-9]+$/, "", $1)
	for (i = 3; i < NF; i += 2) v[$(i + 1)] = $i
	printf "  %-24s %8s ns %8s cpu-ns %6s B %4s allocs per packet\n", $1, v["ns/op"], v["cpu-ns/op"], v["B/op"], v["allocs/op"]
}')

# --- table ----------------------------------------------------------------------
echo
echo "podtrace-agent under a UDP flood (64 B payload, ${DUR}s, veth $VB, $(nproc) CPUs)"
echo
echo "(a) capture, agent (filter matches the flood) vs tcpdump -w /dev/null, same run"
printf '%-10s %10s %12s %10s %12s %10s %7s %8s\n' "rate" "sender/s" "agent cap/s" "agent drop" "tcpdump/s" "td drop" "agent%" "agentRSS"
printf '%s\n' "${ROWS_A[@]}"
echo "  highest rate tried with zero agent drops: $ZERO_DROP"
echo
echo "(b) agent CPU and memory over the flood"
printf '  filter matches flood:   CPU %s%% of one core, VmRSS %d MiB, VmHWM %d MiB (sender %s pps)\n' \
	"$(pct "$M_CPU" "$M_EL")" $((M_RSS / 1024)) $((M_HWM / 1024)) "$(sender_pps "$W/full.flood")"
printf '  filter matches nothing: CPU %s%% of one core, VmRSS %d MiB, VmHWM %d MiB (sender %s pps, kernel passed %s)\n' \
	"$(pct "$N_CPU" "$N_EL")" $((N_RSS / 1024)) $((N_HWM / 1024)) "$N_SENT" "$N_PK"
echo
echo "(c) kubectl-podtrace lab, $LAB_RUNS runs"
echo "  start to verdict: $(minmed "${VERDICT_MS[@]}")"
echo "  whole command:    $(minmed "${TOTAL_MS[@]}") (with teardown)"
echo
echo "(d) podtrace-agent binary: $SIZE bytes ($((SIZE / 1024)) KiB), $LINK"
echo "  decode (pkg/decode), encode+write (pkg/wire) and summary mode's flow key + count (pkg/flowsum) cost:"
printf '%s\n' "$BENCH"
echo
echo "(e) passive at the sender's full rate: one line per packet vs per-flow summaries, each next to tcpdump -w /dev/null in the same run"
printf '%-22s %10s %12s %10s %12s %10s %7s %12s %8s %10s %12s\n' "agent mode" "sender/s" "agent cap/s" "agent drop" "tcpdump/s" "td drop" "agent%" "streamed B/s" "agentRSS" "pkt lines" "summarized"
printf '%s\n' "${ROWS_E[@]}"
echo
echo "(f) kubectl-podtrace local --passive --duration ${DUR}s on the flood (an agent in each namespace, and one in an empty node namespace)"
printf '%-22s %10s %14s %12s %10s %12s\n' "agents" "sender/s" "streamed B" "-o json B" "pluginRSS" "agent drops"
printf '%s\n' "${ROWS_F[@]}"
