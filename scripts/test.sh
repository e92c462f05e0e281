#!/usr/bin/env bash
# Runs every poosms test on this machine: installs the third-party programs
# the tests drive (slixmpp, go-sendxmpp, coturn's TURN client, Chromium,
# Prosody, ejabberd, docker-compose and dockerfile-utils as linters) when missing,
# makes sure MariaDB and Redis are up, checks gofmt, go vet and staticcheck,
# and runs `go test -race ./...`.
#
#   ./scripts/test.sh              everything
#   ./scripts/test.sh ./chat/...   only some packages (extra args go to go test)
#
# Under CI=true a missing service or program fails the tests instead of
# skipping them. A full run then fuzzes every fuzz target for
# POOSMS_FUZZ_TIME (default 3s; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

# Debian packages the tests need, by the command or file that proves them.
need=()
/usr/bin/python3 -c 'import slixmpp' 2>/dev/null || need+=(python3-slixmpp)
command -v turnutils_uclient >/dev/null || need+=(coturn)
command -v go-sendxmpp >/dev/null || need+=(go-sendxmpp)
command -v chromium >/dev/null || need+=(chromium)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v redis-server >/dev/null || need+=(redis-server)
# The servers poosmsd import reads exports of, and federates with in the
# interop tests (Prosody reads the test's hosts file only through
# lua-unbound); the deployment linters.
command -v prosody >/dev/null || need+=(prosody)
compgen -G '/usr/lib/*/lua/*/lunbound.so' >/dev/null || need+=(lua-unbound)
command -v ejabberdctl >/dev/null || need+=(ejabberd)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		log "installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		# Keep the packages from starting their services: the tests run
		# their own on other ports.
		policy=0
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT
		fi
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
		if [ "$policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
		# Nothing of theirs stays running or starts at boot on standard
		# ports (coturn's 3478, the XMPP servers' 5222 and 5269).
		for svc in coturn prosody ejabberd; do
			[[ " ${need[*]} " == *" $svc "* ]] || continue
			if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
				systemctl disable --now "$svc" >/dev/null 2>&1 || true
			else
				service "$svc" stop >/dev/null 2>&1 || true
				update-rc.d "$svc" disable >/dev/null 2>&1 || true
			fi
		done
		if [[ " ${need[*]} " == *" coturn "* ]]; then pkill -x turnserver >/dev/null 2>&1 || true; fi
	else
		log "missing: ${need[*]} (install them with apt-get; tests that need them skip, or fail under CI=true)"
	fi
fi

# The Dockerfile linter, from npm.
if ! command -v dockerfile-utils >/dev/null && command -v npm >/dev/null && [ "$(id -u)" = 0 ]; then
	log "installing dockerfile-utils (npm)"
	npm install -g --silent --no-audit --no-fund dockerfile-utils@0.16.3 >/dev/null
fi

# MariaDB on 127.0.0.1:3306 (root, no password).
mysql_up() { mariadb -uroot -h127.0.0.1 -e 'select 1' >/dev/null 2>&1 || mysql -uroot -h127.0.0.1 -e 'select 1' >/dev/null 2>&1; }
if ! mysql_up && [ -x /usr/sbin/mariadbd ] && [ "$(id -u)" = 0 ]; then
	log "starting MariaDB"
	mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
	start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
	for _ in $(seq 1 60); do mysql_up && break; sleep 0.5; done
fi
# Redis on 127.0.0.1:6379.
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && command -v redis-server >/dev/null; then
	log "starting Redis"
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
	for _ in $(seq 1 40); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.25; done
fi

export POOSMS_TEST_MYSQL_DSN="${POOSMS_TEST_MYSQL_DSN:-root@tcp(127.0.0.1:3306)/}"
export POOSMS_TEST_REDIS_ADDR="${POOSMS_TEST_REDIS_ADDR:-127.0.0.1:6379}"

log "gofmt -l"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	printf 'not gofmt-formatted:\n%s\n' "$unformatted" >&2
	exit 1
fi
log "go vet"
go vet ./...
# staticcheck at a pinned version (one that knows this Go), installed with
# go install when missing or another version.
staticcheck_version=v0.8.2
gobin="$(go env GOBIN)"
gobin="${gobin:-$(go env GOPATH)/bin}"
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "(${staticcheck_version#v})"; then
	log "installing staticcheck $staticcheck_version"
	go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi
log "staticcheck"
"$gobin/staticcheck" ./...
log "go test -race"
whole=0
if [ $# -eq 0 ]; then set -- ./... && whole=1; fi
# The output is kept, so that a data race, whose report the failing
# tests' output buries, is summed up again at the end: each access and
# goroutine of the first with the three innermost frames of its stack.
test_out="$(mktemp)"
trap 'rm -f "$test_out"' EXIT
if ! go test -race -timeout 30m "$@" 2>&1 | tee "$test_out"; then
	if grep -q '^WARNING: DATA RACE' "$test_out"; then
		log "$(grep -c '^WARNING: DATA RACE' "$test_out") data race report(s); the first in short (in full above):"
		awk '/^WARNING: DATA RACE/ { if (++n > 1) exit; on = 1; next }
			on && /^==================/ { exit }
			on && /^(Read|Write|Previous|Goroutine|Atomic)/ { print; k = 6; next }
			on && k > 0 && NF > 0 { print; k-- }' "$test_out" >&2
	fi
	exit 1
fi

# Fuzzing: the normal run above executes every target's seed corpus; a
# full run also fuzzes each target briefly (-fuzz takes one target per
# package run). 23 targets × POOSMS_FUZZ_TIME (3 s) is about a minute of
# fuzzing, plus building. A crash fails the run and leaves its input in
# the package's testdata/fuzz/ (see docs/security.md, "Fuzzing").
fuzz_targets=(
	"./stanza FuzzLimitsParse FuzzStreamRead"
	"./signaling/sasl FuzzSCRAMClientFirst FuzzSCRAMClientFinal FuzzSCRAMExchange FuzzPlain"
	"./signaling FuzzTCPStream FuzzWebSocketSession FuzzWebSocketFrame FuzzJID"
	"./turn FuzzTURNUsername FuzzPeerAllowed FuzzTURNDatagram"
	"./sfu FuzzOfferLimits FuzzOffer FuzzDirectReceive"
	"./sfu/internal/bwe FuzzFeedback"
	"./sfu/internal/rtpx FuzzRTCP"
	"./chat FuzzMAMQuery"
	"./chat/directory FuzzDirectoryForm"
	"./chat/muc FuzzRoomConfig"
	"./chat/upload FuzzSafeName FuzzUploadHTTP"
	"./config FuzzConfigFile"
)
if [ "$whole" = 1 ] && [ "${POOSMS_FUZZ_TIME:-3s}" != 0 ]; then
	log "fuzzing each target for ${POOSMS_FUZZ_TIME:-3s}"
	for line in "${fuzz_targets[@]}"; do
		read -r pkg targets <<<"$line"
		for t in $targets; do
			if ! out=$(go test -run '^$' -fuzz "^$t\$" -fuzztime "${POOSMS_FUZZ_TIME:-3s}" -parallel 2 "$pkg" 2>&1); then
				# A crash always writes its input. Without one, a bare
				# "context deadline exceeded" is Go's fuzzer reporting that
				# its time ran out while an input was still running (slow
				# targets such as a whole TURN exchange): not a finding.
				if ! grep -q 'Failing input written' <<<"$out" && grep -q 'context deadline exceeded' <<<"$out"; then
					log "fuzz target $t in $pkg: time ran out during an input (no failing input); not a crash"
					continue
				fi
				printf '%s\nfuzz target %s in %s failed (its input is kept in %s/testdata/fuzz/%s/)\n' "$out" "$t" "$pkg" "$pkg" "$t" >&2
				exit 1
			fi
		done
	done
	log "fuzzing found nothing"
fi
