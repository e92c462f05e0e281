# bench/turn-lib.sh: sourced by the TURN benchmarks (turn-ceiling.sh,
# turn-syscalls.sh) for what they share.

# cleanup stops every process in PIDS and removes TMP; the scripts run it
# at exit.
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$TMP"
}

# wait_udp PORT waits until something is bound to the UDP port (10 s).
wait_udp() {
	for _ in $(seq 100); do
		ss -uln "sport = :$1" | grep -q ":$1" && return 0
		sleep 0.1
	done
	return 1
}

# start_coturn runs coturn on loopback, pinned to $SERVER_CPU (under
# "${RT[@]}" when set), with the shared secret $SECRET, listening on
# $CT_TURN and relaying on $CT_RELAY_MIN…$CT_RELAY_MAX, its files under
# $TMP/coturn (which must hold turndb); it sets COTURN to the process id.
start_coturn() {
	"${RT[@]}" taskset -c "$SERVER_CPU" turnserver --listening-ip 127.0.0.1 --listening-port "$CT_TURN" --relay-ip 127.0.0.1 \
		--min-port "$CT_RELAY_MIN" --max-port "$CT_RELAY_MAX" --realm localhost \
		--use-auth-secret --static-auth-secret "$SECRET" --allow-loopback-peers \
		--no-cli --no-tls --no-dtls --no-tcp-relay --no-rfc5780 --fingerprint \
		--userdb "$TMP/coturn/turndb" --pidfile "$TMP/coturn/turnserver.pid" \
		--log-file "$TMP/coturn/turn.log" --simple-log --no-stdout-log >"$TMP/coturn/stdout.log" 2>&1 &
	COTURN=$!
}
