#!/usr/bin/env bash
# compare.sh — the same load against poosms, Prosody, ejabberd and coturn on
# this machine, in one run, and one table of the ratios poosms/peer.
#
# Run as root on Debian 12 from anywhere inside the poosms checkout:
#
#	bench/compare.sh            # full run (about a quarter of an hour)
#	bench/compare.sh --quick    # smoke test (200 clients, short runs)
#	bench/compare.sh --json     # the same figures as JSON on standard output
#
# See bench/README.md for what is measured and how each server is set up.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: bench/compare.sh [flags]

  --quick                 smoke test: 200 clients, 200 and 400 msgs/s, 5 s each; small TURN run
  --json                  print the results as JSON instead of a table
  --servers LIST          comma-separated subset of poosms,poosms-mysql,prosody,
                          ejabberd,ejabberd-mysql,coturn
                          (default: all; ratios need poosms)
  --clients N             chat clients logged in to each server      [CLIENTS=2000]
  --rates LIST            offered chat messages/s, all clients, one step each, in
                          increasing order; a server's steps stop after the first
                          it does not deliver in full  [RATES=1000,2000,4000,8000,12000]
  --rate R                a single step: the same as --rates R
  --all-steps             run every step on every server, also after one it did
                          not deliver in full (its CPU per message at every rate)
  --duration D            chat message load of each step (Go syntax) [DURATION=15s]
  --drain D               after a step's sending, the longest wait for its
                          deliveries; what is not in by then is lost [DRAIN=30s]
  --login-concurrency N   logins in flight at once                   [LOGIN_CONCURRENCY=50]
  --mechanism M           SCRAM-SHA-256 or SCRAM-SHA-1, for every server [MECHANISM=SCRAM-SHA-256]
  --turn-allocations N    TURN allocations, at most 10               [TURN_ALLOCATIONS=10]
  --turn-rate R           packets/s per allocation                   [TURN_RATE=1500]
  --turn-size B           payload bytes per packet                   [TURN_SIZE=200]
  --turn-duration D       TURN load duration                         [TURN_DURATION=15s]
  --no-peer-archive       Prosody and ejabberd in their default setup: no
                          archive (mod_mam off) and their default stores (files,
                          Mnesia). By default both archive every one-to-one
                          message, as poosms always does, into SQLite (Prosody
                          storage = "sql", ejabberd default_db: sql)
  --disk                  keep every server's data on disk (/tmp); by default it
                          is on tmpfs (/dev/shm), so that no server's figure is
                          this machine's fsync latency: Prosody's and ejabberd's
                          SQLite stores sync every commit, poosms's SQLite syncs
                          at checkpoints (see docs/performance.md). MariaDB, for
                          poosms-mysql, stays where it is.
  --no-pin                run unpinned (by default every server runs on CPU 1
                          and the load tool on CPU 0, through taskset)
  --port-base N           the loopback ports used are N+22 … N+799 [PORT_BASE=25200]
  --mysql-host H          MariaDB/MySQL for poosms-mysql; the script creates a
                          database of its own there and drops it [MYSQL_HOST=127.0.0.1]
  --mysql-port P                                                     [MYSQL_PORT=3306]
  --mysql-user U          (password, if any, in MYSQL_PWD)          [MYSQL_USER=root]
  --keep                  keep the temporary folder (configs, logs, raw results)
  -h, --help              this text

Each flag can also be given as the environment variable in brackets.
EOF
}

CLIENTS=${CLIENTS:-2000}
RATES=${RATES:-1000,2000,4000,8000,12000}
DURATION=${DURATION:-15s}
DRAIN=${DRAIN:-30s}
PIN=${PIN:-1}
ALL_STEPS=${ALL_STEPS:-0}
TMPFS=${TMPFS:-1}
PORT_BASE=${PORT_BASE:-25200}
MYSQL_HOST=${MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_USER=${MYSQL_USER:-root}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-50}
MECHANISM=${MECHANISM:-SCRAM-SHA-256}
TURN_ALLOCATIONS=${TURN_ALLOCATIONS:-10}
TURN_RATE=${TURN_RATE:-1500}
TURN_SIZE=${TURN_SIZE:-200}
TURN_DURATION=${TURN_DURATION:-15s}
SERVERS=${SERVERS:-poosms,poosms-mysql,prosody,ejabberd,ejabberd-mysql,coturn}
JSON=0
KEEP=0
PEER_ARCHIVE=${PEER_ARCHIVE:-1}

