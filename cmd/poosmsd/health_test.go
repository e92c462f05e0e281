//go:build unix

package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
)

// healthz returns the status and body of GET /healthz, or 0 when nothing
// answers.
func healthz(base string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	r, err := c.Get(base + "/healthz")
	if err != nil {
		return 0, ""
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, strings.TrimSpace(string(b))
}

// While a node starts (here: waiting for the database's migration lock,
// as when another process migrates it), /healthz already answers, 503,
// as docs/operations.md promises; then 200.
func TestHealthzWhileStarting(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.HTTPAddr = testenv.FreeAddr(t)
	lock, err := os.OpenFile(filepath.Join(cfg.DataDir, "poosms.db.migrate-lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	started := make(chan *node, 1)
	go func() {
		n, err := startNode(context.Background(), cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
		if err != nil {
			t.Errorf("start node: %v", err)
		}
		started <- n
	}()
	base := "http://" + cfg.HTTPAddr
	waitFor(t, func() bool { code, _ := healthz(base); return code != 0 })
	if code, body := healthz(base); code != http.StatusServiceUnavailable || body != "starting" {
		t.Fatalf("/healthz while the store is locked: %d %q, want 503 starting", code, body)
	}
	if r, err := http.Get(base + "/register"); err != nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/register while starting: %v %v", r, err)
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	n := <-started
	if n == nil {
		t.FailNow()
	}
	defer n.Close(context.Background())
	if code, body := healthz(base); code != http.StatusOK || body != "ok" {
		t.Fatalf("/healthz once started: %d %q", code, body)
	}
}

// While a node stops, /healthz answers 503 until the very end: the HTTP
// listener is the last thing to close.
func TestHealthzWhileStopping(t *testing.T) {
	n := startTestNode(t, testConfig(t, ""))
	base := n.httpURL()
	if code, _ := healthz(base); code != http.StatusOK {
		t.Fatalf("/healthz of a running node: %d", code)
	}
	// A service that takes its time to stop, closed just before the
	// listener (the closers run in reverse order).
	stopping, release := make(chan struct{}), make(chan struct{})
	slow := func(context.Context) error { close(stopping); <-release; return nil }
	n.closers = append(n.closers[:1], append([]func(context.Context) error{slow}, n.closers[1:]...)...)
	closed := make(chan error, 1)
	go func() { closed <- n.Close(context.Background()) }()
	<-stopping
	code, body := healthz(base)
	close(release)
	if code != http.StatusServiceUnavailable || body != "stopping" {
		t.Errorf("/healthz while stopping: %d %q, want 503 stopping", code, body)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if code, _ := healthz(base); code != 0 {
		t.Errorf("/healthz after stop: %d, want no listener", code)
	}
}
