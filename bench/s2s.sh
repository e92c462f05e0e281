#!/usr/bin/env bash
# s2s.sh — messages per second and latency across one server-to-server
# stream: poosms → poosms, poosms → Prosody and Prosody → Prosody, on this
# machine, in one run.
#
# Run as root on Debian 12 from anywhere inside the poosms checkout:
#
#	bench/s2s.sh              # full run (about ten minutes)
#	bench/s2s.sh --quick      # smoke test (about two minutes)
#
# Every server runs inside a network namespace the script creates, each on
# a loopback address of its own, the test domains mapped by the
# namespace's hosts file (see docs/federation.md, "How it is tested").
# Nothing leaves the machine.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: bench/s2s.sh [flags]

  --quick            smoke test: 2 rates of 5 s
  --rates LIST       offered msgs/s, comma-separated, one step each   [RATES=250,500,1000,2000,4000]
  --duration D       each step's duration (Go syntax)                  [DURATION=10s]
  --pairs N          sender/receiver pairs, all on one stream          [PAIRS=10]
  --runs LIST        subset of poosms,poosms-unlimited,prosody,prosody-prosody
                     (default: all)                                    [RUNS=…]
  --server-cpu N     CPU both servers are pinned to (taskset)          [SERVER_CPU=1]
  --tool-cpu N       CPU the load tool is pinned to                    [TOOL_CPU=0]
  --no-pin           no taskset: servers and tool share every CPU
  --keep             keep the temporary folder (configs, logs, JSON)
  -h, --help         this text

Runs (sender → receiver, the load tool's clients on both):
  poosms            poosmsd a.test → poosmsd b.test, default settings (the
                    receiver delivers at most 500 stanzas/s per incoming
                    stream, --s2s-stanza-rate)
  poosms-unlimited  the same with --s2s-stanza-rate 1000000 on the receiver
  prosody           poosmsd a.test → Prosody prosody1.test
  prosody-prosody   Prosody prosody1.test → Prosody prosody2.test

Each flag can also be given as the environment variable in brackets.
EOF
}

RATES=${RATES:-250,500,1000,2000,4000}
DURATION=${DURATION:-10s}
PAIRS=${PAIRS:-10}
RUNS=${RUNS:-poosms,poosms-unlimited,prosody,prosody-prosody}
SERVER_CPU=${SERVER_CPU:-1}
TOOL_CPU=${TOOL_CPU:-0}
PIN=1
KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--quick) RATES=250,1000 DURATION=5s; shift ;;
	--rates) RATES=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--pairs) PAIRS=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--server-cpu) SERVER_CPU=$2; shift 2 ;;
	--tool-cpu) TOOL_CPU=$2; shift 2 ;;
	--no-pin) PIN=0; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "s2s.sh: unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
done

log() { printf '%s s2s: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { case ",$RUNS," in *",$1,"*) return 0 ;; esac; return 1; }

[ "$(id -u)" = 0 ] || die "run as root: the servers run in a network namespace this script creates"
for c in ip go prosody prosodyctl; do command -v "$c" >/dev/null || die "$c is missing (apt-get install -y iproute2 prosody lua-unbound; Go from go.mod)"; done
ls /usr/lib/*/lua/*/lunbound.so >/dev/null 2>&1 || die "lua-unbound is missing: without it Prosody ignores the namespace's hosts file"
[ "$PIN" = 0 ] || command -v taskset >/dev/null || die "taskset (util-linux) is missing; or --no-pin"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d /tmp/poosms-s2s.XXXXXX)
NS=poosmss2s$$
PASSWORD=bench-password
PIDS=()

cleanup() {
	set +e
	stop_all
	ip netns del "$NS" 2>/dev/null
	rm -rf "/etc/netns/$NS"
	if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

stop_all() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	PIDS=()
}

