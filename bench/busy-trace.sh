#!/usr/bin/env bash
# busy-trace.sh — what one probe costs beside a busy flow: figures, not assertions.
# Run as root from anywhere in the repository:
#
#   sudo bench/busy-trace.sh                 # this checkout
#   sudo bench/busy-trace.sh --before REF    # and REF (e.g. a tag) side by side, same lab, same run
#
# It builds the binaries (or takes them from $PODTRACE_BIN), keeps one bridge lab
# (`kubectl-podtrace lab --keep`, removed on exit), and for each stream rate from pod-a to
# pod-b (bench/udpflood; idle, then RATES, 0 = the flood tool's ceiling) traces one ICMP probe
# with `kubectl-podtrace local ... -o json --save DIR` and prints: the verdict, the JSON written,
# the bytes the agents streamed (the saved raw streams), the frames the busiest agent's kernel
# filter passed, the plugin's peak RSS and the CPU time of the plugin and its agents.
# Environment: RATES (default "1000 10000 0"), PODTRACE_BIN.
set -euo pipefail

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "busy-trace.sh: needs root (network namespaces, veth, AF_PACKET)" >&2
	exit 1
fi
[ -x /usr/bin/time ] || { echo "busy-trace.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }

BEFORE=
[ "${1:-}" = --before ] && BEFORE=${2:?--before needs a git ref}
RATES=${RATES:-1000 10000 0}
W=$(mktemp -d)
PREFIX=
FLOOD_PID=
log() { printf '%s\n' "$*" >&2; }

cleanup() {
	[ -n "$FLOOD_PID" ] && { kill -TERM "$FLOOD_PID" 2>/dev/null || true; wait "$FLOOD_PID" 2>/dev/null || true; }
	if [ -n "$PREFIX" ]; then
		for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do ip netns del "$ns" || true; done
	fi
	[ -d "$W/before-src" ] && git worktree remove --force "$W/before-src" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

# --- binaries ---------------------------------------------------------------
if [ -n "${PODTRACE_BIN:-}" ]; then
	NOW=$PODTRACE_BIN
else
	NOW=$W/now
	log "building this checkout"
	make -s build BIN="$NOW" >&2
fi
VERSIONS=(now)
if [ -n "$BEFORE" ]; then
	log "building $BEFORE"
	git worktree add -q --detach "$W/before-src" "$BEFORE"
	make -s -C "$W/before-src" build BIN="$W/before" >&2
	VERSIONS=(before now)
fi
bin_of() { [ "$1" = before ] && echo "$W/before" || echo "$NOW"; }
CGO_ENABLED=0 go build -trimpath -o "$W/udpflood" ./bench/udpflood

# --- the lab --------------------------------------------------------------------
"$NOW/kubectl-podtrace" lab --keep --color never >"$W/lab.out" 2>&1 || { cat "$W/lab.out" >&2; exit 1; }
PREFIX=$(sed -nE 's/.*building the bridge lab ([a-z0-9]+).*/\1/p' "$W/lab.out" | head -1)
[ -n "$PREFIX" ] || { log "no lab prefix in:"; cat "$W/lab.out" >&2; exit 1; }
A=$PREFIX-pod-a B=$PREFIX-pod-b N=$PREFIX-node1
DST=$(ip -n "$B" -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }')

# trace VERSION RATE: one probe beside the stream; one row.
trace() {
	local v=$1 rate=$2 bin out save passed
	bin=$(bin_of "$v")
	out=$W/$v-$rate
	save=$out.save
	/usr/bin/time -f '%M %U %S' -o "$out.time" "$bin/kubectl-podtrace" local --from "$A" --to "$B" --node-netns "$N" \
		--agent-binary "$bin/podtrace-agent" -o json --save "$save" >"$out.json" 2>"$out.err" || true
	local verdict json streamed rss u s
	verdict=$(tail -n 1 "$out.json" | sed -nE 's/.*"result":"([a-z-]+)".*/\1/p')
	json=$(stat -c %s "$out.json")
	streamed=$(cat "$save"/* 2>/dev/null | wc -c)
	passed=$(cat "$save"/* 2>/dev/null | grep -F '"kind":"stats"' | sed -nE 's/.*"packets":([0-9]+).*/\1/p' | sort -n | tail -1)
	read -r rss u s < <(tail -n 1 "$out.time")
	local r=$rate
	[ "$r" = 0 ] && r=ceiling
	printf '%-7s %-9s %-10s %10s %12s %10s %9s %8s\n' "$v" "$r" "${verdict:-error}" "$json" "$streamed" "${passed:-?}" \
		"$((rss / 1024))MiB" "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2fs", u + s }')"
}

ROWS=()
for v in "${VERSIONS[@]}"; do ROWS+=("$(trace "$v" idle)"); done
for rate in $RATES; do
	ip netns exec "$A" "$W/udpflood" --dst "$DST" --port 9000 --pps "$rate" --duration 600s >"$W/flood.$rate" &
	FLOOD_PID=$!
	sleep 1
	for v in "${VERSIONS[@]}"; do
		log "tracing ($v) beside a stream at ${rate} pps (0: the ceiling)"
		ROWS+=("$(trace "$v" "$rate")")
	done
	kill -TERM "$FLOOD_PID"
	wait "$FLOOD_PID" || true
	FLOOD_PID=
	log "stream: $(cat "$W/flood.$rate")"
done

echo
echo "one ICMP probe pod-a → pod-b (bridge lab) beside a UDP stream pod-a → pod-b:9000, $(nproc) CPUs"
printf '%-7s %-9s %-10s %10s %12s %10s %9s %8s\n' version "stream/s" verdict "JSON B" "streamed B" "passed" "peak RSS" "CPU"
printf '%s\n' "${ROWS[@]}"
echo "  streamed: bytes of every agent's raw stream (--save); passed: frames the busiest agent's kernel filter passed;"
echo "  CPU: user+sys of the plugin and the agents it ran"
