#!/usr/bin/env bash
# turn-ceiling.sh — poosms's TURN relay and coturn side by side, at rising
# offered rates until packets are lost, with two load tools: poosms-bench
# turn (raw ChannelData, an echoing peer) and coturn's turnutils_uclient
# (with turnutils_peer echoing). Each server runs pinned to one CPU and
# the load tools to the other; the servers take turns at each step, so
# both see the same machine. Prints a Markdown table: relayed packets per
# second, loss, and relayed packets per server CPU-second (from /proc).
#
# Needs: Go, taskset, coturn (turnserver, turnutils_uclient,
# turnutils_peer; Debian package coturn). Loopback only; ports 34000–34499
# (--port-base moves them; poosmsd's relay ports are ephemeral).
set -euo pipefail
. "$(dirname "$0")/turn-lib.sh"

usage() {
	cat <<'EOF'
usage: bench/turn-ceiling.sh [options]
  --rates "R ..."      poosms-bench: packets/s per allocation, 10 allocations  [500 1000 2000 3000 4000 6000]
  --clients "N ..."    turnutils_uclient: sessions, each sending every 1 ms    [10 20 40 80]
  --duration D         poosms-bench send time per step                        [5s]
  --messages N         turnutils_uclient messages per session                 [2000]
  --size B             payload bytes per packet                                [200]
  --server-cpu N       CPU the servers are pinned to                           [1]
  --load-cpu N         CPU the load tools and peers are pinned to              [0]
  --tools LIST         poosms-bench,uclient                                    [both]
  --rt PRIO            run servers, load tools and peers SCHED_FIFO at PRIO (root)
  --port-base P        first of 500 ports (coturn relays: the last 400)         [34000]
EOF
}

RATES="500 1000 2000 3000 4000 6000"
CLIENTS="10 20 40 80"
DURATION=5s
MESSAGES=2000
SIZE=200
SERVER_CPU=1
LOAD_CPU=0
TOOLS=poosms-bench,uclient
BASE=34000
RT=()
while [ $# -gt 0 ]; do
	case $1 in
	--rates) RATES=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--messages) MESSAGES=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--server-cpu) SERVER_CPU=$2; shift 2 ;;
	--load-cpu) LOAD_CPU=$2; shift 2 ;;
	--tools) TOOLS=$2; shift 2 ;;
	--port-base) BASE=$2; shift 2 ;;
	--rt) RT=(chrt -f "$2"); shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
for bin in turnserver turnutils_uclient turnutils_peer taskset go; do
	command -v "$bin" >/dev/null || { echo "turn-ceiling.sh: $bin not found (coturn: apt-get install coturn)" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/turn-ceiling.XXXXXX)
SECRET=turn-ceiling-$$
P_TURN=$BASE P_C2S=$((BASE + 1)) P_HTTP=$((BASE + 2)) P_MEDIA=$((BASE + 3))
CT_TURN=$((BASE + 4)) PEER_PORT=$((BASE + 5)) CT_RELAY_MIN=$((BASE + 100)) CT_RELAY_MAX=$((BASE + 499))
PIDS=()
trap cleanup EXIT
log() { echo "turn-ceiling: $*" >&2; }
want() { case ",$TOOLS," in *",$1,"*) return 0 ;; esac; return 1; }
cpu_seconds() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }

log "building into $TMP/bin"
(cd "$ROOT" && go build -o "$TMP/bin/poosmsd" ./cmd/poosmsd && go build -o "$TMP/bin/poosms-bench" ./cmd/poosms-bench)

mkdir -p "$TMP/poosms" "$TMP/coturn"
"${RT[@]}" taskset -c "$SERVER_CPU" "$TMP/bin/poosmsd" serve --data-dir "$TMP/poosms" --domain localhost --db sqlite \
	--registration closed --log-level warn --metrics-addr "" --s2s-addr "" \
	--c2s-addr "127.0.0.1:$P_C2S" --c2s-tls-addr "" --http-addr "127.0.0.1:$P_HTTP" \
	--media-udp-addr "127.0.0.1:$P_MEDIA" --media-tcp-addr "" \
	--turn-addr "127.0.0.1:$P_TURN" --turn-secret "$SECRET" --turn-allow-peers 127.0.0.0/8 --turn-allow-self \
	--turn-max-allocations 1000 >"$TMP/poosms/server.log" 2>&1 &
