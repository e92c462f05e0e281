#!/usr/bin/env bash
# turn-ceiling.sh — poosms's TURN relay and coturn side by side, at rising
# offered rates until packets are lost, with two load tools: poosms-bench
# turn (raw ChannelData, an echoing peer) and coturn's turnutils_uclient
# (with turnutils_peer echoing). Each server runs pinned to one CPU and
# the load tools to the other; the servers take turns at each step, so
# both see the same machine. Prints Markdown tables: relayed packets per
# second, loss, server CPU-seconds (user + system, from /proc) and relayed
# packets per server CPU-second at each step, each server's against
# coturn's; then, per load tool, the same at the ceiling (coturn's first
# step with loss) and at each server's highest step without loss.
#
# One turnutils_uclient process offers only about 200–300 messages per
# second and session, and above about a hundred sessions it slows down
# itself, so the uclient steps run several processes side by side (each
# with --sessions sessions and its own turnutils_peer), --procs of them.
# turnutils_uclient does not delete its allocations when it ends, so both
# servers are restarted before each uclient step: otherwise the leftovers
# of earlier steps fill coturn's relay ports and later steps fail.
#
# A turnutils_uclient message costs the load CPU more than it costs a
# server, so the load CPU gives out (and the load tools lose packets)
# while a server still has most of its CPU idle. --server-share caps each
# server at a share of its CPU (a cgroup with a CPU quota, one per server,
# 10 ms period), which brings its ceiling within the load tools' reach;
# the relayed packets per CPU-second are then those of a server working at
# its limit, as on a busy host.
#
# Needs: Go, taskset, coturn (turnserver, turnutils_uclient,
# turnutils_peer; Debian package coturn). Loopback only; ports 34000–34999
# (--port-base moves them; poosmsd's relay ports are ephemeral).
set -euo pipefail
. "$(dirname "$0")/turn-lib.sh"

usage() {
	cat <<'EOF'
usage: bench/turn-ceiling.sh [options]
  --rates "R ..."      poosms-bench: packets/s per allocation, 10 allocations  [1000 3000 5000 7000 9000]
  --duration D         poosms-bench send time per step                        [5s]
  --procs "P ..."      turnutils_uclient: processes side by side per step     [1 2 4 8]
  --sessions N         turnutils_uclient: sessions per process (≤ 50), each
                       sending every 1 ms                                      [25]
  --messages N         turnutils_uclient messages per session                 [1500]
  --size B             payload bytes per packet                                [200]
  --server-cpu N       CPU the servers are pinned to                           [1]
  --load-cpu N         CPU the load tools and peers are pinned to              [0]
  --tools LIST         poosms-bench,uclient                                    [both]
  --baseline BIN       another poosmsd to run alongside (e.g. built from main)
  --poosmsd BIN        run this poosmsd as "poosms" instead of building one (for
                       A/B runs that swap the two builds between rounds)
  --rt PRIO            run servers, load tools and peers SCHED_FIFO at PRIO (root)
  --server-share PCT   cap each server at PCT % of its CPU (cgroup; root; not with --rt)
  --port-base P        first of 1000 ports (coturn relays: the last 900)        [34000]
EOF
}

RATES="1000 3000 5000 7000 9000"
PROCS="1 2 4 8"
SESSIONS=25
DURATION=5s
MESSAGES=1500
SIZE=200
SERVER_CPU=1
LOAD_CPU=0
TOOLS=poosms-bench,uclient
BASE=34000
BASELINE=""
POOSMSD=""
SHARE=""
RT=()
while [ $# -gt 0 ]; do
	case $1 in
	--rates) RATES=$2; shift 2 ;;
	--procs) PROCS=$2; shift 2 ;;
	--sessions) SESSIONS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--messages) MESSAGES=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--server-cpu) SERVER_CPU=$2; shift 2 ;;
	--load-cpu) LOAD_CPU=$2; shift 2 ;;
	--tools) TOOLS=$2; shift 2 ;;
	--baseline) BASELINE=$2; shift 2 ;;
	--poosmsd) POOSMSD=$2; shift 2 ;;
	--port-base) BASE=$2; shift 2 ;;
	--server-share) SHARE=$2; shift 2 ;;
	--rt) RT=(chrt -f "$2"); shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
