#!/usr/bin/env bash
# nftrace.sh — what netfilter tracing costs a trace: figures, not assertions.
# Run as root from anywhere in the repository:
#
#   sudo bench/nftrace.sh            # N=10 traces each way
#
# It builds the binaries (or takes them from $PODTRACE_BIN), keeps one routed lab
# (`kubectl-podtrace lab --topology routed --keep`, removed on exit) whose node forwards
# between the pods, and loads the node with a large rule set: RULES rules in an nftables
# forward chain that the probe crosses to the end (none matches it but the last, which
# accepts it: the agent fetches and renders that chain), as a busy node's would be.
#
#   1. time to verdict: N ICMP probes pod-a → pod-b with --nftrace (the default) and N with
#      --nftrace=false, alternating, in the same run; medians and ranges of the plugin's
#      wall time (start to verdict, agents started and stopped included);
#   2. agent CPU beside a flood: the same, with a UDP flood pod-a → pod-b:9000 at FLOOD pps
#      crossing the RULES rules, N each way: medians of the CPU time (user+sys) of the plugin
#      and its agents, and the trace events the node agent counted (the probe's, and other
#      packets': only the probe's packets may be traced).
# Environment: N (10), RULES (2000), FLOOD (20000, 0 = the flood tool's ceiling), PODTRACE_BIN.
set -euo pipefail

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "nftrace.sh: needs root (network namespaces, nftables)" >&2
	exit 1
fi
[ -x /usr/bin/time ] || { echo "nftrace.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }
command -v nft >/dev/null || { echo "nftrace.sh: nft not found (apt-get install nftables)" >&2; exit 1; }

N=${N:-10}
RULES=${RULES:-2000}
FLOOD=${FLOOD:-20000}
W=$(mktemp -d)
PREFIX=
FLOOD_PID=
log() { printf '%s\n' "$*" >&2; }

cleanup() {
	[ -n "$FLOOD_PID" ] && { kill -TERM "$FLOOD_PID" 2>/dev/null || true; wait "$FLOOD_PID" 2>/dev/null || true; }
	if [ -n "$PREFIX" ]; then
		for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do ip netns del "$ns" || true; done
	fi
	rm -rf "$W"
}
trap cleanup EXIT

if [ -n "${PODTRACE_BIN:-}" ]; then
	BIN=$PODTRACE_BIN
else
	BIN=$W/bin
	log "building this checkout"
	make -s build BIN="$BIN" >&2
fi
CGO_ENABLED=0 go build -trimpath -o "$W/udpflood" ./bench/udpflood

"$BIN/kubectl-podtrace" lab --topology routed --keep --color never >"$W/lab.out" 2>&1 || { cat "$W/lab.out" >&2; exit 1; }
PREFIX=$(sed -nE 's/.*building the routed lab ([a-z0-9]+).*/\1/p' "$W/lab.out" | head -1)
[ -n "$PREFIX" ] || { log "no lab prefix in:"; cat "$W/lab.out" >&2; exit 1; }
A=$PREFIX-pod-a B=$PREFIX-pod-b NODE=$PREFIX-node1
DST=$(ip -n "$B" -4 -o addr show | awk '$2 != "lo" { split($4, a, "/"); print a[1]; exit }')

# The node's rule set: RULES rules that do not match the lab's traffic, then one that
# accepts traffic to pod-b.
{
	echo "table inet pt_bench {"
	echo "  chain big_forward {"
	echo "    type filter hook forward priority 0; policy accept;"
	for i in $(seq 1 "$RULES"); do
		printf '    ip saddr 192.0.%d.%d tcp dport %d drop\n' $((i / 250 % 250)) $((i % 250 + 1)) $((1000 + i % 60000))
	done
	echo "    ip daddr $DST counter accept"
	echo "  }"
	echo "}"
} >"$W/ruleset.nft"
ip netns exec "$NODE" nft -f "$W/ruleset.nft"
log "node $NODE: $(ip netns exec "$NODE" nft list ruleset | grep -c ' drop$') drop rules and one accept in inet pt_bench big_forward"

# trace ON|OFF TAG: one ICMP probe; prints "wall_ms cpu_s result events other".
trace() {
	local flag=--nftrace=true out=$W/$2
	[ "$1" = OFF ] && flag=--nftrace=false
	local t0 t1
	t0=$(date +%s%N)
	/usr/bin/time -f '%U %S' -o "$out.time" "$BIN/kubectl-podtrace" local --from "$A" --to "$B" --node-netns "$NODE" \
		--agent-binary "$BIN/podtrace-agent" -o json "$flag" >"$out.json" 2>"$out.err" || true
	t1=$(date +%s%N)
	local u s result events other
	read -r u s < <(tail -n 1 "$out.time")
	result=$(tail -n 1 "$out.json" | sed -nE 's/.*"result":"([a-z-]+)".*/\1/p' || true)
	# absent from the stats without --nftrace, and when zero
	events=$(head -n 1 "$out.json" | grep -oE '"nftraceEvents":[0-9]+' | awk -F: '{ s += $2 } END { print s + 0 }' || true)
	other=$(head -n 1 "$out.json" | grep -oE '"nftraceOther":[0-9]+' | awk -F: '{ s += $2 } END { print s + 0 }' || true)
	printf '%d %s %s %s %s\n' $(((t1 - t0) / 1000000)) "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.3f", u + s }')" \
		"${result:-error}" "${events:-0}" "${other:-0}"
}