in_ns() { ip netns exec "$NS" "$@"; }
server_pin() { [ "$PIN" = 1 ] && echo "taskset -c $SERVER_CPU"; return 0; }
tool_pin() { [ "$PIN" = 1 ] && echo "taskset -c $TOOL_CPU"; return 0; }

# wait_port IP PORT: until something accepts TCP there (inside the namespace).
wait_port() {
	for _ in $(seq 300); do
		in_ns bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listens on $1:$2"
}

log "building poosmsd and poosms-bench"
mkdir -p "$TMP/bin"
(cd "$REPO" && go build -o "$TMP/bin/poosmsd" ./cmd/poosmsd && go build -o "$TMP/bin/poosms-bench" ./cmd/poosms-bench)

log "network namespace $NS"
mkdir -p "/etc/netns/$NS"
cat >"/etc/netns/$NS/hosts" <<'EOF'
127.0.0.1 localhost
127.0.0.2 a.test conference.a.test upload.a.test directory.a.test
127.0.0.3 b.test conference.b.test upload.b.test directory.b.test
127.0.0.4 prosody1.test
127.0.0.5 prosody2.test
EOF
echo "nameserver 127.0.0.1" >"/etc/netns/$NS/resolv.conf" # nothing answers: no SRV, A records from hosts
ip netns add "$NS"
in_ns ip link set lo up

# poosmsd DOMAIN IP [flags…]: prepared data folder with the bench accounts.
prepare_poosms() {
	local domain=$1 dir=$TMP/$1
	mkdir -p "$dir"
	for i in $(seq 0 $((PAIRS - 1))); do
		printf '%s\n' "$PASSWORD" | "$TMP/bin/poosmsd" user add "bench$i" --data-dir "$dir" --domain "$domain" >/dev/null 2>&1
	done
}
start_poosms() {
	local domain=$1 ip=$2 dir=$TMP/$1
	shift 2
	# Not through in_ns: $! must be the server's own process (ip and
	# taskset exec it).
	# shellcheck disable=SC2046
	ip netns exec "$NS" $(server_pin) "$TMP/bin/poosmsd" serve --domain "$domain" --data-dir "$dir" \
		--c2s-addr "$ip:5222" --c2s-tls-addr "" --http-addr "$ip:5280" --metrics-addr "" \
		--media-udp-addr "$ip:7882" --media-tcp-addr "" --turn-addr "" \
		--s2s-addr "$ip:5269" --s2s-tls-addr "" --log-level "${LOG_LEVEL:-warn}" "$@" >>"$dir/server.log" 2>&1 &
	PIDS+=($!)
	wait_port "$ip" 5222
	wait_port "$ip" 5269
}

prepare_prosody() {
	local domain=$1 ip=$2 dir=$TMP/$1
	mkdir -p "$dir/data"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$domain" \
		-keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
	chmod 644 "$dir/key.pem"
	cat >"$dir/prosody.cfg.lua" <<EOF
-- Written by poosms's bench/s2s.sh.
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { warn = "$dir/prosody.log" }
network_backend = "epoll"
unbound = { hoststxt = "/etc/hosts" }
interfaces = { "$ip" }
c2s_ports = { 5222 }
s2s_ports = { 5269 }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
legacy_ssl_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "disco", "roster", "saslauth", "tls", "dialback", "ping", "offline" }
modules_disabled = { "limits" }
s2s_require_encryption = true
s2s_secure_auth = false
c2s_require_encryption = true
authentication = "internal_hashed"
password_hash = "SHA-256"
ssl = { certificate = "$dir/cert.pem"; key = "$dir/key.pem"; }
VirtualHost "$domain"
EOF
	for i in $(seq 0 $((PAIRS - 1))); do
		prosodyctl --config "$dir/prosody.cfg.lua" register "bench$i" "$domain" "$PASSWORD" >/dev/null
	done
}
start_prosody() {
	local domain=$1 ip=$2 dir=$TMP/$1
	# shellcheck disable=SC2046
	ip netns exec "$NS" $(server_pin) prosody --config "$dir/prosody.cfg.lua" -F >>"$dir/stdout.log" 2>&1 &
	PIDS+=($!)
	wait_port "$ip" 5222
	wait_port "$ip" 5269
}

