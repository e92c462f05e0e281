package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
)

// The third-party servers the federation interop test runs, each on a
// loopback address of its own inside the test's network namespace, and
// started without their system services.

// farServer is a running third-party XMPP server.
type farServer struct {
	name   string // "prosody", "ejabberd"
	domain string
	ip     string
	dir    string
	// durableRoster: rosters changed just before a crash survive it
	// (ejabberd's Mnesia tables may lose the last changes to SIGKILL).
	durableRoster bool
	start         func(t *testing.T) // starts (or restarts) it and waits for its ports
	kill          func()             // SIGKILL, as a crash
	stop          func()             // a clean stop, for the test's end
}

func (p *farServer) side() fedSide {
	mech := "SCRAM-SHA-256"
	return fedSide{domain: p.domain, addr: net.JoinHostPort(p.ip, "5222"), mechanism: mech}
}

// peerCerts are the certificate files a peer serves, and the CA it
// trusts ("" for none).
type peerCerts struct {
	cert, key, ca string
}

// waitPort waits until something accepts TCP at addr, or alive says the
// process is gone.
func waitPort(t *testing.T, addr string, alive func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if !alive() {
			t.Fatalf("the server meant to listen on %s exited", addr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 60s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startFedProsody runs Debian's Prosody for domain on ip, with bob's account.
// secure makes valid certificates mandatory (s2s_secure_auth).
func startFedProsody(t *testing.T, domain, ip string, certs peerCerts, secure bool) *farServer {
	t.Helper()
	bin := testenv.Command(t, "prosody", "apt-get install -y prosody")
	ctl := testenv.Command(t, "prosodyctl", "apt-get install -y prosody")
	if m, _ := filepath.Glob("/usr/lib/*/lua/*/lunbound.so"); len(m) == 0 {
		// Without it Prosody resolves names with DNS alone, never the
		// namespace's hosts file.
		testenv.Require(t, "lua-unbound is not installed (apt-get install -y lua-unbound)")
	}
	dir := t.TempDir()
	ssl := fmt.Sprintf("{ certificate = %q; key = %q;", certs.cert, certs.key)
	if certs.ca != "" {
		ssl += fmt.Sprintf(" cafile = %q;", certs.ca)
	}
	ssl += " }"
	cfg := fmt.Sprintf(`-- Written by poosms's federation test.
run_as_root = true
daemonize = false
pidfile = %[1]q
data_path = %[2]q
log = { debug = %[3]q }
network_backend = "epoll"
unbound = { hoststxt = "/etc/hosts" }
interfaces = { %[4]q }
c2s_ports = { 5222 }
s2s_ports = { 5269 }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
legacy_ssl_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = {
	"disco", "roster", "saslauth", "tls", "dialback", "carbons", "pep", "private",
	"blocklist", "vcard_legacy", "ping", "offline", "version",
}
modules_disabled = { "limits" }
s2s_require_encryption = true
s2s_secure_auth = %[5]t
c2s_require_encryption = true
authentication = "internal_hashed"
password_hash = "SHA-256"
ssl = %[6]s
VirtualHost %[7]q
Component %[8]q "muc"
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "prosody.log"), ip, secure, ssl, domain, "conference."+domain)
	file := filepath.Join(dir, "prosody.cfg.lua")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ctl, "--config", file, "register", "bob", domain, "bob-password").CombinedOutput(); err != nil {
		t.Fatalf("prosodyctl register: %v\n%s", err, out)
	}
	p := &farServer{name: "prosody", domain: domain, ip: ip, dir: dir, durableRoster: true}
	var cmd *exec.Cmd
	var exited chan struct{}
	p.start = func(t *testing.T) {
		cmd = exec.Command(bin, "--config", file, "-F")
		out, err := os.Create(filepath.Join(dir, "stdout.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited = make(chan struct{})
		go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); out.Close(); close(done) }(cmd, exited)
		alive := func() bool {
			select {
			case <-exited:
				return false
			default:
				return true
			}
		}
		waitPort(t, net.JoinHostPort(ip, "5222"), alive)
		waitPort(t, net.JoinHostPort(ip, "5269"), alive)
	}
	signal := func(sig syscall.Signal) {
		if cmd == nil || cmd.Process == nil {
			return
		}
		_ = cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	p.kill = func() { signal(syscall.SIGKILL) }
	p.stop = func() { signal(syscall.SIGTERM) }
	t.Cleanup(p.stop)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLog(t, "prosody", filepath.Join(dir, "prosody.log"))
		}
	})
	p.start(t)
	return p
}

// startFedEjabberd runs Debian's ejabberd for domain on ip, with bob's
// account, as bench/compare.sh does: its own folders and node name, run
// as the ejabberd user. secure makes valid certificates mandatory.
func startFedEjabberd(t *testing.T, domain, ip string, certs peerCerts, secure bool) *farServer {
	t.Helper()
	ctlBin := testenv.Command(t, "ejabberdctl", "apt-get install -y ejabberd")
	u, err := user.Lookup("ejabberd")
	if err != nil {
		testenv.Require(t, "the ejabberd user is missing (apt-get install -y ejabberd)")
	}
	dir := peerDir(t, "ejabberd")
	pem := filepath.Join(dir, "server.pem")
	cert, _ := os.ReadFile(certs.cert)
	key, _ := os.ReadFile(certs.key)
	writeFile(t, pem, string(cert)+string(key))
	caLine := ""
	if certs.ca != "" {
		ca, _ := os.ReadFile(certs.ca)
		writeFile(t, filepath.Join(dir, "ca.pem"), string(ca))
		caLine = "ca_file: " + strconv.Quote(filepath.Join(dir, "ca.pem"))
	}
	distPort := 25469 + int(ip[len(ip)-1]-'0')
	writeFile(t, filepath.Join(dir, "inetrc"), "{lookup,[\"file\",\"native\"]}.\n{hosts_file, \"/etc/hosts\"}.\n")
	writeFile(t, filepath.Join(dir, "ejabberdctl.cfg"), fmt.Sprintf(
		"ERL_DIST_PORT=%d\nINET_DIST_INTERFACE=127.0.0.1\nEJABBERD_PID_PATH=%s\nERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"\n",
		distPort, filepath.Join(dir, "ejabberd.pid")))
	s2sAccess := ""
	if !secure {
		// Dialback for peers whose certificate does not verify.
		s2sAccess = "  mod_s2s_dialback: {}\n"
	}
	writeFile(t, filepath.Join(dir, "ejabberd.yml"), fmt.Sprintf(`loglevel: info
log_rotate_count: 0
hosts:
  - %[1]s
certfiles:
  - %[2]q
%[3]s
s2s_use_starttls: required
outgoing_s2s_families:
  - ipv4
s2s_timeout: 60
listen:
  -
    port: 5222
    ip: %[4]q
    module: ejabberd_c2s
    starttls_required: true
  -
    port: 5269
    ip: %[4]q
    module: ejabberd_s2s_in
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
modules:
  mod_blocking: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_disco: {}
  mod_offline: {}
  mod_ping: {}
  mod_privacy: {}
  mod_private: {}
  mod_roster: {}
  mod_version: {}
  mod_vcard: {}
  mod_pubsub:
    plugins:
      - flat
      - pep
  mod_muc:
    host: "conference.@HOST@"
    access_create: all
    default_room_options:
      mam: false
%[5]s`, domain, pem, caLine, ip, s2sAccess))
	for _, sub := range []string{"db", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, dir, "ejabberd")
	node := fmt.Sprintf("poosmsfed%d@localhost", os.Getpid())
	ctl := func(args ...string) ([]byte, error) {
		base := []string{"--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", ctlBin,
			"--config-dir", dir, "--config", filepath.Join(dir, "ejabberd.yml"), "--spool", filepath.Join(dir, "db"),
			"--logs", filepath.Join(dir, "log"), "--node", node}
		cmd := exec.Command("setpriv", append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+u.HomeDir)
		return cmd.CombinedOutput()
	}
	p := &farServer{name: "ejabberd", domain: domain, ip: ip, dir: dir}
	pid := func() int {
		b, err := os.ReadFile(filepath.Join(dir, "ejabberd.pid"))
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	alive := func() bool {
		n := pid()
		return n > 0 && syscall.Kill(n, 0) == nil
	}
	registered := false
	p.start = func(t *testing.T) {
		if out, err := ctl("start"); err != nil {
			t.Fatalf("ejabberdctl start: %v\n%s", err, out)
		}
		if out, err := ctl("started"); err != nil {
			dumpLog(t, "ejabberd", filepath.Join(dir, "log", "ejabberd.log"))
			t.Fatalf("ejabberdctl started: %v\n%s", err, out)
		}
		waitPort(t, net.JoinHostPort(ip, "5222"), alive)
		waitPort(t, net.JoinHostPort(ip, "5269"), alive)
		if !registered {
			if out, err := ctl("register", "bob", domain, "bob-password"); err != nil {
				t.Fatalf("ejabberdctl register: %v\n%s", err, out)
			}
			registered = true
		}
	}
	waitGone := func(n int) {
		for range 200 {
			if syscall.Kill(n, 0) != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	p.kill = func() {
		if n := pid(); n > 0 {
			_ = syscall.Kill(n, syscall.SIGKILL)
			waitGone(n)
			os.Remove(filepath.Join(dir, "ejabberd.pid"))
		}
	}
	p.stop = func() {
		n := pid()
		if n <= 0 {
			return
		}
		_, _ = ctl("stop")
		waitGone(n)
		_ = syscall.Kill(n, syscall.SIGKILL)
	}
	t.Cleanup(p.stop)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLog(t, "ejabberd", filepath.Join(dir, "log", "ejabberd.log"))
		}
	})
	p.start(t)
	return p
}

func writeFile(t *testing.T, file, body string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dumpLog logs the end of a server's log file.
func dumpLog(t *testing.T, name, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Logf("%s log %s: %v", name, file, err)
		return
	}
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	t.Logf("%s log (end):\n%s", name, b)
}
