#!/usr/bin/env bash
# node-sessions.sh: how many authenticated TLS sessions one poosmsd node
# holds and what each costs in resident memory. Builds poosmsd and
# poosms-bench, makes the accounts once (SQLite, SCRAM at 4,096
# iterations; the data directory is kept in ~/.cache/poosms-bench and
# copied for each run), starts poosmsd pinned to CPU 1 and logs the
# sessions in from CPU 0 over two worker processes and four loopback
# source addresses, holds them, and prints poosms-bench's report (RSS per
# session, logins/s, server CPU, open files).
#
#   bench/node-sessions.sh [--sessions 19000] [--hold 20s] [-- extra poosmsd flags, e.g. --gc-percent 100]
#
# POOSMSD=path runs a given poosmsd binary instead of building one. Ports
# 37222, 37280 and 37282 on 127.0.1.1. Everything it starts it stops.
set -euo pipefail

SESSIONS=19000 HOLD=20s
while [ $# -gt 0 ]; do
	case $1 in
	--sessions) SESSIONS=$2; shift 2 ;;
	--hold) HOLD=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "unknown argument $1 (server flags go after --)" >&2; exit 2 ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/poosms-node-sessions.XXXXXX)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/poosms-bench/accounts-$SESSIONS
PID=
log() { echo "$(date -u +%H:%M:%S) $*" >&2; }
cleanup() {
	if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

log "building"
if [ -n "${POOSMSD:-}" ]; then cp "$POOSMSD" "$TMP/poosmsd"; else (cd "$ROOT" && go build -o "$TMP/poosmsd" ./cmd/poosmsd); fi
(cd "$ROOT" && go build -o "$TMP/poosms-bench" ./cmd/poosms-bench)

if [ ! -f "$CACHE/done" ]; then
	log "making $SESSIONS accounts once, into $CACHE"
	rm -rf "$CACHE" && mkdir -p "$CACHE"
	{
		echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>"
		for ((i = 0; i < SESSIONS; i++)); do echo "<user name='bench$i' password='bench-password'/>"; done
		echo "</host></server-data>"
	} >"$TMP/accounts.xml"
	"$TMP/poosmsd" import "$TMP/accounts.xml" --data-dir "$CACHE/data" --scram-iterations 4096 >"$TMP/import.log" 2>&1
	touch "$CACHE/done"
fi
cp -a "$CACHE/data" "$TMP/data"

log "starting poosmsd on CPU 1: $*"
taskset -c 1 "$TMP/poosmsd" serve --data-dir "$TMP/data" --db sqlite --registration closed --log-level warn \
	--c2s-addr 127.0.1.1:37222 --c2s-tls-addr "" --http-addr 127.0.1.1:37280 --metrics-addr "" \
	--scram-iterations 4096 --s2s-addr "" --turn-addr "" --media-udp-addr 127.0.1.1:37282 --media-tcp-addr "" \
	--idle-timeout 30m "$@" >"$TMP/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.1.1/37222) 2>/dev/null && break
	kill -0 "$PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
	sleep 0.1
done

log "logging in $SESSIONS sessions from CPU 0 (load average $(cut -d' ' -f1-3 /proc/loadavg))"
per=$(((SESSIONS + 1) / 2))
taskset -c 0 "$TMP/poosms-bench" sessions --addr 127.0.1.1:37222 --sessions "$SESSIONS" --per-process "$per" \
	--sources 127.0.1.10-127.0.1.13 --hold "$HOLD" --progress 10s --pid "$PID"
log "done (load average $(cut -d' ' -f1-3 /proc/loadavg))"