for bin in turnserver turnutils_uclient turnutils_peer taskset go python3; do
	command -v "$bin" >/dev/null || { echo "turn-ceiling.sh: $bin not found (coturn: apt-get install coturn)" >&2; exit 1; }
done
# A new cgroup gets no real-time runtime (RT group scheduling), so chrt
# fails in it.
[ -z "$SHARE" ] || [ ${#RT[@]} -eq 0 ] || { echo "turn-ceiling.sh: --server-share and --rt do not go together" >&2; exit 2; }
[ "$SESSIONS" -le 50 ] || { echo "turn-ceiling.sh: --sessions above 50" >&2; exit 2; }
MAXPROCS=0
for p in $PROCS; do [ "$p" -le "$MAXPROCS" ] || MAXPROCS=$p; done
[ "$MAXPROCS" -le 40 ] || { echo "turn-ceiling.sh: --procs above 40" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/turn-ceiling.XXXXXX)
SECRET=turn-ceiling-$$
# Ports: poosmsd base..base+3, coturn base+4, the baseline base+10..+13,
# turnutils_peer pairs from base+20 (two ports each), coturn's relays
# base+100..base+999 (a fresh coturn failed 200 uclient sessions on 400
# ports, as if each took two).
P_TURN=$BASE CT_TURN=$((BASE + 4)) P_BASE=$((BASE + 10)) PEER_PORT=$((BASE + 20))
CT_RELAY_MIN=$((BASE + 100)) CT_RELAY_MAX=$((BASE + 999))
PIDS=()
CGROUPS=()
finish() {
	cleanup
	local g
	# A cgroup can be removed once the kernel has let go of its last
	# task, a moment after the task is reaped.
	for g in "${CGROUPS[@]}"; do
		for _ in $(seq 50); do rmdir "$g" 2>/dev/null && break; sleep 0.1; done
	done
}
trap finish EXIT
log() { echo "turn-ceiling: $*" >&2; }
want() { case ",$TOOLS," in *",$1,"*) return 0 ;; esac; return 1; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpu_busy prints CPU N's busy and total jiffies so far (/proc/stat).
cpu_busy() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

# Servers start through incg NAME, which with --server-share puts them
# (and their threads) in a cgroup of their own capped at SHARE % of a CPU.
INCG=()
if [ -n "$SHARE" ]; then
	if [ -d /sys/fs/cgroup/cpu ]; then CGROOT=/sys/fs/cgroup/cpu; else CGROOT=/sys/fs/cgroup; fi
fi
incg() { # name: sets INCG to the command prefix that starts a server in its cgroup
	INCG=()
	[ -z "$SHARE" ] || INCG=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CGROOT/turn-ceiling-$$-$1")
}

log "building into $TMP/bin"
(cd "$ROOT" && go build -o "$TMP/bin/poosms-bench" ./cmd/poosms-bench)
if [ -n "$POOSMSD" ]; then
	cp "$POOSMSD" "$TMP/bin/poosmsd"
else
	(cd "$ROOT" && go build -o "$TMP/bin/poosmsd" ./cmd/poosmsd)
fi

SERVERS="poosms"
[ -z "$BASELINE" ] || SERVERS="$SERVERS baseline"
SERVERS="$SERVERS coturn"
declare -A PID PORT
PORT[poosms]=$P_TURN PORT[baseline]=$P_BASE PORT[coturn]=$CT_TURN
if [ -n "$SHARE" ]; then
	for s in $SERVERS; do
		g=$CGROOT/turn-ceiling-$$-$s
		mkdir "$g"
		CGROUPS+=("$g")
		if [ -f "$g/cpu.cfs_quota_us" ]; then
			echo 10000 >"$g/cpu.cfs_period_us"
			echo $((SHARE * 100)) >"$g/cpu.cfs_quota_us"
		else
			echo "$((SHARE * 100)) 10000" >"$g/cpu.max"
		fi
	done
fi

start_poosmsd() { # name binary port
	mkdir -p "$TMP/$1"
	incg "$1"
	"${INCG[@]}" "${RT[@]}" taskset -c "$SERVER_CPU" "$2" serve --data-dir "$TMP/$1" --domain localhost --db sqlite \
		--registration closed --log-level warn --metrics-addr "" --s2s-addr "" \
		--c2s-addr "127.0.0.1:$(($3 + 1))" --c2s-tls-addr "" --http-addr "127.0.0.1:$(($3 + 2))" \
		--media-udp-addr "127.0.0.1:$(($3 + 3))" --media-tcp-addr "" \
		--turn-addr "127.0.0.1:$3" --turn-secret "$SECRET" --turn-allow-peers 127.0.0.0/8 --turn-allow-self \
		--turn-max-allocations 1000 >>"$TMP/$1/server.log" 2>&1 &
	PID[$1]=$!
}

start_one() { # name
	case $1 in
	poosms) start_poosmsd poosms "$TMP/bin/poosmsd" "$P_TURN" ;;
	baseline) start_poosmsd baseline "$BASELINE" "$P_BASE" ;;
	coturn)
		mkdir -p "$TMP/coturn"
		incg coturn
		local rt=("${RT[@]}")
		RT=("${INCG[@]}" "${RT[@]}")
		start_coturn
		RT=("${rt[@]}")
		PID[coturn]=$COTURN
		;;
	esac
	PIDS+=("${PID[$1]}")
}

