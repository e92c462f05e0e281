package testenv

import (
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BuildPoosmsd builds cmd/poosmsd into a temporary folder and returns the
// binary's path.
func BuildPoosmsd(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), "poosmsd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/poosmsd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build poosmsd: %v\n%s", err, out)
	}
	return bin
}

// FreeAddr returns a loopback TCP address that was free a moment ago.
// Its port is below Linux's default ephemeral range (32768-60999), from
// which the kernel hands out the ports of every connection and of every
// listener on port 0: a port taken from that range and closed could be
// handed to another socket of the test before the test binds it again.
func FreeAddr(t testing.TB) string {
	t.Helper()
	var err error
	for range 200 {
		port := freePortLow + rand.IntN(freePortHigh-freePortLow)
		var ln net.Listener
		ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			addr := ln.Addr().String()
			_ = ln.Close()
			return addr
		}
	}
	t.Fatalf("no free port in %d-%d: %v", freePortLow, freePortHigh, err)
	return ""
}

// The ports FreeAddr picks from.
const (
	freePortLow  = 20000
	freePortHigh = 32768
)

// Daemon is poosmsd running as a process on loopback ports.
type Daemon struct {
	Bin, DataDir string
	C2S, HTTP    string // addresses
	Args         []string
	cmd          *exec.Cmd
	exited       chan struct{}
}

// NewDaemon prepares (but does not start) a daemon with its own data
// directory and ports; extra flags are appended to serve's.
func NewDaemon(t testing.TB, bin string, extra ...string) *Daemon {
	d := &Daemon{Bin: bin, DataDir: t.TempDir(), C2S: FreeAddr(t), HTTP: FreeAddr(t)}
	// No metrics listener: one port fewer to race for. A test that reads
	// metrics passes --metrics-token and reads them from HTTP.
	d.Args = append([]string{"serve", "--data-dir", d.DataDir, "--c2s-addr", d.C2S, "--c2s-tls-addr", "",
		"--http-addr", d.HTTP, "--metrics-addr", "", "--media-udp-addr", "127.0.0.1:0", "--media-tcp-addr", "", "--turn-addr", "",
		"--s2s-addr", "", "--log-level", "warn"}, extra...)
	return d
}

// Run runs a one-off poosmsd command (e.g. "user", "add", NAME) against
// the daemon's data directory, with stdin.
func (d *Daemon) Run(t testing.TB, stdin string, args ...string) {
	t.Helper()
	cmd := exec.Command(d.Bin, append(args, "--data-dir", d.DataDir)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("poosmsd %v: %v\n%s", args, err, out)
	}
}

// Start starts the process and waits until /healthz answers 200.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	d.cmd = exec.Command(d.Bin, d.Args...)
	d.cmd.Stdout, d.cmd.Stderr = os.Stderr, os.Stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(d.cmd, d.exited)
	t.Cleanup(func() { d.Kill() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.exited:
			t.Fatal("poosmsd exited during start")
		default:
		}
		if r, err := http.Get("http://" + d.HTTP + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("poosmsd did not become healthy within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PID is the running process's id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to go. Safe to call from
// any goroutine and more than once.
func (d *Daemon) Kill() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}
