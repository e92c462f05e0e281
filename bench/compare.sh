#!/usr/bin/env bash
# compare.sh — the same load against poosms, Prosody, ejabberd and coturn on
# this machine, in one run, and one table of the ratios poosms/peer.
#
# Run as root on Debian 12 from anywhere inside the poosms checkout:
#
#	bench/compare.sh            # full run (a few minutes)
#	bench/compare.sh --quick    # smoke test (200 clients, short runs)
#	bench/compare.sh --json     # the same figures as JSON on standard output
#
# See bench/README.md for what is measured and how each server is set up.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: bench/compare.sh [flags]

  --quick                 smoke test: 200 clients, 200 msgs/s, 10 s; small TURN run
  --json                  print the results as JSON instead of a table
  --servers LIST          comma-separated subset of poosms,prosody,ejabberd,coturn
                          (default: all; ratios need poosms)
  --clients N             chat clients logged in to each server      [CLIENTS=2000]
  --rate R                offered chat messages/s, all clients       [RATE=500]
  --duration D            chat message load duration (Go syntax)     [DURATION=20s]
  --login-concurrency N   logins in flight at once                   [LOGIN_CONCURRENCY=50]
  --mechanism M           SCRAM-SHA-256 or SCRAM-SHA-1, for every server [MECHANISM=SCRAM-SHA-256]
  --turn-allocations N    TURN allocations, at most 10               [TURN_ALLOCATIONS=10]
  --turn-rate R           packets/s per allocation                   [TURN_RATE=1500]
  --turn-size B           payload bytes per packet                   [TURN_SIZE=200]
  --turn-duration D       TURN load duration                         [TURN_DURATION=15s]
  --peer-archive          Prosody and ejabberd archive every one-to-one message
                          too (mod_mam, default always), as poosms always does;
                          off by default: neither archives in its default setup
  --keep                  keep the temporary folder (configs, logs, raw results)
  -h, --help              this text

Each flag can also be given as the environment variable in brackets.
EOF
}

CLIENTS=${CLIENTS:-2000}
RATE=${RATE:-500}
DURATION=${DURATION:-20s}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-50}
MECHANISM=${MECHANISM:-SCRAM-SHA-256}
TURN_ALLOCATIONS=${TURN_ALLOCATIONS:-10}
TURN_RATE=${TURN_RATE:-1500}
TURN_SIZE=${TURN_SIZE:-200}
TURN_DURATION=${TURN_DURATION:-15s}
SERVERS=${SERVERS:-poosms,prosody,ejabberd,coturn}
JSON=0
KEEP=0
PEER_ARCHIVE=${PEER_ARCHIVE:-0}

while [ $# -gt 0 ]; do
	case $1 in
	--quick)
		CLIENTS=200 RATE=200 DURATION=10s TURN_ALLOCATIONS=10 TURN_RATE=200 TURN_DURATION=5s
		shift ;;
	--json) JSON=1; shift ;;
	--keep) KEEP=1; shift ;;
	--peer-archive) PEER_ARCHIVE=1; shift ;;
	--servers) SERVERS=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
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
P_C2S=25222 P_HTTP=25280 P_MEDIA=25882 P_TURN=25478
PR_C2S=25322
EJ_C2S=25422 EJ_DIST=25469
CT_TURN=25578 CT_RELAY_MIN=25600 CT_RELAY_MAX=25999
# Client sockets spread over several loopback source addresses.
SOURCES=127.0.0.1-127.0.0.$((CLIENTS / 20000 + 2))

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=
POLICY_CREATED=0
PIDS=()           # processes we started
EJ_CTL=()         # ejabberdctl with our folders, once configured