# start_servers starts every server not running and waits for them. A
# server that fails to start (one of its ports taken for a moment: they
# lie in the kernel's ephemeral range) gets two more tries.
start_servers() {
	local s try
	for s in $SERVERS; do
		[ -n "${PID[$s]:-}" ] || start_one "$s"
	done
	for s in $SERVERS; do
		for try in 1 2 3; do
			wait_udp "${PORT[$s]}" && kill -0 "${PID[$s]}" 2>/dev/null && continue 2
			log "$s did not start (try $try)"
			tail -n 3 "$TMP/$s/"*.log >&2
			kill "${PID[$s]}" 2>/dev/null || true
			wait "${PID[$s]}" 2>/dev/null || true
			sleep 1
			start_one "$s"
		done
		exit 1
	done
}

# stop_servers stops them all (their allocations go with them).
stop_servers() {
	local s
	for s in $SERVERS; do kill "${PID[$s]}" 2>/dev/null || true; done
	for s in $SERVERS; do wait "${PID[$s]}" 2>/dev/null || true; done
	local keep=() p
	for p in "${PIDS[@]}"; do
		for s in $SERVERS; do [ "$p" != "${PID[$s]}" ] || continue 2; done
		keep+=("$p")
	done
	PIDS=("${keep[@]}")
	for s in $SERVERS; do PID[$s]=""; done
	for s in $SERVERS; do
		for _ in $(seq 50); do ss -uln "sport = :${PORT[$s]}" | grep -q ":${PORT[$s]}" || break; sleep 0.1; done
	done
}

start_servers
if want uclient; then
	for i in $(seq 0 $((MAXPROCS - 1))); do
		"${RT[@]}" taskset -c "$LOAD_CPU" turnutils_peer -L 127.0.0.1 -p "$((PEER_PORT + 2 * i))" >"$TMP/peer$i.log" 2>&1 &
		PIDS+=("$!")
	done
	for i in $(seq 0 $((MAXPROCS - 1))); do
		wait_udp "$((PEER_PORT + 2 * i))" || { tail "$TMP/peer$i.log" >&2; exit 1; }
	done
