#!/usr/bin/env bash
# Regenerates ejabberd-23.01-scram-sha1.xml: the XEP-0227 export of an
# ejabberd 23.01 (Debian) that keeps SCRAM-SHA-1 data instead of passwords,
# with two users (alice/alice-old-password, bob/bob-old-password), a
# roster item, a vCard, private XML and an offline message. Runs ejabberd
# as its own user on loopback ports with a private folder; needs root.
#
#   pie/testdata/make-ejabberd-fixture.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
chmod 755 "$dir"
trap 'cleanup' EXIT
cleanup() {
	"${EJ[@]}" stop >/dev/null 2>&1 || true
	"${EJ[@]}" stopped >/dev/null 2>&1 || true
	rm -rf "$dir"
}
mkdir -p "$dir/db" "$dir/log" "$dir/out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
cat "$dir/cert.pem" "$dir/key.pem" >"$dir/server.pem"
echo '{lookup,["file","native"]}.' >"$dir/inetrc"
cat >"$dir/ejabberdctl.cfg" <<EOC
ERL_DIST_PORT=35469
INET_DIST_INTERFACE=127.0.0.1
EJABBERD_PID_PATH=$dir/ejabberd.pid
EOC
cat >"$dir/ejabberd.yml" <<EOC
loglevel: warning
hosts:
  - localhost
certfiles:
  - "$dir/server.pem"
listen:
  -
    port: 35422
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
modules:
  mod_admin_extra: {}
  mod_offline: {}
  mod_private: {}
  mod_roster: {}
  mod_vcard:
    search: false
EOC
chown -R ejabberd:ejabberd "$dir"
EJ=(env HOME="$(getent passwd ejabberd | cut -d: -f6)" setpriv --reuid=ejabberd --regid=ejabberd --init-groups
	ejabberdctl --config-dir "$dir" --config "$dir/ejabberd.yml" --spool "$dir/db" --logs "$dir/log"
	--node "fixture$$@localhost")
"${EJ[@]}" start
"${EJ[@]}" started
"${EJ[@]}" register alice localhost alice-old-password
"${EJ[@]}" register bob localhost bob-old-password
"${EJ[@]}" add_rosteritem alice localhost bob localhost Bobby Friends both
"${EJ[@]}" set_vcard alice localhost FN "Alice Liddell"
"${EJ[@]}" private_set alice localhost "<storage xmlns='storage:rosternotes'><note jid='bob@localhost'>tall</note></storage>"
"${EJ[@]}" send_message chat alice@localhost bob@localhost "" "hello while away"
"${EJ[@]}" export_piefxis "$dir/out"
cp "$dir"/out/*_localhost.xml "$here/ejabberd-23.01-scram-sha1.xml"
echo "wrote $here/ejabberd-23.01-scram-sha1.xml"
