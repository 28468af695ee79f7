#!/usr/bin/env bash
# watch-memory.sh — a watch's memory against its length: figures, not assertions.
# Run as root from anywhere in the repository:
#
#   sudo bench/watch-memory.sh              # ROUNDS="50 500 1000", INTERVAL=100ms
#
# For each number of rounds it runs `kubectl-podtrace lab --watch --count N --interval I -o json`
# (a fresh bridge lab each time, torn down by the command) under /usr/bin/time and prints the
# rounds shown, the verdict, the plugin's peak RSS, its CPU time and the bytes it received from
# the agents. A watch folds each round into its table and drops it, so the peak RSS should not
# grow with the rounds; the bytes received do (each round's frames cross the stream).
# Environment: ROUNDS, INTERVAL, PODTRACE_BIN (default: build into a temporary directory).
set -euo pipefail

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "watch-memory.sh: needs root (network namespaces, veth, AF_PACKET)" >&2
	exit 1
fi
[ -x /usr/bin/time ] || { echo "watch-memory.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }
ROUNDS=${ROUNDS:-50 500 1000}
INTERVAL=${INTERVAL:-100ms}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
BIN=${PODTRACE_BIN:-}
if [ -z "$BIN" ]; then
	BIN=$W/bin
	CGO_ENABLED=0 go build -o "$BIN/kubectl-podtrace" ./cmd/kubectl-podtrace
	CGO_ENABLED=0 go build -o "$BIN/podtrace-agent" ./cmd/podtrace-agent
fi

printf '%-7s %-8s %-10s %-13s %-10s %s\n' rounds shown verdict "peak RSS" "CPU s" received
for n in $ROUNDS; do
	/usr/bin/time -v -o "$W/time" "$BIN/kubectl-podtrace" lab --watch --count "$n" --interval "$INTERVAL" -o json \
		--agent-binary "$BIN/podtrace-agent" >"$W/out" 2>"$W/err" || true
	shown=$(grep -c '"kind":"round"' "$W/out" || true)
	verdict=$(tail -n1 "$W/out" | sed -n 's/.*"kind":"verdict","result":"\([a-z-]*\)".*/\1/p')
	rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/time")
	cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u+s}' "$W/time")
	recv=$(sed -n 's/^podtrace: received \([^ ]* [^ ]*\) from.*/\1/p' "$W/err")
	printf '%-7s %-8s %-10s %-13s %-10s %s\n' "$n" "$shown" "${verdict:-?}" "${rss} KiB" "$cpu" "${recv:-?}"
done