fi

ROWS=$TMP/rows.tsv
: >"$ROWS"
# row tool step offered server packets seconds loss cpu-ticks load-cpu-busy-%
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$ROWS"; }

echo "Started $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg); servers on CPU $SERVER_CPU${SHARE:+ (each capped at $SHARE %)}, load tools and peers on CPU $LOAD_CPU${RT:+, ${RT[*]}}; $SIZE-byte payloads, every packet echoed by the peer (relayed twice)."
echo

if want poosms-bench; then
	step=0
	for rate in $RATES; do
		step=$((step + 1))
		for s in $SERVERS; do
			log "poosms-bench turn, 10 × $rate pkts/s, $s"
			read -r b0 t0 < <(cpu_busy "$LOAD_CPU")
			out=$("${RT[@]}" taskset -c "$LOAD_CPU" "$TMP/bin/poosms-bench" turn --json --server "127.0.0.1:${PORT[$s]}" --realm localhost \
				--secret "$SECRET" --allocations 10 --rate "$rate" --size "$SIZE" --duration "$DURATION" --progress 0 --pid "${PID[$s]}")
			read -r b1 t1 < <(cpu_busy "$LOAD_CPU")
			read -r n secs loss cpu < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); n=d["received_at_peer"]+d["echoed_back"]; pps=d["relayed_packets_per_second"]; print(n, n/pps if pps else 0, d["loss_percent"], round(100*d.get("server_cpu_seconds", 0)))' "$out")
			row "poosms-bench turn" "$step" "$((rate * 10)) pkts/s" "$s" "$n" "$secs" "$loss" "$cpu" "$(((b1 - b0) * 100 / (t1 - t0 + 1)))"
		done
	done
fi

if want uclient; then
	step=0
	for procs in $PROCS; do
		step=$((step + 1))
		for s in $SERVERS; do
			stop_servers
			start_servers
			sleep 1 # coturn binds its listener before its relay threads run
			log "turnutils_uclient, $procs × $SESSIONS sessions, $s"
			pid=${PID[$s]}
			c0=$(ticks "$pid")
			read -r b0 j0 < <(cpu_busy "$LOAD_CPU")
			t0=$(date +%s.%N)
			ucs=()
			for i in $(seq 0 $((procs - 1))); do
				"${RT[@]}" taskset -c "$LOAD_CPU" turnutils_uclient -c -m "$SESSIONS" -n "$MESSAGES" -z 1 -l "$SIZE" \
					-e 127.0.0.1 -r "$((PEER_PORT + 2 * i))" -W "$SECRET" -u "bench$i" -p "${PORT[$s]}" 127.0.0.1 >"$TMP/uclient$i.log" 2>&1 &
				ucs+=("$!")
			done
			for p in "${ucs[@]}"; do wait "$p" || true; done
			t1=$(date +%s.%N)
			c1=$(ticks "$pid")
			read -r b1 j1 < <(cpu_busy "$LOAD_CPU")
			sent=0 recv=0 failed=0
			for i in $(seq 0 $((procs - 1))); do
				read -r s1 r1 < <(grep -o 'tot_send_msgs=[0-9]*, tot_recv_msgs=[0-9]*' "$TMP/uclient$i.log" | tail -1 | awk -F'[=,]' '{print $2, $4}') || true
				sent=$((sent + ${s1:-0})) recv=$((recv + ${r1:-0}))
				if [ "${r1:-0}" -eq 0 ]; then
					failed=$((failed + 1))
					log "uclient $i against $s received nothing: $(grep -v 'start_mclient' "$TMP/uclient$i.log" | tail -1)"
				fi
				s1="" r1=""
			done
			note=""
			[ "$failed" -eq 0 ] || note=", $failed received nothing"
			# Each echoed message was relayed twice: to the peer and back.
			# The window includes the sessions' setup (about 2 s).
			row turnutils_uclient "$step" "$((procs * SESSIONS)) sessions ($procs × $SESSIONS$note)" "$s" "$((2 * recv))" \
				"$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
				"$(awk -v s="$((procs * SESSIONS * MESSAGES))" -v r="$recv" 'BEGIN { printf "%.2f", 100 * (1 - r / s) }')" \
				"$((c1 - c0))" "$(((b1 - b0) * 100 / (j1 - j0 + 1)))"
		done
	done