POOSMS=$!
PIDS+=("$POOSMS")
start_coturn
PIDS+=("$COTURN")
"${RT[@]}" taskset -c "$LOAD_CPU" turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >"$TMP/peer.log" 2>&1 &
PIDS+=("$!")
wait_udp "$P_TURN" || { tail "$TMP/poosms/server.log" >&2; exit 1; }
wait_udp "$CT_TURN" || { tail "$TMP/coturn/stdout.log" >&2; exit 1; }
wait_udp "$PEER_PORT" || { tail "$TMP/peer.log" >&2; exit 1; }

echo "| tool | offered | server | relayed pkts/s | loss % | server CPU s | relayed pkts per server CPU-s |"
echo "|---|---|---|---|---|---|---|"
row() { # tool offered server pps loss cpu packets
	awk -v t="$1" -v o="$2" -v s="$3" -v pps="$4" -v loss="$5" -v cpu="$6" -v n="$7" 'BEGIN {
		per = (cpu > 0) ? sprintf("%.0f", n / cpu) : "—"
		printf "| %s | %s | %s | %.0f | %.2f | %.2f | %s |\n", t, o, s, pps, loss, cpu, per }'
}

if want poosms-bench; then
	for rate in $RATES; do
		for s in poosms coturn; do
			if [ $s = poosms ]; then port=$P_TURN pid=$POOSMS; else port=$CT_TURN pid=$COTURN; fi
			out=$("${RT[@]}" taskset -c "$LOAD_CPU" "$TMP/bin/poosms-bench" turn --json --server "127.0.0.1:$port" --realm localhost \
				--secret "$SECRET" --allocations 10 --rate "$rate" --size "$SIZE" --duration "$DURATION" --progress 0 --pid "$pid")
			read -r pps loss cpu n < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["relayed_packets_per_second"], d["loss_percent"], d.get("server_cpu_seconds", 0), d["received_at_peer"] + d["echoed_back"])' "$out")
			row poosms-bench "$((rate * 10)) pkts/s (10 × $rate)" $s "$pps" "$loss" "$cpu" "$n"
		done
	done
fi

if want uclient; then
	for clients in $CLIENTS; do
		for s in poosms coturn; do
			if [ $s = poosms ]; then port=$P_TURN pid=$POOSMS; else port=$CT_TURN pid=$COTURN; fi
			c0=$(cpu_seconds "$pid")
			t0=$(date +%s.%N)
			"${RT[@]}" taskset -c "$LOAD_CPU" turnutils_uclient -c -m "$clients" -n "$MESSAGES" -z 1 -l "$SIZE" \
				-e 127.0.0.1 -r "$PEER_PORT" -W "$SECRET" -u bench -p "$port" 127.0.0.1 >"$TMP/uclient.log" 2>&1 || true
			t1=$(date +%s.%N)
			c1=$(cpu_seconds "$pid")
			read -r sent recv < <(grep -o 'tot_send_msgs=[0-9]*, tot_recv_msgs=[0-9]*' "$TMP/uclient.log" | tail -1 | awk -F'[=,]' '{print $2, $4}') || true
			sent=${sent:-0} recv=${recv:-0}
			# Each echoed message was relayed twice: to the peer and back.
			awk -v s="$sent" -v r="$recv" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" 'BEGIN {
				printf "%f %f %f %d\n", 2 * r / (t1 - t0), (s > 0 ? 100 * (1 - r / s) : 100), c1 - c0, 2 * r }' |
				{ read -r pps loss cpu n; row turnutils_uclient "$clients sessions × 1 msg/ms" $s "$pps" "$loss" "$cpu" "$n"; }
		done
	done
fi
