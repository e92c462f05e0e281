#!/usr/bin/env bash
# cluster-sessions.sh: a poosms cluster on this machine (N nodes, MariaDB,
# a Redis of its own) holds sessions spread over its nodes, then carries
# one-to-one messages between them (--sessions 0: only the messages); prints, per node, RSS per session, and
# for the cluster the Redis commands and bytes per login, per held session
# per second and per routed message, and the MySQL rows written per message.
#
#   bench/cluster-sessions.sh [--nodes 3] [--sessions 5700] [--clients 3000] [--rate 300] [--duration 20s]
#                             [--chat-while-held] [--per-process 9000] [--db-max-conns N]
#
# --chat-while-held runs the messages while the sessions are still held (the
# sessions' hold is stretched to cover them), so presence (the chatting
# clients, two by two on different nodes, subscribe to each other first)
# and one-to-one
# messages cross nodes with every session online: SESSIONS + CLIENTS
# sessions in all, on accounts of their own. Each node opens at most
# --db-max-conns MySQL connections (default 120 / nodes, so the cluster stays
# under MariaDB's default max_connections of 151).
#
# Needs: go, MariaDB reachable as root on 127.0.0.1:3306 (POOSMS_TEST_MYSQL_DSN
# is not read: the script makes and drops its own database scale_bench_$$),
# redis-server (started here on 127.0.1.1:36379), loopback 127.0.1.0/24.
# ACCOUNTS_DB=name keeps the bench accounts between runs (see below).
# Ports 36300-36999. Everything it starts it stops.
set -euo pipefail

NODES=3 SESSIONS=5700 CLIENTS=3000 RATE=300 DURATION=20s ACCOUNTS= CHAT_DURING=0 PER_PROCESS=9000 DB_CONNS=
while [ $# -gt 0 ]; do
	case $1 in
	--nodes) NODES=$2; shift 2 ;;
	--sessions) SESSIONS=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--accounts) ACCOUNTS=$2; shift 2 ;;
	--chat-while-held) CHAT_DURING=1; shift ;;
	--per-process) PER_PROCESS=$2; shift 2 ;;
	--db-max-conns) DB_CONNS=$2; shift 2 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
FIRST=0
if [ "$CHAT_DURING" = 1 ]; then
	# The chatting clients use accounts 0 … CLIENTS-1, the held sessions the ones after.
	FIRST=$CLIENTS
	ACCOUNTS=${ACCOUNTS:-$((SESSIONS + CLIENTS))}