cleanup() {
	local rc=$?
	set +e
	if [ ${#EJ_CTL[@]} -gt 0 ] && [ -s "$TMP/ejabberd/ejabberd.pid" ]; then
		PIDS+=("$(cat "$TMP/ejabberd/ejabberd.pid")")
		"${EJ_CTL[@]}" stop >/dev/null 2>&1
	fi
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
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
	want ejabberd && ! command -v ejabberdctl >/dev/null && pkgs+=(ejabberd)
	want coturn && ! command -v turnserver >/dev/null && pkgs+=(coturn)
	command -v openssl >/dev/null || pkgs+=(openssl)
	command -v jq >/dev/null || pkgs+=(jq)
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
	"$BENCH" "$@" >"$out" &
	pid=$!
	PIDS+=("$pid")
	wait "$pid"
}

# chat_load NAME PORT PID: the chat run against one server. Writes
# $TMP/results/NAME-chat.json and NAME-baseline (RSS before any login).
chat_load() {
	local name=$1 port=$2 pid=$3
	rss_bytes "$pid" >"$TMP/results/$name-baseline"
	log "$name: $CLIENTS clients log in, then $RATE msgs/s for $DURATION"
	bench "$TMP/results/$name-chat.json" chat --json --addr "127.0.0.1:$port" --domain "$DOMAIN" --clients "$CLIENTS" \
		--password "$PASSWORD" --mechanism "$MECHANISM" --rate "$RATE" --duration "$DURATION" \
		--login-concurrency "$LOGIN_CONCURRENCY" --sources "$SOURCES" --pid "$pid" \
		--progress 10s
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

run_poosms() {
	local dir=$TMP/poosms pid
	mkdir -p "$dir"
	local args=(--data-dir "$dir" --domain "$DOMAIN" --db "sqlite" --registration closed
		--tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" --log-level warn
		--c2s-addr "127.0.0.1:$P_C2S" --c2s-tls-addr "" --http-addr "127.0.0.1:$P_HTTP" --metrics-addr "" --scram-iterations 4096
		--s2s-addr ""
		--media-udp-addr "127.0.0.1:$P_MEDIA" --media-tcp-addr ""
		--turn-addr "127.0.0.1:$P_TURN" --turn-secret "$TURN_SECRET" --turn-allow-peers 127.0.0.0/8 --turn-allow-self)
	# Every account in one XEP-0227 file and one command (the SCRAM keys
	# are derived on import), as for ejabberd below.
	log "poosms: creating $CLIENTS accounts (poosmsd import)"
	{
		echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='$DOMAIN'>"
		for ((i = 0; i < CLIENTS; i++)); do echo "<user name='bench$i' password='$PASSWORD'/>"; done
		echo "</host></server-data>"
	} >"$dir/accounts.xml"
	"$TMP/bin/poosmsd" import "$dir/accounts.xml" "${args[@]}" >"$dir/import.log" 2>&1 ||
		{ tail -20 "$dir/import.log" >&2; log "poosms: account creation failed"; return 1; }
	"$TMP/bin/poosmsd" serve "${args[@]}" >"$dir/server.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port "$P_C2S" "$pid" || { tail -20 "$dir/server.log" >&2; return 1; }
	chat_load poosms "$P_C2S" "$pid" || true
	if want coturn; then turn_load poosms "$P_TURN" "$pid" || true; fi
	stop_pid "$pid"
}

run_prosody() {
	local dir=$TMP/prosody pid i mam=
	mkdir -p "$dir/data"
	if [ "$PEER_ARCHIVE" = 1 ]; then mam='"mam",'; fi
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
	local acc=$dir/data/$DOMAIN/accounts
	[ -s "$acc/bench0.dat" ] || { log "prosody: no $acc/bench0.dat"; return 1; }
	for ((i = 1; i < CLIENTS; i++)); do cp "$acc/bench0.dat" "$acc/bench$i.dat"; done
	prosody --config "$dir/prosody.cfg.lua" -F >"$dir/stdout.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port "$PR_C2S" "$pid" || { tail -20 "$dir/prosody.log" >&2; return 1; }
	chat_load prosody "$PR_C2S" "$pid" || true
	stop_pid "$pid"
}

run_ejabberd() {
	local dir=$TMP/ejabberd pid i
	[ "$(id -u)" = 0 ] || { log "ejabberd: needs root (ejabberdctl runs it as the ejabberd user)"; return 1; }
	mkdir -p "$dir/db" "$dir/log"
	cat "$TMP/cert.pem" "$TMP/key.pem" >"$dir/server.pem"
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
auth_method: internal
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
	ejhome=$(getent passwd ejabberd | cut -d: -f6)
	EJ_CTL=(env HOME="${ejhome:-/var/lib/ejabberd}" setpriv --reuid=ejabberd --regid=ejabberd --init-groups
		ejabberdctl --config-dir "$dir" --config "$dir/ejabberd.yml" --spool "$dir/db"
		--logs "$dir/log" --node "compare$$@localhost")
	log "ejabberd: starting"
	"${EJ_CTL[@]}" start >"$dir/ctl.log" 2>&1 || { cat "$dir/ctl.log" >&2; return 1; }
	"${EJ_CTL[@]}" started >>"$dir/ctl.log" 2>&1 || { tail -20 "$dir"/log/*.log >&2; return 1; }
	pid=$(cat "$dir/ejabberd.pid")
	PIDS+=("$pid")
	wait_port "$EJ_C2S" "$pid" || return 1
	# ejabberdctl register is a VM start per account; the XEP-0227 import
	# registers them all in one call (the server computes the SCRAM keys).
	log "ejabberd: creating $CLIENTS accounts (ejabberdctl import_piefxis)"
	"${EJ_CTL[@]}" --no-timeout import_piefxis "$dir/accounts.xml" >>"$dir/ctl.log" 2>&1 || { tail "$dir/ctl.log" >&2; return 1; }
	chat_load ejabberd "$EJ_C2S" "$pid" || true
	"${EJ_CTL[@]}" stop >>"$dir/ctl.log" 2>&1 || true
	stop_pid "$pid"
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

# jget FILE PATH: a number from the bench's JSON, PATH a jq path such as
# .steps[0].lost ("-" if absent).
jget() {
	local v=
	[ -s "$1" ] && v=$(jq -r "$2 // empty" "$1" 2>/dev/null)
	echo "${v:--}"
}

# figure SERVER NAME: one figure of one server, "-" when not measured.
figure() {
	local s=$1 f=$TMP/results/$1-chat.json t=$TMP/results/$1-turn.json
	case $2 in
	logins) jget "$f" .logins_per_second ;;
	login_errors) jget "$f" .login_errors ;;
	delivered) jget "$f" '.steps[0].delivered_per_second_over_delivery_window' ;;
	delivery) jget "$f" '.steps[0].delivery_window_seconds' ;;
	p50) jget "$f" '.steps[0].latency_p50_ms' ;;
	p99) jget "$f" '.steps[0].latency_p99_ms' ;;
	p999) jget "$f" '.steps[0].latency_p999_ms' ;;
	chat_cpu) jget "$f" .server_cpu_seconds ;;
	peak_rss) jget "$f" .server_peak_rss_bytes | awk '{ if ($1 == "-") print "-"; else printf "%.1f\n", $1 / 1048576 }' ;;
	idle_kib)
		# (RSS after every login − RSS before the first) / sessions.
		local after base n
		after=$(jget "$f" .server_rss_after_login_bytes)
		base=$(cat "$TMP/results/$s-baseline" 2>/dev/null || echo -)
		n=$(jget "$f" .clients)
		local errs
		errs=$(jget "$f" .login_errors)
		if [ "$after" = - ] || [ "$base" = - ] || [ -z "$base" ]; then echo -; else
			awk -v a="$after" -v b="$base" -v n="$n" -v e="$errs" 'BEGIN { printf "%.1f\n", (a - b) / (n - e) / 1024 }'
		fi ;;
	turn_pps) jget "$t" .relayed_packets_per_second ;;
	turn_loss) jget "$t" .loss_percent ;;
	turn_cpu) jget "$t" .server_cpu_microseconds_per_relayed_packet ;;
	esac
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
}

CHAT_FIGS="logins delivered delivery p50 p99 p999 idle_kib peak_rss chat_cpu login_errors"
TURN_FIGS="turn_pps turn_loss turn_cpu"
label() {
	case $1 in
	logins) echo "logins/s|higher" ;;
	login_errors) echo "failed logins|lower" ;;
	delivered) echo "delivered msgs/s (offered $RATE)|higher" ;;
	delivery) echo "s from first send to last delivery|lower" ;;
	p50) echo "latency p50 ms|lower" ;;
	p99) echo "latency p99 ms|lower" ;;
	p999) echo "latency p99.9 ms|lower" ;;
	idle_kib) echo "RSS per idle session KiB|lower" ;;
	peak_rss) echo "peak RSS MiB|lower" ;;
	chat_cpu) echo "server CPU s, chat run|lower" ;;
	turn_pps) echo "TURN relayed pkts/s|higher" ;;
	turn_loss) echo "TURN loss %|lower" ;;
	turn_cpu) echo "TURN CPU us per relayed pkt|lower" ;;
	esac
}

fmt() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else if (v + 0 >= 100) printf "%.0f\n", v; else printf "%.2f\n", v }'; }

# align: '|'-separated rows as columns, two spaces apart.
align() {
	awk -F'|' '{ rows[NR] = $0; for (i = 1; i <= NF; i++) if (length($i) > w[i]) w[i] = length($i) }
	END { for (r = 1; r <= NR; r++) { n = split(rows[r], f, "|"); line = "";
		for (i = 1; i <= n; i++) line = line sprintf(i < n ? "%-" w[i] "s  " : "%s", f[i]);
		sub(/ +$/, "", line); print line } }'
}

print_table() {
	local peers=() s fig row
	for s in prosody ejabberd; do want "$s" && peers+=("$s"); done
	echo
	echo "Side by side — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "chat: $CLIENTS clients, $MECHANISM, $RATE msgs/s offered for $DURATION, peers archiving: $([ "$PEER_ARCHIVE" = 1 ] && echo yes || echo no); turn: $TURN_ALLOCATIONS allocations × $TURN_RATE pkts/s × $TURN_SIZE B for $TURN_DURATION"
	echo
	{
		row="figure|better|poosms"
		for s in "${peers[@]}"; do row+="|$s"; done
		want coturn && row+="|coturn"
		for s in "${peers[@]}"; do row+="|poosms/$s"; done
		want coturn && row+="|poosms/coturn"
		echo "$row"
		for fig in $CHAT_FIGS; do
			row="$(label "$fig")|$(fmt "$(figure poosms "$fig")")"
			for s in "${peers[@]}"; do row+="|$(fmt "$(figure "$s" "$fig")")"; done
			want coturn && row+="|"
			for s in "${peers[@]}"; do row+="|$(ratio "$(figure poosms "$fig")" "$(figure "$s" "$fig")")"; done
			want coturn && row+="|"
			echo "$row"
		done
		if want coturn; then
			for fig in $TURN_FIGS; do
				row="$(label "$fig")|$(fmt "$(figure poosms "$fig")")"
				for s in "${peers[@]}"; do row+="|"; done
				row+="|$(fmt "$(figure coturn "$fig")")"
				for s in "${peers[@]}"; do row+="|"; done
				row+="|$(ratio "$(figure poosms "$fig")" "$(figure coturn "$fig")")"
				echo "$row"
			done
		fi
	} | align
	echo
	echo "ratio = poosms/peer; for 'higher' figures above 1 favours poosms, for 'lower' figures below 1 does."
}

print_json() {
	local s fig first=1 kind
	printf '{\n  "date": "%s",\n  "cpus": %s,\n  "load_average": "%s",\n' \
		"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
	printf '  "params": {"clients": %s, "rate": %s, "duration": "%s", "mechanism": "%s", "login_concurrency": %s, "turn_allocations": %s, "turn_rate": %s, "turn_size": %s, "turn_duration": "%s", "peer_archive": %s},\n' \
		"$CLIENTS" "$RATE" "$DURATION" "$MECHANISM" "$LOGIN_CONCURRENCY" "$TURN_ALLOCATIONS" "$TURN_RATE" "$TURN_SIZE" "$TURN_DURATION" \
		"$([ "$PEER_ARCHIVE" = 1 ] && echo true || echo false)"
	printf '  "servers": {'
	for s in poosms prosody ejabberd coturn; do
		want "$s" || continue
		[ $first = 1 ] || printf ','
		first=0
		printf '\n    "%s": {' "$s"
		printf '\n      "rss_per_idle_session_kib": %s' "$(figure "$s" idle_kib | sed 's/^-$/null/')"
		for kind in chat turn; do
			if [ -s "$TMP/results/$s-$kind.json" ]; then
				printf ',\n      "%s": ' "$kind"
				printf '%s' "$(sed '2,$s/^/      /' "$TMP/results/$s-$kind.json")"
			fi
		done
		printf '\n    }'
	done
	printf '\n  },\n  "ratios_poosms_over_peer": {'
	first=1
	for s in prosody ejabberd coturn; do
		want "$s" || continue
		local figs=$CHAT_FIGS
		[ "$s" = coturn ] && figs=$TURN_FIGS
		[ $first = 1 ] || printf ','
		first=0
		printf '\n    "%s": {' "$s"
		local f1=1
		for fig in $figs; do
			[ $f1 = 1 ] || printf ', '
			f1=0
			printf '"%s": %s' "$fig" "$(ratio "$(figure poosms "$fig")" "$(figure "$s" "$fig")" | sed 's/^-$/null/')"
		done
		printf '}'
	done
	printf '\n  }\n}\n'
}

# ---------------------------------------------------------------- main

install_peers
TMP=$(mktemp -d /tmp/poosms-compare.XXXXXX)
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
want poosms && { run_poosms || log "poosms: run failed"; }
want prosody && { run_prosody || log "prosody: run failed"; }
want ejabberd && { run_ejabberd || log "ejabberd: run failed"; }
want coturn && { run_coturn || log "coturn: run failed"; }

if [ "$JSON" = 1 ]; then print_json; else print_table; fi