# measure NAME FROM-IP FROM-DOMAIN TO-IP TO-DOMAIN: the load, its JSON kept.
measure() {
	local name=$1
	log "$name: $3 → $5, rates $RATES, $DURATION each (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	local pids
	pids=$(IFS=,; echo "${PIDS[*]}")
	# shellcheck disable=SC2046
	in_ns $(tool_pin) "$TMP/bin/poosms-bench" s2s --json --from-addr "$2:5222" --from-domain "$3" \
		--to-addr "$4:5222" --to-domain "$5" --pairs "$PAIRS" --rates "$RATES" --duration "$DURATION" \
		--pids "$pids" >"$TMP/$name.json"
	log "$name: done (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	stop_all
}

want poosms || want poosms-unlimited || want prosody && prepare_poosms a.test
want poosms || want poosms-unlimited && prepare_poosms b.test
want prosody || want prosody-prosody && prepare_prosody prosody1.test 127.0.0.4
want prosody-prosody && prepare_prosody prosody2.test 127.0.0.5

if want poosms; then
	start_poosms a.test 127.0.0.2
	start_poosms b.test 127.0.0.3
	measure poosms 127.0.0.2 a.test 127.0.0.3 b.test
fi
if want poosms-unlimited; then
	start_poosms a.test 127.0.0.2
	start_poosms b.test 127.0.0.3 --s2s-stanza-rate 1000000
	measure poosms-unlimited 127.0.0.2 a.test 127.0.0.3 b.test
fi
if want prosody; then
	start_poosms a.test 127.0.0.2
	start_prosody prosody1.test 127.0.0.4
	measure prosody 127.0.0.2 a.test 127.0.0.4 prosody1.test
fi
if want prosody-prosody; then
	start_prosody prosody1.test 127.0.0.4
	start_prosody prosody2.test 127.0.0.5
	measure prosody-prosody 127.0.0.4 prosody1.test 127.0.0.5 prosody2.test
fi

# One table: a row per offered rate, delivered msgs/s and p99 per run.
python3 - "$TMP" "$RUNS" <<'EOF'
import json, os, sys
tmp, runs = sys.argv[1], sys.argv[2].split(",")
results = {r: json.load(open(os.path.join(tmp, r + ".json"))) for r in runs if os.path.exists(os.path.join(tmp, r + ".json"))}
names = {"poosms": "poosms → poosms", "poosms-unlimited": "poosms → poosms (no rate limit)",
         "prosody": "poosms → Prosody", "prosody-prosody": "Prosody → Prosody"}
cols = [r for r in runs if r in results]
print("| offered msgs/s | " + " | ".join(names[c] + ": delivered/s (p99 ms)" for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
rates = [s["offered_messages_per_second"] for s in results[cols[0]]["steps"]] if cols else []
for i, rate in enumerate(rates):
    cells = []
    for c in cols:
        s = results[c]["steps"][i]
        lost = s["sent"] - s["delivered"]
        cell = "%.0f (%.1f)" % (s["throughput_messages_per_second"], s["latency_p99_ms"])
        if lost or s["errors"]:
            cell += ", %d lost, %d errors" % (lost, s["errors"])
        cells.append(cell)
    print("| %.0f | %s |" % (rate, " | ".join(cells)))
print()
print("server CPU seconds per 1,000 delivered messages (both servers):")
for c in cols:
    per = ["%.2f" % (1000 * s["server_cpu_seconds"] / s["delivered"]) if s["delivered"] else "-" for s in results[c]["steps"]]
    print("  %s: %s" % (names[c], ", ".join(per)))
EOF