while [ $# -gt 0 ]; do
	case $1 in
	--quick)
		CLIENTS=200 RATES=200,400 DURATION=5s DRAIN=10s TURN_ALLOCATIONS=10 TURN_RATE=200 TURN_DURATION=5s
		shift ;;
	--json) JSON=1; shift ;;
	--keep) KEEP=1; shift ;;
	--peer-archive) PEER_ARCHIVE=1; shift ;; # the default; kept for old command lines
	--no-peer-archive) PEER_ARCHIVE=0; shift ;;
	--no-pin) PIN=0; shift ;;
	--disk) TMPFS=0; shift ;;
	--port-base) PORT_BASE=$2; shift 2 ;;
	--mysql-host) MYSQL_HOST=$2; shift 2 ;;
	--mysql-port) MYSQL_PORT=$2; shift 2 ;;
	--mysql-user) MYSQL_USER=$2; shift 2 ;;
	--rates) RATES=$2; shift 2 ;;
	--drain) DRAIN=$2; shift 2 ;;
	--all-steps) ALL_STEPS=1; shift ;;
	--servers) SERVERS=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--rate) RATES=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--login-concurrency) LOGIN_CONCURRENCY=$2; shift 2 ;;
	--mechanism) MECHANISM=$2; shift 2 ;;
	--turn-allocations) TURN_ALLOCATIONS=$2; shift 2 ;;
	--turn-rate) TURN_RATE=$2; shift 2 ;;
	--turn-size) TURN_SIZE=$2; shift 2 ;;
	--turn-duration) TURN_DURATION=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "compare.sh: unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
done

case $MECHANISM in
SCRAM-SHA-256) PROSODY_HASH=SHA-256 EJABBERD_HASH=sha256 ;;
SCRAM-SHA-1) PROSODY_HASH=SHA-1 EJABBERD_HASH=sha ;;
*) echo "compare.sh: --mechanism must be SCRAM-SHA-256 or SCRAM-SHA-1" >&2; exit 2 ;;
esac

# poosms allows 10 live allocations per TURN user, and every allocation of
# the bench uses the same user: beyond 10, poosms would refuse the rest
# while coturn relays them all.
[ "$TURN_ALLOCATIONS" -le 10 ] || { echo "compare.sh: --turn-allocations at most 10 (poosms's per-user quota); raise --turn-rate instead" >&2; exit 2; }

want() { case ",$SERVERS," in *",$1,"*) return 0 ;; esac; return 1; }

log() { printf '%s compare: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Loopback ports of our own, away from the standard ones.
DOMAIN=localhost
PASSWORD=bench-password
TURN_SECRET=compare-turn-secret-$$
# Every server uses the same SCRAM iteration count (poosms's and ejabberd's
# fixed 4096; Prosody's default is 10000, set down to match).
ITERATIONS=4096
case $PORT_BASE in '' | *[!0-9]*) echo "compare.sh: --port-base must be a number" >&2; exit 2 ;; esac
P_C2S=$((PORT_BASE + 22)) P_HTTP=$((PORT_BASE + 80)) P_MEDIA=$((PORT_BASE + 682)) P_TURN=$((PORT_BASE + 278))
PR_C2S=$((PORT_BASE + 122))
EJ_C2S=$((PORT_BASE + 222)) EJ_DIST=$((PORT_BASE + 269))
CT_TURN=$((PORT_BASE + 378)) CT_RELAY_MIN=$((PORT_BASE + 400)) CT_RELAY_MAX=$((PORT_BASE + 799))
# Pinning: the server under test on CPU 1, the load tool on CPU 0.
SERVER_CPU=() LOAD_CPU=()
if [ "$PIN" = 1 ]; then
	[ "$(nproc)" -ge 2 ] || { echo "compare.sh: pinning needs 2 CPUs; run with --no-pin" >&2; exit 2; }
	SERVER_CPU=(taskset -c 1) LOAD_CPU=(taskset -c 0)