fi

python3 - "$ROWS" <<'PY'
import sys
from collections import OrderedDict

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
LOSSY = 1.0  # loss % from which a step counts as past the ceiling

def fmt(x):
    return "{:,}".format(round(x))

tools = OrderedDict()
for tool, step, offered, server, n, secs, loss, ticks, busy in rows:
    d = dict(step=int(step), offered=offered, server=server, n=int(n), secs=float(secs), loss=float(loss),
             cpu=int(ticks) / 100, busy=int(busy))
    d["pps"] = d["n"] / d["secs"] if d["secs"] else 0
    d["per"] = d["n"] / d["cpu"] if d["cpu"] else 0
    tools.setdefault(tool, OrderedDict()).setdefault(d["step"], OrderedDict())[server] = d

for tool, steps in tools.items():
    print("%s:" % tool)
    print()
    print("| offered | server | relayed pkts/s | loss % | server CPU s | relayed pkts per CPU-s | × coturn's | load CPU busy % |")
    print("|---|---|---|---|---|---|---|---|")
    for step, servers in steps.items():
        ct = servers.get("coturn")
        for s, d in servers.items():
            ratio = "%.2f" % (d["per"] / ct["per"]) if ct and ct["per"] and s != "coturn" else ""
            if ratio and d["per"] / ct["per"] >= 1.5:
                ratio = "**%s**" % ratio
            print("| %s | %s | %s | %.2f | %.2f | %s | %s | %d |" % (d["offered"], s, fmt(d["pps"]), d["loss"], d["cpu"],
                  fmt(d["per"]) if d["cpu"] else "—", ratio, d["busy"]))
    print()

print("At the ceiling (loss of %g %% or more counts as past it):" % LOSSY)
print()
print("| load tool | where | server | offered | relayed pkts per CPU-s | × coturn's |")
print("|---|---|---|---|---|---|")
for tool, steps in tools.items():
    order = list(steps)
    names = list(next(iter(steps.values())))
    def first_lossy(s):
        return next((k for k in order if s in steps[k] and steps[k][s]["loss"] >= LOSSY), None)
    def last_clean(s):
        clean = [k for k in order if s in steps[k] and steps[k][s]["loss"] < LOSSY]
        return clean[-1] if clean else None
    ceiling = first_lossy("coturn")
    if ceiling is None:
        print("| %s | coturn's ceiling | — | not reached (no loss up to the last step) | | |" % tool)
    else:
        ct = steps[ceiling]["coturn"]
        for s in names:
            d = steps[ceiling].get(s)
            if d is None:
                continue
            r = "%.2f" % (d["per"] / ct["per"]) if s != "coturn" and ct["per"] else ""
            print("| %s | coturn's ceiling | %s | %s (loss %.1f %%) | %s | %s |" % (tool, s, d["offered"], d["loss"], fmt(d["per"]), r))
    best_ct = steps[last_clean("coturn")]["coturn"] if last_clean("coturn") is not None else None
    for s in names:
        k = last_clean(s)
        if k is None:
            print("| %s | highest step without loss | %s | none | | |" % (tool, s))
            continue
        d = steps[k][s]
        r = "%.2f" % (d["per"] / best_ct["per"]) if s != "coturn" and best_ct and best_ct["per"] else ""
        print("| %s | highest step without loss | %s | %s | %s | %s |" % (tool, s, d["offered"], fmt(d["per"]), r))
print()
PY
echo "Ended $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)."
