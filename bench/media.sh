#!/usr/bin/env bash
# bench/media.sh: one SFU under `poosms-bench media`, the server pinned to
# one CPU and the load tool to the other, room shapes one after the other.
#
#   bench/media.sh [--target poosms|livekit] [--duration 10s] [--shapes "1x2+10 1x2+40"]
#
# poosms: builds this checkout's poosmsd (or runs POOSMSD=path), imports
# 200 accounts, ports 31222 (c2s), 31280 (http), 31282 (media, UDP),
# 31290 (pprof). livekit: installs livekit-server with `go install` at
# $LIVEKIT_VERSION (v1.13.5: the newest release whose go.mod has no
# replace directives, which `go install pkg@version` refuses; v1.13.6 and
# later replace pion with LiveKit forks the module proxy does not serve)
# into $LIVEKIT_BIN_DIR, runs it on loopback with ports 31380 (signal),
# 31381 (ICE-TCP) and 31382 (media, UDP), and drives it with the same
# publishers and subscribers through LiveKit's Go SDK (`--target livekit`).
# Prints one JSON result per shape and the load average before each.
# PROFILE=file saves a 10 s CPU profile of poosmsd during the last shape.
# PERFSTAT=prefix counts the server's system calls during each shape with
# `perf stat` (root) into prefix.SHAPE, and prints the server's user and
# system clock ticks over the shape. RT=prio runs the server and the load
# tool SCHED_FIFO at that priority (`chrt -f`, root), so that other jobs
# on the machine drop out of the figures. PORT_BASE (31200) moves every
# port above by the same offset, for two runs on one machine.
set -euo pipefail
TARGET=poosms
DURATION=10s
SHAPES="1x2+10 1x2+40"
SERVER_CPU=${SERVER_CPU:-1}
TOOL_CPU=${TOOL_CPU:-0}
LIVEKIT_VERSION=${LIVEKIT_VERSION:-v1.13.5}
PORT_BASE=${PORT_BASE:-31200}
RTCMD=()
if [ -n "${RT:-}" ]; then RTCMD=(chrt -f "$RT"); fi
LIVEKIT_BIN_DIR=${LIVEKIT_BIN_DIR:-$HOME/.cache/poosms-bench/livekit-$LIVEKIT_VERSION}
while [ $# -gt 0 ]; do
	case $1 in
	--target) TARGET=$2; shift 2 ;;
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
go build -o "$TMP/poosms-bench" ./cmd/poosms-bench
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
case $TARGET in
poosms)
	if [ -n "${POOSMSD:-}" ]; then cp "$POOSMSD" "$TMP/poosmsd"; else go build -o "$TMP/poosmsd" ./cmd/poosmsd; fi
	args=(--data-dir "$TMP/data" --domain localhost --db sqlite --registration closed --log-level warn
		--c2s-addr 127.0.0.1:$((PORT_BASE + 22)) --c2s-tls-addr "" --http-addr 127.0.0.1:$((PORT_BASE + 80)) --metrics-addr ""
		--debug-addr 127.0.0.1:$((PORT_BASE + 90)) --s2s-addr "" --scram-iterations 4096 --turn-addr ""
		--media-udp-addr 127.0.0.1:$((PORT_BASE + 82)) --media-tcp-addr "")
	mkdir -p "$TMP/data"
	{
		echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>"
		for ((i = 0; i < 200; i++)); do echo "<user name='bench$i' password='bench-password'/>"; done
		echo "</host></server-data>"
	} >"$TMP/accounts.xml"
	"$TMP/poosmsd" import "$TMP/accounts.xml" "${args[@]}" >"$TMP/import.log" 2>&1
	"${RTCMD[@]}" taskset -c "$SERVER_CPU" "$TMP/poosmsd" serve "${args[@]}" >"$TMP/server.log" 2>&1 &
	PID=$!
	wait_port $((PORT_BASE + 22))
	tool_args=(--addr 127.0.0.1:$((PORT_BASE + 22)))
	;;
livekit)
	if [ ! -x "$LIVEKIT_BIN_DIR/server" ]; then
		GOBIN=$LIVEKIT_BIN_DIR go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION"
	fi
	secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
	cat >"$TMP/livekit.yaml" <<YAML
port: $((PORT_BASE + 180))
bind_addresses: [127.0.0.1]
rtc:
  udp_port: $((PORT_BASE + 182))
  tcp_port: $((PORT_BASE + 181))
  node_ip: 127.0.0.1
  use_external_ip: false
  enable_loopback_candidate: true
keys:
  bench: $secret
logging:
  level: warn
YAML
	"${RTCMD[@]}" taskset -c "$SERVER_CPU" "$LIVEKIT_BIN_DIR/server" --config "$TMP/livekit.yaml" >"$TMP/server.log" 2>&1 &
	PID=$!
	wait_port $((PORT_BASE + 180))
	tool_args=(--target livekit --livekit-url ws://127.0.0.1:$((PORT_BASE + 180)) --livekit-key bench --livekit-secret "$secret")
	;;
*) echo "--target is poosms or livekit" >&2; exit 2 ;;
esac
for shape in $SHAPES; do
	rooms=${shape%%x*}; rest=${shape#*x}; pubs=${rest%%+*}; subs=${rest#*+}
	echo "# $TARGET $shape: load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
	if [ -n "${PROFILE:-}" ] && [ "$TARGET" = poosms ] && [ "$shape" = "${SHAPES##* }" ]; then
		(sleep "${PROFILE_DELAY:-15}" && curl -s -o "$PROFILE" "http://127.0.0.1:$((PORT_BASE + 90))/debug/pprof/profile?seconds=10") &
	fi
	perf=
	if [ -n "${PERFSTAT:-}" ]; then
		perf stat -x, -o "$PERFSTAT.$shape" -p "$PID" -e raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep &
		perf=$!
		read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$PID/stat")
	fi
	"${RTCMD[@]}" taskset -c "$TOOL_CPU" "$TMP/poosms-bench" media "${tool_args[@]}" --rooms "$rooms" --publishers "$pubs" \
		--subscribers "$subs" --simulcast --duration "$DURATION" --pid "$PID" --json
	if [ -n "$perf" ]; then
		read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$PID/stat")
		echo "# server clock ticks during $shape: user $((u1 - u0)) system $((s1 - s0))"
		kill -INT "$perf"
		wait "$perf" || true
	fi
done
tail -5 "$TMP/server.log" >&2 || true