fi
ACCOUNTS=${ACCOUNTS:-$((SESSIONS > CLIENTS ? SESSIONS : CLIENTS))}
DB_CONNS=${DB_CONNS:-$((120 / NODES > 4 ? 120 / NODES : 4))}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/poosms-cluster-sessions.XXXXXX)
DBNAME=scale_bench_$$
DB="mysql://root@tcp(127.0.0.1:3306)/$DBNAME"
RPORT=36379
PIDS=()
log() { echo "$(date -u +%H:%M:%S) $*" >&2; }
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	mysql -uroot -e "DROP DATABASE IF EXISTS $DBNAME" || true
	if [ -n "${KEEP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

log "building"
(cd "$ROOT" && go build -o "$TMP/poosmsd" ./cmd/poosmsd && go build -o "$TMP/poosms-bench" ./cmd/poosms-bench)
redis-server --port $RPORT --bind 127.0.1.1 --save '' --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
mysql -uroot -e "CREATE DATABASE $DBNAME CHARACTER SET utf8mb4"
head -c 48 /dev/urandom | base64 >"$TMP/secret"
for _ in $(seq 50); do redis-cli -h 127.0.1.1 -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done

# ACCOUNTS_DB=name keeps the accounts in a database of that name between
# runs (importing 100,000 accounts at 4,096 SCRAM iterations takes many
# minutes): made by the first run, copied into each run's own database.
accounts_in() { mysql -uroot -N -e "SELECT COUNT(*) FROM $1.accounts WHERE username LIKE 'bench%'" 2>/dev/null || echo 0; }
if [ -n "${ACCOUNTS_DB:-}" ] && [ "$(accounts_in "$ACCOUNTS_DB")" -ge "$ACCOUNTS" ]; then
	log "copying $ACCOUNTS accounts from $ACCOUNTS_DB"
	"$TMP/poosmsd" user list --db "$DB" --data-dir "$TMP/import" >"$TMP/import.log" 2>&1 # makes the tables
	mysql -uroot -e "INSERT INTO $DBNAME.accounts SELECT * FROM $ACCOUNTS_DB.accounts"
else
	log "creating $ACCOUNTS accounts in MySQL"
	{
		echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>"
		for ((i = 0; i < ACCOUNTS; i++)); do echo "<user name='bench$i' password='bench-password'/>"; done
		echo "</host></server-data>"
	} >"$TMP/accounts.xml"
	"$TMP/poosmsd" import "$TMP/accounts.xml" --db "$DB" --data-dir "$TMP/import" --scram-iterations 4096 >"$TMP/import.log" 2>&1
	if [ -n "${ACCOUNTS_DB:-}" ]; then
		mysql -uroot -e "DROP DATABASE IF EXISTS $ACCOUNTS_DB; CREATE DATABASE $ACCOUNTS_DB CHARACTER SET utf8mb4;
			CREATE TABLE $ACCOUNTS_DB.accounts LIKE $DBNAME.accounts; INSERT INTO $ACCOUNTS_DB.accounts SELECT * FROM $DBNAME.accounts"
	fi
fi

ADDRS=() NODEPIDS=()
for ((n = 1; n <= NODES; n++)); do
	base=$((36300 + 100 * n))
	mkdir -p "$TMP/n$n"
	"$TMP/poosmsd" serve --db "$DB" --redis "redis://127.0.1.1:$RPORT/0" --cluster-secret-file "$TMP/secret" --node-id "n$n" \
		--db-max-conns "$DB_CONNS" --data-dir "$TMP/n$n" --domain localhost --registration closed --log-level warn --scram-iterations 4096 \
		--c2s-addr "127.0.1.1:$((base + 22))" --c2s-tls-addr "" --http-addr "127.0.1.1:$((base + 80))" --metrics-addr "" \
		--media-udp-addr "127.0.1.1:$((base + 82))" --media-tcp-addr "" --turn-addr "" --s2s-addr "" >"$TMP/n$n.log" 2>&1 &
	PIDS+=($!) NODEPIDS+=($!)
	ADDRS+=("127.0.1.1:$((base + 22))")
done
for a in "${ADDRS[@]}"; do
	for _ in $(seq 300); do (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null && break; sleep 0.1; done
done
ADDRLIST=$(IFS=,; echo "${ADDRS[*]}")

redis_cmds() { redis-cli -h 127.0.1.1 -p $RPORT info commandstats | awk -F'[:=,]' '/^cmdstat_/ {n += $3} END {print n}'; }
redis_bytes() { redis-cli -h 127.0.1.1 -p $RPORT info stats | awk -F: '/total_net_(input|output)_bytes/ {n += $2} END {printf "%d", n}'; }
cmdsnap() { redis-cli -h 127.0.1.1 -p $RPORT info commandstats | awk -F'[:=,]' '/^cmdstat_/ {print $1, $3}' | sort >"$1"; }
# What the nodes' streams hold that their node has not taken yet.
backlog() { for ((n = 1; n <= NODES; n++)); do redis-cli -h 127.0.1.1 -p $RPORT xlen "poosms:stream:n$n"; done | awk '{n += $1} END {print n + 0}'; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
rows() { mysql -uroot -N "$DBNAME" -e "SELECT (SELECT COUNT(*) FROM archive_messages), (SELECT COUNT(*) FROM offline_messages)"; }

chat_phase() {
	# Its own counters: with --chat-while-held it runs inside the sessions' measurement.
	local c0 c1 b0 b1 t0 t1 s0 s1 a0 a1 o0 o1 sent win cross secs CPID
# Messages: random pairs of clients spread over the nodes, so (n-1)/n of
# them cross from one node to another. Redis is counted over a window
# inside the sending (from the second progress line to the one 3 s
# before the end), so neither the logins nor the logouts count.
snap() { redis-cli -h 127.0.1.1 -p $RPORT info commandstats | awk -F'[:=,]' '/^cmdstat_/ {print $1, $3}' | sort >"$1"; }
# Progress lines: "HH:MM:SS R msgs/s: sent N delivered M errors E".
sentnow() { grep -E '^[0-9:]+ .* sent [0-9]+' "$TMP/chat.log" | tail -1 | sed -E 's/.* sent ([0-9]+).*/\1/'; }
lines() { grep -cE '^[0-9:]+ .* sent [0-9]+' "$TMP/chat.log" || true; }
log "chat: $CLIENTS clients, $RATE msgs/s for $DURATION over $NODES nodes"
read -r a0 o0 < <(rows)
"$TMP/poosms-bench" chat --addr "$ADDRLIST" --clients "$CLIENTS" --rate "$RATE" --duration "$DURATION" \
	--sources 127.0.1.10-127.0.1.17 --progress 1s --presence --json >"$TMP/chat.json" 2>"$TMP/chat.log" &
CPID=$!
secs=${DURATION%s}
while [ "$(lines)" -lt 2 ]; do sleep 0.05; kill -0 $CPID 2>/dev/null || break; done
c0=$(redis_cmds) b0=$(redis_bytes) t0=$(date +%s.%N) s0=$(sentnow)
snap "$TMP/cmd0"
while [ "$(lines)" -lt $((secs - 3)) ]; do sleep 0.05; kill -0 $CPID 2>/dev/null || break; done
c1=$(redis_cmds) b1=$(redis_bytes) t1=$(date +%s.%N) s1=$(sentnow)
snap "$TMP/cmd1"
wait $CPID || true
# --presence: clients 2k and 2k+1 (on two different nodes) subscribe to
# each other before the messages and must see each other come online.
grep -E '^presence: ' "$TMP/chat.log" >&2 || true
read -r a1 o1 < <(rows)
grep -E '"(clients|login_errors|sent|delivered|latency_p50_ms|latency_p99_ms)"' "$TMP/chat.json"
sent=$(grep -o '"sent": [0-9]*' "$TMP/chat.json" | grep -o '[0-9]*$')
win=$((s1 - s0))
cross=$(echo "$win * ($NODES - 1) / $NODES" | bc)
echo "redis over $(echo "$t1 - $t0" | bc) s of sending, $win messages sent (heartbeats included): $((c1 - c0)) commands, $((b1 - b0)) bytes"
echo "per message sent: $(echo "scale=2; ($c1 - $c0) / $win" | bc) commands, $(echo "($b1 - $b0) / $win" | bc) bytes; per message crossing nodes (about $cross): $(echo "scale=2; ($c1 - $c0) / $cross" | bc) commands, $(echo "($b1 - $b0) / $cross" | bc) bytes"
echo "archive rows per message: $(echo "scale=2; ($a1 - $a0) / $sent" | bc), offline rows: $((o1 - o0))"
mysql -uroot -N -e "ANALYZE TABLE $DBNAME.archive_messages" >/dev/null
mysql -uroot -N -e "SELECT CONCAT('archive_messages: ', table_rows, ' rows, ', data_length + index_length, ' bytes with indexes, ',
	ROUND((data_length + index_length) / GREATEST(table_rows, 1)), ' per row') FROM information_schema.tables
	WHERE table_schema = '$DBNAME' AND table_name = 'archive_messages'"
echo "redis commands during the messages, by command:"
join -a2 -e0 -o 0,1.2,2.2 "$TMP/cmd0" "$TMP/cmd1" | awk '{d = $3 - $2; if (d > 0) print "  " $1, d}' | sort -k2 -n -r
}

# Sessions: spread over the nodes, held, measured per node. (--sessions 0: skipped).
HOLD=30s
if [ "$CHAT_DURING" = 1 ]; then HOLD=$((60 + ${DURATION%s} + 120))s; fi
if [ "$SESSIONS" -gt 0 ]; then
	declare -A before after
	for p in "${NODEPIDS[@]}"; do before[$p]=$(rss "$p"); done
	c0=$(redis_cmds) b0=$(redis_bytes)
	cmdsnap "$TMP/ramp0"
	log "sessions: $SESSIONS over $NODES nodes"
	"$TMP/poosms-bench" sessions --addr "$ADDRLIST" --sessions "$SESSIONS" --first "$FIRST" --per-process "$PER_PROCESS" \
		--sources 127.0.1.10-127.0.1.17 --hold "$HOLD" --progress 5s --json >"$TMP/sessions.json" 2>"$TMP/sessions.log" &
	SPID=$!
	# The ramp's Redis cost, then 20 s of holding.
	while ! grep -q "ramp over" "$TMP/sessions.log" 2>/dev/null; do sleep 1; kill -0 $SPID 2>/dev/null || break; done
	c1=$(redis_cmds) b1=$(redis_bytes) r1=$(date +%s.%N)
	cmdsnap "$TMP/ramp1"
	# The mirrors have settled when every node has taken what the others
	# sent it: the streams hold only what their node has not taken yet.
	settle=""
	while [ -z "$settle" ] && [ "$(echo "$(date +%s.%N) - $r1 < 120" | bc)" = 1 ]; do
		[ "$(backlog)" = 0 ] && settle=$(echo "scale=1; ($(date +%s.%N) - $r1) / 1" | bc) && break
		sleep 0.2
	done
	rest=$(echo "20 - ($(date +%s.%N) - $r1)" | bc)
	if [ "$(echo "$rest > 0" | bc)" = 1 ]; then sleep "$rest"; fi
	c2=$(redis_cmds) b2=$(redis_bytes) r2=$(date +%s.%N)
	for p in "${NODEPIDS[@]}"; do after[$p]=$(rss "$p"); done
	if [ "$CHAT_DURING" = 1 ]; then
		log "messages while $SESSIONS sessions are held"
		chat_phase
	fi
	wait $SPID || true
	in=$(grep -o '"logged_in": [0-9]*' "$TMP/sessions.json" | grep -o '[0-9]*$')
	grep -E '"(logged_in|failed_logins|stop_reason|logins_per_second|ramp_seconds|alive_at_end)"' "$TMP/sessions.json"
	echo "redis commands per login: $(echo "scale=2; ($c1 - $c0) / $in" | bc), bytes per login: $(echo "($b1 - $b0) / $in" | bc)"
	echo "redis commands per login, by command (XADD: stream entries, one per payload to another node):"
	join -a2 -e0 -o 0,1.2,2.2 "$TMP/ramp0" "$TMP/ramp1" | awk -v n="$in" '{d = $3 - $2; if (d > 0) printf "  %s %.2f\n", $1, d / n}' | sort -k2 -g -r
	echo "mirrors settled (every node's stream empty) ${settle:-more than 120} s after the ramp"
	echo "redis commands per second in the $(echo "scale=1; ($r2 - $r1) / 1" | bc) s after the ramp: $(echo "scale=1; ($c2 - $c1) / ($r2 - $r1)" | bc), bytes/s: $(echo "($b2 - $b1) / ($r2 - $r1)" | bc)"
	n=1
	for p in "${NODEPIDS[@]}"; do
		echo "node n$n: RSS $((before[$p] / 1024)) -> $((after[$p] / 1024)) MiB, $(echo "scale=1; (${after[$p]} - ${before[$p]}) * $NODES / $in" | bc) KiB per session (sessions spread evenly)"
		n=$((n + 1))
	done
fi

if [ "$CHAT_DURING" = 0 ]; then
	sleep 5
	chat_phase
fi
