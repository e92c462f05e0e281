//go:build unix

package main

import (
	"context"
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
	"poosms.org/poosms/signaling"
)

// Prosody and ejabberd, as Debian installs them, run on loopback ports
// with private folders (never their system services), to produce the
// XEP-0227 exports poosmsd imports.

// peerDir is a folder the peer's own user can use: t.TempDir with its
// parents opened for traversal and the folder given to owner.
func peerDir(t *testing.T, owner string) string {
	t.Helper()
	dir := t.TempDir()
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, dir, owner)
	return dir
}

// chownTree gives dir and everything in it to the system user owner.
func chownTree(t *testing.T, dir, owner string) {
	t.Helper()
	u, err := user.Lookup(owner)
	if err != nil {
		testenv.Require(t, "no system user "+owner+": "+err.Error())
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// peerCert writes a self-signed certificate for localhost into dir.
func peerCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	if _, err := signaling.LoadOrCreateSelfSigned(dir, "localhost"); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
}

// runCmd runs a command with a deadline, failing the test with its output.
func runCmd(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitTCP waits until addr accepts connections or exited is closed.
func waitTCP(t *testing.T, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("the server for %s exited while starting", addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 60s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// prosody is a Prosody server with its own data folder.
type prosody struct {
	dir, cfg, c2s string
	cmd           *exec.Cmd
	exited        chan struct{}
}

// startProsody starts Prosody 0.12 with hashed (SCRAM-SHA-1) password
// storage, its default, and the users given as name → password.
func startProsody(t *testing.T, users map[string]string) *prosody {
	t.Helper()
	testenv.Command(t, "prosody", "apt-get install prosody")
	testenv.Command(t, "prosody-migrator", "apt-get install prosody")
	testenv.Command(t, "unshare", "apt-get install util-linux")
	p := &prosody{dir: peerDir(t, "prosody"), c2s: testenv.FreeAddr(t)}
	cert, key := peerCert(t, p.dir)
	_, port, _ := net.SplitHostPort(p.c2s)
	p.cfg = filepath.Join(p.dir, "prosody.cfg.lua")
	conf := fmt.Sprintf(`run_as_root = true
daemonize = false
pidfile = %[1]q
data_path = %[2]q
certificates = %[3]q
log = { warn = %[4]q }
modules_enabled = { "disco", "roster", "saslauth", "tls", "pep", "private", "vcard", "offline", "ping" }
modules_disabled = { "s2s" }
c2s_ports = { %[5]s }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
authentication = "internal_hashed"
ssl = { certificate = %[6]q, key = %[7]q }
VirtualHost "localhost"
`, filepath.Join(p.dir, "prosody.pid"), filepath.Join(p.dir, "data"), p.dir,
		filepath.Join(p.dir, "prosody.log"), port, cert, key)
	if err := os.WriteFile(p.cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p.dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, pw := range users {
		runCmd(t, time.Minute, "prosodyctl", "--config", p.cfg, "register", name, "localhost", pw)
	}
	p.cmd = exec.Command("prosody", "--config", p.cfg, "-F")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.stop)
	waitTCP(t, p.c2s, p.exited)
	return p
}

// stop ends the server (TERM, then KILL after 10 s).
func (p *prosody) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// export stops the server and converts its storage to XEP-0227 files with
// prosody-migrator, Prosody's own tool. The xep0227 store writes into
// Prosody's data path, which this build fixes at /var/lib/prosody: the
// migrator runs in a mount namespace of its own where that path is a
// folder of the test. Prosody 0.12's xep0227 store has no offline
// messages; they stay behind.
func (p *prosody) export(t *testing.T) string {
	t.Helper()
	p.stop()
	out := filepath.Join(p.dir, "export")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	mig := filepath.Join(p.dir, "migrator.cfg.lua")
	conf := fmt.Sprintf(`input { type = "internal"; path = %q; hosts = { ["localhost"] = { "accounts", "roster", "vcard", "private", "pep-pubsub" } } }
output { type = "xep0227" }
`, filepath.Join(p.dir, "data"))
	if err := os.WriteFile(mig, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, p.dir, "prosody") // the migrator runs as the prosody user
	runCmd(t, 2*time.Minute, "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /var/lib/prosody && exec prosody-migrator --config "$2" input output`, "sh", out, mig)
	return out
}

// ejabberd is an ejabberd node with its own folders and Erlang node name.
type ejabberd struct {
	dir, c2s string
	ctl      []string
}

// startEjabberd starts ejabberd 23.01 with plain password storage, its
// default, and the users given as name → password.
func startEjabberd(t *testing.T, users map[string]string) *ejabberd {
	t.Helper()
	testenv.Command(t, "ejabberdctl", "apt-get install ejabberd")
	testenv.Command(t, "setpriv", "apt-get install util-linux")
	e := &ejabberd{dir: peerDir(t, "ejabberd"), c2s: testenv.FreeAddr(t)}
	cert, key := peerCert(t, e.dir)
	pem := filepath.Join(e.dir, "server.pem")
	c, _ := os.ReadFile(cert)
	k, _ := os.ReadFile(key)
	dist := testenv.FreeAddr(t)
	_, distPort, _ := net.SplitHostPort(dist)
	_, port, _ := net.SplitHostPort(e.c2s)
	files := map[string]string{
		"server.pem": string(c) + string(k),
		"inetrc":     `{lookup,["file","native"]}.` + "\n",
		"ejabberdctl.cfg": fmt.Sprintf("ERL_DIST_PORT=%s\nINET_DIST_INTERFACE=127.0.0.1\nEJABBERD_PID_PATH=%s\nERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"\n",
			distPort, filepath.Join(e.dir, "ejabberd.pid")),
		"ejabberd.yml": fmt.Sprintf(`loglevel: warning
log_rotate_count: 0
hosts:
  - localhost
certfiles:
  - %q
listen:
  -
    port: %s
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
modules:
  mod_caps: {}
  mod_disco: {}
  mod_offline: {}
  mod_ping: {}
  mod_private: {}
  mod_pubsub:
    plugins:
      - flat
      - pep
  mod_roster: {}
  mod_vcard:
    search: false
`, pem, port),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"db", "log", "export"} {
		if err := os.Mkdir(filepath.Join(e.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, e.dir, "ejabberd")
	home := "/var/lib/ejabberd"
	if u, err := user.Lookup("ejabberd"); err == nil && u.HomeDir != "" {
		home = u.HomeDir
	}
	e.ctl = []string{"env", "HOME=" + home, "setpriv", "--reuid=ejabberd", "--regid=ejabberd", "--init-groups",
		"ejabberdctl", "--config-dir", e.dir, "--config", filepath.Join(e.dir, "ejabberd.yml"),
		"--spool", filepath.Join(e.dir, "db"), "--logs", filepath.Join(e.dir, "log"),
		"--node", fmt.Sprintf("poosmstest%d_%s@localhost", os.Getpid(), distPort)}
	e.run(t, "start")
	t.Cleanup(func() { e.stop(t) })
	e.run(t, "started")
	waitTCP(t, e.c2s, nil)
	for name, pw := range users {
		e.run(t, "register", name, "localhost", pw)
	}
	return e
}

func (e *ejabberd) run(t *testing.T, args ...string) string {
	t.Helper()
	return runCmd(t, 2*time.Minute, e.ctl[0], append(append([]string{}, e.ctl[1:]...), args...)...)
}

func (e *ejabberd) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = exec.CommandContext(ctx, e.ctl[0], append(append([]string{}, e.ctl[1:]...), "stop")...).Run()
	_ = exec.CommandContext(ctx, e.ctl[0], append(append([]string{}, e.ctl[1:]...), "stopped")...).Run()
}

// export writes the node's data with "ejabberdctl export_piefxis": a main
// file that includes one file per host.
func (e *ejabberd) export(t *testing.T) string {
	t.Helper()
	out := filepath.Join(e.dir, "export")
	e.run(t, "export_piefxis", out)
	return out
}
