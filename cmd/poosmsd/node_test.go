package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/config"
	"poosms.org/poosms/internal/testenv"
)

// testNode runs a node on loopback ports chosen by the kernel.
type testNode struct {
	*node
	cfg config.Config
}

func testConfig(t *testing.T, db string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	if db != "" {
		cfg.DB = db
	}
	cfg.C2SAddr = "127.0.0.1:0"
	cfg.C2STLSAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.MediaUDPAddr = "127.0.0.1:0"
	cfg.MediaTCPAddr = ""
	cfg.TURNAddr = "127.0.0.1:0"
	cfg.S2SAddr, cfg.S2STLSAddr = "", ""
	return cfg
}

func startTestNode(t *testing.T, cfg config.Config) *testNode {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n, err := startNode(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return &testNode{node: n, cfg: cfg}
}

func (n *testNode) c2sAddr() string { return n.c2s.Addrs()[0].String() }
func (n *testNode) c2sPort() string { _, p, _ := net.SplitHostPort(n.c2sAddr()); return p }
func (n *testNode) httpURL() string { return "http://" + n.httpAddr.String() }

// addUser runs "poosmsd user add NAME" against the node's database, the
// way an operator would.
func addUser(t *testing.T, cfg config.Config, name, password string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"user", "add", name, "--db", cfg.DB, "--data-dir", cfg.DataDir}, nil,
		strings.NewReader(password+"\n"), &out, &errOut)
	if code != 0 {
		t.Fatalf("user add %s: exit %d: %s", name, code, errOut.String())
	}
}

// databases lists the stores a test runs on: SQLite always, MySQL when
// POOSMS_TEST_MYSQL_DSN is set (and always under CI).
func databases(t *testing.T, fn func(t *testing.T, db string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, "") })
	t.Run("mysql", func(t *testing.T) {
		if os.Getenv("POOSMS_TEST_MYSQL_DSN") == "" && !testenv.CI() {
			t.Skip("POOSMS_TEST_MYSQL_DSN is not set")
		}
		fn(t, testenv.MySQLDSN(t))
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testWriter{}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
