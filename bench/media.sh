#!/usr/bin/env bash
# bench/media.sh: poosms's SFU under `poosms-bench media`, the server pinned
# to one CPU and the load tool to the other, room shapes one after the
# other. Usage: bench/media.sh [--duration 10s] [--shapes "1x2+10 1x2+40"]
# Ports: 31222 (c2s), 31280 (http), 31282 (media, UDP), 31290 (pprof).
# Prints one JSON result per shape and the load average before each.
# POOSMSD=path runs that server binary instead of building this checkout's
# (to compare two builds in one run); PROFILE=file saves a 10 s CPU profile
# of the server taken during the last shape.
set -euo pipefail
DURATION=10s
SHAPES="1x2+10 1x2+40"
SERVER_CPU=${SERVER_CPU:-1}
TOOL_CPU=${TOOL_CPU:-0}
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--shapes) SHAPES=$2; shift 2 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/.."
TMP=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
if [ -n "${POOSMSD:-}" ]; then cp "$POOSMSD" "$TMP/poosmsd"; else go build -o "$TMP/poosmsd" ./cmd/poosmsd; fi
go build -o "$TMP/poosms-bench" ./cmd/poosms-bench
args=(--data-dir "$TMP/data" --domain localhost --db sqlite --registration closed --log-level warn
	--c2s-addr 127.0.0.1:31222 --c2s-tls-addr "" --http-addr 127.0.0.1:31280 --metrics-addr "" --debug-addr 127.0.0.1:31290 --s2s-addr ""
	--scram-iterations 4096 --turn-addr "" --media-udp-addr 127.0.0.1:31282 --media-tcp-addr "")
mkdir -p "$TMP/data"
{
	echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>"
	for ((i = 0; i < 200; i++)); do echo "<user name='bench$i' password='bench-password'/>"; done
	echo "</host></server-data>"
} >"$TMP/accounts.xml"
"$TMP/poosmsd" import "$TMP/accounts.xml" "${args[@]}" >"$TMP/import.log" 2>&1
taskset -c "$SERVER_CPU" "$TMP/poosmsd" serve "${args[@]}" >"$TMP/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/31222) 2>/dev/null && break; sleep 0.1; done
for shape in $SHAPES; do
	rooms=${shape%%x*}; rest=${shape#*x}; pubs=${rest%%+*}; subs=${rest#*+}
	echo "# $shape: load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
	if [ -n "${PROFILE:-}" ] && [ "$shape" = "${SHAPES##* }" ]; then
		(sleep "${PROFILE_DELAY:-15}" && curl -s -o "$PROFILE" "http://127.0.0.1:31290/debug/pprof/profile?seconds=10") &
	fi
	taskset -c "$TOOL_CPU" "$TMP/poosms-bench" media --addr 127.0.0.1:31222 --rooms "$rooms" --publishers "$pubs" \
		--subscribers "$subs" --simulcast --duration "$DURATION" --pid "$PID" --json
done
tail -5 "$TMP/server.log" >&2 || true
