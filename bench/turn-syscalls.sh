#!/usr/bin/env bash
# turn-syscalls.sh — system calls per relayed packet, poosms's TURN relay
# and coturn side by side at the same offered rates: a figure that does
# not depend on how much CPU a loaded machine leaves the servers. Each
# server runs pinned to one CPU, the load tool (poosms-bench turn, 10
# allocations, each with a channel to an echoing peer) to the other; the
# servers take turns at each rate. The system calls are counted with
# `perf stat -e raw_syscalls:sys_enter,...` attached to the server for the
# whole step, and divided by the packets relayed in it (each echoed packet
# is relayed twice). The server's CPU seconds (user + system, from /proc)
# over the same window are shown too; on a loaded machine they are the
# noisy part.
#
# On a loaded machine how often a server gets its CPU decides how many
# datagrams wait per system call, so even the counts follow the load;
# --rt runs the servers and the load tool SCHED_FIFO (the kernel's RT
# throttling still leaves others 5 %), which takes the neighbours out of
# the figures for the few seconds of each step.
#
# Needs: root (perf tracepoints), Go, taskset, perf, coturn (turnserver).
# Loopback only; ports from --port-base (default 29000): base to base+13 and
# coturn's relay ports base+300 to base+499 (poosmsd's relay ports are ephemeral).
set -euo pipefail
. "$(dirname "$0")/turn-lib.sh"

RATES="500 2000 5000"
DURATION=5s
SIZE=200
SERVER_CPU=1
LOAD_CPU=0
BASE=29000
POOSMSD=""
BASELINE=""
RT=()
while [ $# -gt 0 ]; do
	case $1 in
	--rates) RATES=$2; shift 2 ;;          # packets/s per allocation (10 allocations)
	--duration) DURATION=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--server-cpu) SERVER_CPU=$2; shift 2 ;;
	--load-cpu) LOAD_CPU=$2; shift 2 ;;
	--port-base) BASE=$2; shift 2 ;;
	--poosmsd) POOSMSD=$2; shift 2 ;;      # a prebuilt poosmsd (default: build this tree)
	--baseline) BASELINE=$2; shift 2 ;;    # another poosmsd to run alongside, e.g. one built from main
	--rt) RT=(chrt -f "$2"); shift 2 ;;     # run servers and load tool SCHED_FIFO at this priority
	*) echo "usage: bench/turn-syscalls.sh [--rates \"R ...\"] [--duration D] [--size B] [--server-cpu N] [--load-cpu N] [--port-base P] [--poosmsd BIN] [--baseline BIN] [--rt PRIO]" >&2; exit 2 ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/turn-syscalls.XXXXXX)
SECRET=turn-syscalls-$$
P_TURN=$BASE CT_TURN=$((BASE + 4))
CT_RELAY_MIN=$((BASE + 300)) CT_RELAY_MAX=$((BASE + 499))
PIDS=()
trap cleanup EXIT
(cd "$ROOT" && go build -o "$TMP/poosms-bench" ./cmd/poosms-bench)
if [ -z "$POOSMSD" ]; then (cd "$ROOT" && go build -o "$TMP/poosmsd" ./cmd/poosmsd); POOSMSD=$TMP/poosmsd; fi
mkdir -p "$TMP/coturn"
start_poosmsd() { # binary dir port-offset
	mkdir -p "$2"
	"${RT[@]}" taskset -c "$SERVER_CPU" "$1" serve --data-dir "$2" --domain localhost --db sqlite \
		--registration closed --log-level warn --metrics-addr "" --s2s-addr "" \
		--c2s-addr "127.0.0.1:$((BASE + $3 + 1))" --c2s-tls-addr "" --http-addr "127.0.0.1:$((BASE + $3 + 2))" \
		--media-udp-addr "127.0.0.1:$((BASE + $3 + 3))" --media-tcp-addr "" \
		--turn-addr "127.0.0.1:$((BASE + $3))" --turn-secret "$SECRET" --turn-allow-peers 127.0.0.0/8 --turn-allow-self \
		--turn-max-allocations 1000 >"$2/server.log" 2>&1 &
	PIDS+=("$!")
}
start_poosmsd "$POOSMSD" "$TMP/poosms" 0
POOSMS=$!
SERVERS="poosms coturn"
if [ -n "$BASELINE" ]; then
	start_poosmsd "$BASELINE" "$TMP/baseline" 10
	BASEPID=$!
	SERVERS="poosms baseline coturn"
fi
start_coturn
PIDS+=("$COTURN")
wait_udp "$P_TURN" || { tail "$TMP/poosms/server.log" >&2; exit 1; }
[ -z "$BASELINE" ] || wait_udp "$((BASE + 10))" || { tail "$TMP/baseline/server.log" >&2; exit 1; }
wait_udp "$CT_TURN" || { tail "$TMP/coturn/stdout.log" >&2; exit 1; }

EVENTS=raw_syscalls:sys_enter
for s in recvmmsg sendmmsg recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait futex nanosleep sched_yield; do
	EVENTS=$EVENTS,syscalls:sys_enter_$s
done
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| offered | server | relayed pkts/s | loss % | syscalls per relayed pkt | recv | send | epoll | futex | other | CPU s user + sys | pkts per CPU-s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
	for s in $SERVERS; do
		case $s in
		poosms) port=$P_TURN pid=$POOSMS ;;
		baseline) port=$((BASE + 10)) pid=$BASEPID ;;
		*) port=$CT_TURN pid=$COTURN ;;
		esac
		read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
		perf stat -x, -e "$EVENTS" -p "$pid" -o "$TMP/perf.txt" &
		perf=$!
		sleep 0.3
		out=$("${RT[@]}" taskset -c "$LOAD_CPU" "$TMP/poosms-bench" turn --json --server "127.0.0.1:$port" --realm localhost \
			--secret "$SECRET" --allocations 10 --rate "$rate" --size "$SIZE" --duration "$DURATION" --progress 0 --pid "$pid")
		kill -INT "$perf"; wait "$perf" || true
		read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
		python3 - "$out" "$TMP/perf.txt" "$((rate * 10)) pkts/s" "$s" "$((u1 - u0))" "$((s1 - s0))" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
c = {}
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].isdigit():
        c[f[2].split(":")[-1].replace("sys_enter_", "")] = int(f[0])
n = d["received_at_peer"] + d["echoed_back"]
tot = c.get("sys_enter", 0)
recv = sum(c.get(k, 0) for k in ("recvmmsg", "recvfrom", "recvmsg"))
send = sum(c.get(k, 0) for k in ("sendmmsg", "sendto", "sendmsg"))
ep = c.get("epoll_wait", 0) + c.get("epoll_pwait", 0)
fx = c.get("futex", 0)
per = lambda x: "%.2f" % (x / n) if n else "—"
user, system = int(sys.argv[5]) / 100, int(sys.argv[6]) / 100  # clock ticks, over the whole step
cpu = user + system
print("| %s | %s | %.0f | %.1f | **%s** | %s | %s | %s | %s | %s | %.2f + %.2f | %s |" % (
    sys.argv[3], sys.argv[4], d["relayed_packets_per_second"], d["loss_percent"], per(tot), per(recv), per(send),
    per(ep), per(fx), per(tot - recv - send - ep - fx), user, system, "%.0f" % (n / cpu) if cpu else "—"))
PY
	done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