# median COLUMN FILE; range COLUMN FILE
median() { awk -v c="$1" '{ print $c }' "$2" | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
range() { awk -v c="$1" '{ print $c }' "$2" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }

run() { # LABEL: N traces each way, alternating
	local label=$1
	: >"$W/$label.ON" && : >"$W/$label.OFF"
	for i in $(seq 1 "$N"); do
		for m in ON OFF; do
			trace "$m" "$label-$m-$i" >>"$W/$label.$m"
		done
	done
}

log "time to verdict: $N traces with --nftrace, $N without, alternating"
run idle
ip netns exec "$A" "$W/udpflood" --dst "$DST" --port 9000 --pps "$FLOOD" --duration 3600s >"$W/flood.out" &
FLOOD_PID=$!
sleep 1
log "beside a UDP flood pod-a → pod-b:9000 at $FLOOD pps (0: the ceiling) through the $RULES rules: $N traces each way"
run busy
kill -TERM "$FLOOD_PID"
wait "$FLOOD_PID" || true
FLOOD_PID=
log "flood: $(cat "$W/flood.out")"

echo
echo "one ICMP probe pod-a → pod-b across a routed node with $RULES nftables rules in its forward path; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-28s %-9s %14s %14s %10s %10s %12s %12s\n' "" nftrace "verdict ms" "(range)" "CPU s" "(range)" "results" "events/other"
for label in idle busy; do
	for m in ON OFF; do
		f=$W/$label.$m
		what="idle"
		[ "$label" = busy ] && what="beside a $FLOOD pps flood"
		printf '%-28s %-9s %14s %14s %10s %10s %12s %12s\n' "$what" "$m" "$(median 1 "$f")" "$(range 1 "$f")" "$(median 2 "$f")" "$(range 2 "$f")" \
			"$(awk '{ print $3 }' "$f" | sort | uniq -c | awk '{ printf "%s%s×%s", sep, $1, $2; sep = "," }')" \
			"$(awk '{ e += $4; o += $5 } END { printf "%d/%d", e, o }' "$f")"
	done
done
echo "  verdict ms: wall time of kubectl-podtrace local, start to exit (medians over $N, same run, alternating);"
echo "  CPU s: user+sys of the plugin and its agents; events/other: trace events the node agent counted over"
echo "  the $N runs (the probe's / other packets': the flood crosses the same rules and must never be traced)"