fi
MYSQL_DB= EJ_MYSQL_DB=
mysql_admin() { MYSQL_PWD=${MYSQL_PWD:-} mariadb -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u "$MYSQL_USER" "$@"; }
# Client sockets spread over several loopback source addresses.
SOURCES=127.0.0.1-127.0.0.$((CLIENTS / 20000 + 2))

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=
POLICY_CREATED=0
PIDS=()           # processes we started
EJ_CTL=()         # ejabberdctl with our folders, once configured
EJ_DIR=           # the running ejabberd's folder

cleanup() {
	local rc=$?
	set +e
	if [ ${#EJ_CTL[@]} -gt 0 ] && [ -s "$EJ_DIR/ejabberd.pid" ]; then
		PIDS+=("$(cat "$EJ_DIR/ejabberd.pid")")
		"${EJ_CTL[@]}" stop >/dev/null 2>&1
	fi
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	if [ -n "$MYSQL_DB" ]; then mysql_admin -e "DROP DATABASE IF EXISTS $MYSQL_DB" >/dev/null 2>&1; fi
	if [ -n "$EJ_MYSQL_DB" ]; then mysql_admin -e "DROP DATABASE IF EXISTS $EJ_MYSQL_DB; DROP USER IF EXISTS '$EJ_MYSQL_DB'@'%'" >/dev/null 2>&1; fi
	if [ "$POLICY_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# stop_pid PID: TERM, up to 10 s, then KILL.
stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	return 0
}

# wait_port PORT PID: wait until something accepts TCP on 127.0.0.1:PORT
# while PID lives.
wait_port() {
	local port=$1 pid=$2 i
	for i in $(seq 1 600); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- install

install_peers() {
	local pkgs=() p
	want prosody && ! command -v prosody >/dev/null && pkgs+=(prosody)
	# Prosody's SQL storage on SQLite, and the sqlite3 shell to fill it.
	want prosody && [ "$PEER_ARCHIVE" = 1 ] && ! dpkg -s lua-dbi-sqlite3 >/dev/null 2>&1 && pkgs+=(lua-dbi-sqlite3)
	want prosody && [ "$PEER_ARCHIVE" = 1 ] && ! command -v sqlite3 >/dev/null && pkgs+=(sqlite3)
	want ejabberd-mysql && ! command -v ejabberdctl >/dev/null && pkgs+=(ejabberd)
	want ejabberd-mysql && [ "$PEER_ARCHIVE" = 1 ] && ! dpkg -s erlang-p1-mysql >/dev/null 2>&1 && pkgs+=(erlang-p1-mysql)
	want ejabberd-mysql && ! command -v mariadb >/dev/null && pkgs+=(mariadb-client)
	want ejabberd && ! command -v ejabberdctl >/dev/null && pkgs+=(ejabberd)
	want ejabberd && [ "$PEER_ARCHIVE" = 1 ] && ! command -v sqlite3 >/dev/null && pkgs+=(sqlite3)
	want ejabberd && [ "$PEER_ARCHIVE" = 1 ] && ! dpkg -s erlang-p1-sqlite3 >/dev/null 2>&1 && pkgs+=(erlang-p1-sqlite3)
	want poosms-mysql && ! command -v mariadb >/dev/null && pkgs+=(mariadb-client)
	[ "$PIN" = 1 ] && ! command -v taskset >/dev/null && pkgs+=(util-linux)
	want coturn && ! command -v turnserver >/dev/null && pkgs+=(coturn)
	command -v openssl >/dev/null || pkgs+=(openssl)
	[ ${#pkgs[@]} -gt 0 ] || return 0
	[ "$(id -u)" = 0 ] || die "need root to install ${pkgs[*]}"
	log "installing ${pkgs[*]} from Debian"
	# Keep the packages from starting their services while they install.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		POLICY_CREATED=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2
	apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
	if [ "$POLICY_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=0; fi
	# Nothing of theirs is left running or starting at boot on standard ports.
	for p in prosody ejabberd coturn; do
		case " ${pkgs[*]} " in *" $p "*) ;; *) continue ;; esac
		if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
			systemctl disable --now "$p" >/dev/null 2>&1 || true
		else
			service "$p" stop >/dev/null 2>&1 || true
			update-rc.d "$p" disable >/dev/null 2>&1 || true
		fi
	done
}

build() {
	command -v go >/dev/null || die "go is not installed (poosms needs the Go toolchain named in go.mod)"
	log "building poosmsd and poosms-bench"
	(cd "$REPO" && go build -o "$TMP/bin/" ./cmd/poosmsd ./cmd/poosms-bench)
	BENCH=$TMP/bin/poosms-bench
}

certificate() {
	# One self-signed ECDSA P-256 certificate for every server.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN" \
		-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
}

# ---------------------------------------------------------------- load

# bench OUT ARGS...: poosms-bench in the background, waited for, so that a
# signal to this script runs the cleanup at once (which stops it too).
bench() {
	local out=$1 pid
	shift
	"${LOAD_CPU[@]}" "$BENCH" "$@" >"$out" &
	pid=$!
	PIDS+=("$pid")
	wait "$pid"
}

# chat_load NAME PORT PID: the chat run against one server, every step of
# $RATES. Writes $TMP/results/NAME-chat.json, NAME-baseline (RSS before
# any login) and NAME-loadavg (the load average before and after).
chat_load() {
	local name=$1 port=$2 pid=$3 rc=0 more=()
	[ "$ALL_STEPS" = 1 ] && more=(--all-steps)
	rss_bytes "$pid" >"$TMP/results/$name-baseline"
	cut -d' ' -f1-3 /proc/loadavg >"$TMP/results/$name-loadavg"
	log "$name: $CLIENTS clients log in, then $RATES msgs/s for $DURATION each"
	bench "$TMP/results/$name-chat.json" chat --json --addr "127.0.0.1:$port" --domain "$DOMAIN" --clients "$CLIENTS" \
		--password "$PASSWORD" --mechanism "$MECHANISM" --rate "$RATES" --duration "$DURATION" --drain "$DRAIN" \
		--login-concurrency "$LOGIN_CONCURRENCY" --sources "$SOURCES" --pid "$pid" \
		--progress 10s "${more[@]}" || rc=$?
	cut -d' ' -f1-3 /proc/loadavg >>"$TMP/results/$name-loadavg"
	return $rc
}

# turn_load NAME PORT PID
turn_load() {
	local name=$1 port=$2 pid=$3
	log "$name: TURN, $TURN_ALLOCATIONS allocations × $TURN_RATE pkts/s of $TURN_SIZE bytes for $TURN_DURATION"
	bench "$TMP/results/$name-turn.json" turn --json --server "127.0.0.1:$port" --realm "$DOMAIN" --secret "$TURN_SECRET" \
		--allocations "$TURN_ALLOCATIONS" --rate "$TURN_RATE" --size "$TURN_SIZE" \
		--duration "$TURN_DURATION" --pid "$pid" --progress 10s
}

# ---------------------------------------------------------------- servers

# run_poosms NAME DB: poosmsd on the store DB ("sqlite" or a mysql:// DSN).
run_poosms() {
	local name=$1 db=$2 dir=$TMP/$1 pid
	mkdir -p "$dir"
	local args=(--data-dir "$dir" --domain "$DOMAIN" --db "$db" --registration closed
		--tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" --log-level warn
		--c2s-addr "127.0.0.1:$P_C2S" --c2s-tls-addr "" --http-addr "127.0.0.1:$P_HTTP" --metrics-addr "" --scram-iterations 4096
		--s2s-addr ""
		--media-udp-addr "127.0.0.1:$P_MEDIA" --media-tcp-addr ""
		--turn-addr "127.0.0.1:$P_TURN" --turn-secret "$TURN_SECRET" --turn-allow-peers 127.0.0.0/8 --turn-allow-self)
	# Every account in one XEP-0227 file and one command (the SCRAM keys
	# are derived on import), as for ejabberd below.
	log "$name: creating $CLIENTS accounts (poosmsd import)"
	{
		echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='$DOMAIN'>"
		for ((i = 0; i < CLIENTS; i++)); do echo "<user name='bench$i' password='$PASSWORD'/>"; done
		echo "</host></server-data>"
	} >"$dir/accounts.xml"
	"$TMP/bin/poosmsd" import "$dir/accounts.xml" "${args[@]}" >"$dir/import.log" 2>&1 ||
		{ tail -20 "$dir/import.log" >&2; log "$name: account creation failed"; return 1; }
	"${SERVER_CPU[@]}" "$TMP/bin/poosmsd" serve "${args[@]}" >"$dir/server.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port "$P_C2S" "$pid" || { tail -20 "$dir/server.log" >&2; return 1; }
	local dbpid= dbcpu0=
	if [ "$name" = poosms-mysql ]; then
		# The database server's CPU, for the record: it is not pinned and
		# may serve others on this machine.
		dbpid=$(pidof mariadbd || pidof mysqld || true)
		dbpid=${dbpid%% *}
		[ -z "$dbpid" ] || dbcpu0=$(proc_cpu "$dbpid")
	fi
	chat_load "$name" "$P_C2S" "$pid" || true
	if [ -n "$dbcpu0" ]; then
		# Before and after; poosms-bench compare takes the difference.
		{ echo "$dbcpu0"; proc_cpu "$dbpid"; } >"$TMP/results/$name-dbcpu"
	fi
	if want coturn && [ "$name" = poosms ]; then turn_load poosms "$P_TURN" "$pid" || true; fi
	stop_pid "$pid"
}

# proc_cpu PID: user+system CPU seconds of PID.
proc_cpu() {
	awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / t }' "/proc/$1/stat"
}

# run_poosms_mysql: poosmsd on a database of its own on $MYSQL_HOST,
# dropped at the end.
run_poosms_mysql() {
	command -v mariadb >/dev/null || { log "poosms-mysql: no mariadb client"; return 1; }
	MYSQL_DB=poosms_compare_$$
	mysql_admin -e "CREATE DATABASE $MYSQL_DB CHARACTER SET utf8mb4" ||
		{ log "poosms-mysql: cannot create database $MYSQL_DB on $MYSQL_HOST:$MYSQL_PORT"; MYSQL_DB=; return 1; }
	local cred=$MYSQL_USER
	[ -z "${MYSQL_PWD:-}" ] || cred+=":$MYSQL_PWD"
	run_poosms poosms-mysql "mysql://$cred@tcp($MYSQL_HOST:$MYSQL_PORT)/$MYSQL_DB" || true
	mysql_admin -e "DROP DATABASE IF EXISTS $MYSQL_DB" || true
	MYSQL_DB=
}

run_prosody() {
	local dir=$TMP/prosody pid i mam= storage=
	mkdir -p "$dir/data"
	if [ "$PEER_ARCHIVE" = 1 ]; then
		# Archiving, into the store Prosody's documentation recommends over
		# its files: SQL (SQLite here, through lua-dbi-sqlite3).
		mam='"mam",'
		storage="storage = \"sql\"
sql = { driver = \"SQLite3\", database = \"$dir/data/prosody.sqlite\" }"
	fi
	cat >"$dir/prosody.cfg.lua" <<EOF
-- Debian's default module list without server-to-server, HTTP, invites,
-- registration, admin and mod_limits (which would throttle the bench).
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
certificates = "$dir"
log = { warn = "$dir/prosody.log" } -- the same level as the others
network_backend = "epoll"
modules_enabled = {
	"disco", "roster", "saslauth", "tls", "blocklist", "bookmarks", "carbons",
	"pep", "private", "smacks", "vcard4", "vcard_legacy", "csi_simple", "ping",
	"time", "uptime", "version", $mam
}
default_archive_policy = true
modules_disabled = { "s2s" }
c2s_ports = { $PR_C2S }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
c2s_require_encryption = true
authentication = "internal_hashed"
$storage
password_hash = "$PROSODY_HASH"
default_iteration_count = $ITERATIONS
ssl = { certificate = "$TMP/cert.pem", key = "$TMP/key.pem" }
VirtualHost "$DOMAIN"
EOF
	# One account through prosodyctl, then the same stored record (salt and
	# SCRAM keys, no plain password) for the others: register is a process
	# start per account.
	log "prosody: creating $CLIENTS accounts (prosodyctl register, then copies of its record)"
	prosodyctl --config "$dir/prosody.cfg.lua" register bench0 "$DOMAIN" "$PASSWORD" >"$dir/register.log" 2>&1 \
		|| { tail -20 "$dir/register.log" >&2; return 1; }
	if [ "$PEER_ARCHIVE" = 1 ]; then
		local db=$dir/data/prosody.sqlite
		[ "$(sqlite3 "$db" "SELECT COUNT(*) FROM prosody WHERE user = 'bench0' AND store = 'accounts'")" -gt 0 ] ||
			{ log "prosody: bench0 is not in $db"; return 1; }
		sqlite3 "$db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $CLIENTS - 1)
			INSERT INTO prosody (host, user, store, key, type, value)
			SELECT p.host, 'bench' || n.i, p.store, p.key, p.type, p.value FROM prosody p, n
			WHERE p.user = 'bench0' AND p.store = 'accounts'"
	else
		local acc=$dir/data/$DOMAIN/accounts
		[ -s "$acc/bench0.dat" ] || { log "prosody: no $acc/bench0.dat"; return 1; }
		for ((i = 1; i < CLIENTS; i++)); do cp "$acc/bench0.dat" "$acc/bench$i.dat"; done
	fi
	"${SERVER_CPU[@]}" prosody --config "$dir/prosody.cfg.lua" -F >"$dir/stdout.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port "$PR_C2S" "$pid" || { tail -20 "$dir/prosody.log" >&2; return 1; }
	chat_load prosody "$PR_C2S" "$pid" || true
	stop_pid "$pid"
}

# run_ejabberd NAME STORE: ejabberd archiving into STORE (sqlite or mysql)
# when archiving.
run_ejabberd() {
	local name=$1 store=$2 dir=$TMP/$1 pid i
	[ "$(id -u)" = 0 ] || { log "ejabberd: needs root (ejabberdctl runs it as the ejabberd user)"; return 1; }
	mkdir -p "$dir/db" "$dir/log"
	cat "$TMP/cert.pem" "$TMP/key.pem" >"$dir/server.pem"
	local EJ_AUTH=internal EJ_DB=
	if [ "$PEER_ARCHIVE" = 1 ] && [ "$store" = mysql ]; then
		# MariaDB/MySQL (erlang-p1-mysql), a database of its own created
		# from ejabberd's schema and dropped at the end.
		command -v mariadb >/dev/null || { log "$name: no mariadb client"; return 1; }
		local schema
		schema=$(ls /usr/share/ejabberd/sql/mysql.sql /usr/lib/*/ejabberd-*/priv/sql/mysql.sql 2>/dev/null | head -1)
		[ -n "$schema" ] || { log "$name: no mysql.sql schema found"; return 1; }
		EJ_MYSQL_DB=ejabberd_compare_$$
		mysql_admin -e "CREATE DATABASE $EJ_MYSQL_DB CHARACTER SET utf8mb4" ||
			{ log "$name: cannot create database $EJ_MYSQL_DB"; EJ_MYSQL_DB=; return 1; }
		mysql_admin "$EJ_MYSQL_DB" <"$schema" || { log "$name: cannot load $schema"; return 1; }
		# A user of its own with a password: ejabberd's driver cannot log
		# in without one.
		local ejpw
		ejpw=$(openssl rand -hex 12)
		mysql_admin -e "CREATE USER '$EJ_MYSQL_DB'@'%' IDENTIFIED BY '$ejpw'; GRANT ALL ON $EJ_MYSQL_DB.* TO '$EJ_MYSQL_DB'@'%'" ||
			{ log "$name: cannot create the database user"; return 1; }
		EJ_AUTH=sql
		EJ_DB="default_db: sql
sql_type: mysql
sql_server: \"$MYSQL_HOST\"
sql_port: $MYSQL_PORT
sql_database: \"$EJ_MYSQL_DB\"
sql_username: \"$EJ_MYSQL_DB\"
sql_password: \"$ejpw\""
	elif [ "$PEER_ARCHIVE" = 1 ]; then
		# Archiving, into SQL rather than Mnesia, as ejabberd's
		# documentation recommends: SQLite here (erlang-p1-sqlite3),
		# created from ejabberd's own schema.
		local schema
		schema=$(ls /usr/share/ejabberd/sql/lite.sql /usr/lib/*/ejabberd-*/priv/sql/lite.sql 2>/dev/null | head -1)
		[ -n "$schema" ] || { log "ejabberd: no lite.sql schema found"; return 1; }
		sqlite3 "$dir/db/ejabberd.sqlite" <"$schema" || { log "ejabberd: cannot create $dir/db/ejabberd.sqlite"; return 1; }
		EJ_AUTH=sql
		EJ_DB="default_db: sql
sql_type: sqlite
sql_database: \"$dir/db/ejabberd.sqlite\""
	fi
	cp /etc/ejabberd/inetrc "$dir/inetrc" 2>/dev/null || echo '{lookup,["file","native"]}.' >"$dir/inetrc"
	cat >"$dir/ejabberdctl.cfg" <<EOF
ERL_DIST_PORT=$EJ_DIST
INET_DIST_INTERFACE=127.0.0.1
EJABBERD_PID_PATH=$dir/ejabberd.pid
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
EOF
	# Debian's default module list without MUC, HTTP, MQTT, push, admin and
	# fail2ban; no shaper, a deep queue, a listen backlog above the
	# login concurrency.
	cat >"$dir/ejabberd.yml" <<EOF
loglevel: warning
log_rotate_count: 0
hosts:
  - $DOMAIN
certfiles:
  - "$dir/server.pem"
listen:
  -
    port: $EJ_C2S
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls_required: true
    max_fsm_queue: 100000
    backlog: 1024
auth_method: $EJ_AUTH
$EJ_DB
auth_password_format: scram
auth_scram_hash: $EJABBERD_HASH
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 1000
modules:
  mod_blocking: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_client_state: {}
  mod_disco: {}
  mod_last: {}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {}
  mod_privacy: {}
  mod_private: {}
  mod_pubsub:
    plugins:
      - flat
      - pep
  mod_roster:
    versioning: true
  mod_stream_mgmt: {}
  mod_vcard:
    search: false
  mod_version: {}
EOF
	if [ "$PEER_ARCHIVE" = 1 ]; then
		printf '  mod_mam:\n    default: always\n' >>"$dir/ejabberd.yml"
	fi
	{
		echo "<?xml version='1.0' encoding='UTF-8'?>"
		echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='$DOMAIN'>"
		for ((i = 0; i < CLIENTS; i++)); do echo "<user name='bench$i' password='$PASSWORD'/>"; done
		echo "</host></server-data>"
	} >"$dir/accounts.xml"
	chown -R ejabberd:ejabberd "$dir"
	# ejabberdctl run as root switches to the ejabberd user through su, whose
	# PAM session resets the open-file limit (to 1024 here: accepts failed
	# with "too many open files" beyond that). setpriv switches without PAM,
	# so the server keeps this script's limit like the others.
	local ejhome
	EJ_DIR=$dir
	ejhome=$(getent passwd ejabberd | cut -d: -f6)
	EJ_CTL=(env HOME="${ejhome:-/var/lib/ejabberd}" setpriv --reuid=ejabberd --regid=ejabberd --init-groups
		ejabberdctl --config-dir "$dir" --config "$dir/ejabberd.yml" --spool "$dir/db"
		--logs "$dir/log" --node "${name//-/}$$@localhost")
	log "ejabberd: starting"
	"${SERVER_CPU[@]}" "${EJ_CTL[@]}" start >"$dir/ctl.log" 2>&1 || { cat "$dir/ctl.log" >&2; return 1; }
	"${EJ_CTL[@]}" started >>"$dir/ctl.log" 2>&1 || { tail -20 "$dir"/log/*.log >&2; return 1; }
	pid=$(cat "$dir/ejabberd.pid")
	PIDS+=("$pid")
	wait_port "$EJ_C2S" "$pid" || return 1
	# ejabberdctl register is a VM start per account; the XEP-0227 import
	# registers them all in one call (the server computes the SCRAM keys).
	log "ejabberd: creating $CLIENTS accounts (ejabberdctl import_piefxis)"
	timeout 900 "${EJ_CTL[@]}" --no-timeout import_piefxis "$dir/accounts.xml" >>"$dir/ctl.log" 2>&1 || { tail "$dir/ctl.log" >&2; return 1; }
	local dbpid= dbcpu0=
	if [ "$store" = mysql ] && [ "$PEER_ARCHIVE" = 1 ]; then
		dbpid=$(pidof mariadbd || pidof mysqld || true)
		dbpid=${dbpid%% *}
		[ -z "$dbpid" ] || dbcpu0=$(proc_cpu "$dbpid")
	fi
	chat_load "$name" "$EJ_C2S" "$pid" || true
	if [ -n "$dbcpu0" ]; then
		# Before and after; poosms-bench compare takes the difference.
		{ echo "$dbcpu0"; proc_cpu "$dbpid"; } >"$TMP/results/$name-dbcpu"
	fi
	"${EJ_CTL[@]}" stop >>"$dir/ctl.log" 2>&1 || true
	stop_pid "$pid"
	EJ_CTL=()
	if [ -n "$EJ_MYSQL_DB" ]; then
		mysql_admin -e "DROP DATABASE IF EXISTS $EJ_MYSQL_DB; DROP USER IF EXISTS '$EJ_MYSQL_DB'@'%'" || true
		EJ_MYSQL_DB=
	fi
}

run_coturn() {
	local dir=$TMP/coturn pid
	mkdir -p "$dir"
	turnserver --listening-ip 127.0.0.1 --listening-port "$CT_TURN" --relay-ip 127.0.0.1 \
		--min-port "$CT_RELAY_MIN" --max-port "$CT_RELAY_MAX" --realm "$DOMAIN" \
		--use-auth-secret --static-auth-secret "$TURN_SECRET" --allow-loopback-peers \
		--no-cli --no-tls --no-dtls --no-tcp-relay --no-rfc5780 --fingerprint \
		--userdb "$dir/turndb" --pidfile "$dir/turnserver.pid" \
		--log-file "$dir/turn.log" --simple-log --no-stdout-log >"$dir/stdout.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port "$CT_TURN" "$pid" || { tail -20 "$dir/stdout.log" >&2; return 1; }
	turn_load coturn "$CT_TURN" "$pid" || true
	stop_pid "$pid"
}

# ---------------------------------------------------------------- report

# report [--json]: every server's results, from $TMP/results, as one
# table with the ratios poosms/peer (poosms-bench compare reads the runs'
# JSON with the load tool's own types).
report() {
	local flags=()
	[ "$PEER_ARCHIVE" = 1 ] && flags+=(--peer-archive)
	[ "$PIN" = 1 ] && flags+=(--pinned)
	[ "$TMPFS" = 1 ] && flags+=(--tmpfs)
	"$BENCH" compare --results "$TMP/results" --servers "$SERVERS" --rates "$RATES" \
		--clients "$CLIENTS" --mechanism "$MECHANISM" --duration "$DURATION" --drain "$DRAIN" \
		--turn-allocations "$TURN_ALLOCATIONS" --turn-rate "$TURN_RATE" --turn-size "$TURN_SIZE" \
		--turn-duration "$TURN_DURATION" "${flags[@]}" "$@"
}

# ---------------------------------------------------------------- main

install_peers
TMP_PARENT=/tmp
if [ "$TMPFS" = 1 ]; then
	[ -d /dev/shm ] && [ "$(df --output=avail -k /dev/shm | tail -1)" -gt $((2 * 1024 * 1024)) ] ||
		die "/dev/shm is missing or has less than 2 GiB free; run with --disk"
	TMP_PARENT=/dev/shm
fi
TMP=$(mktemp -d "$TMP_PARENT/poosms-compare.XXXXXX")
chmod 755 "$TMP" # ejabberd runs as its own user and must reach its folder
mkdir -p "$TMP/bin" "$TMP/results"
build
certificate
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((CLIENTS * 2 + 100)) ] ||
	log "warning: open-file limit $(ulimit -n) is low for $CLIENTS clients"
for port in $P_C2S $P_HTTP $P_TURN $PR_C2S $EJ_C2S $EJ_DIST $CT_TURN; do
	port_free "$port" || die "127.0.0.1:$port is already in use"
done

# One server at a time, so that none competes with another for the CPU.
want poosms && { run_poosms poosms sqlite || log "poosms: run failed"; }
want poosms-mysql && { run_poosms_mysql || log "poosms-mysql: run failed"; }
want prosody && { run_prosody || log "prosody: run failed"; }
want ejabberd && { run_ejabberd ejabberd sqlite || log "ejabberd: run failed"; }
want ejabberd-mysql && { run_ejabberd ejabberd-mysql mysql || log "ejabberd-mysql: run failed"; }
want coturn && { run_coturn || log "coturn: run failed"; }

[ "$JSON" = 1 ] || echo "compare.sh $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1))"
if [ "$JSON" = 1 ]; then report --json; else report; fi
