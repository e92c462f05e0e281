package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
)

// TestMain lets the test binary stand in for poosms-bench when the
// sessions command starts it as a worker.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// benchAccounts makes accounts bench0 … bench<n-1> in one import.
func benchAccounts(t *testing.T, d *testenv.Daemon, n int) {
	var b strings.Builder
	b.WriteString("<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>")
	for i := range n {
		b.WriteString("<user name='bench" + strconv.Itoa(i) + "' password='bench-password'/>")
	}
	b.WriteString("</host></server-data>")
	path := filepath.Join(t.TempDir(), "accounts.xml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Run(t, "", "import", path)
}

func runSessionsJSON(t *testing.T, args ...string) (sessionsResult, int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"sessions", "--json"}, args...), &out, &errOut)
	var r sessionsResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("exit %d, %v: %s\n%s", code, err, out.String(), errOut.String())
	}
	return r, code, errOut.String()
}

// TestSessionsAgainstPoosmsd: a few hundred sessions spread over three
// worker processes and three source addresses all log in, stay, and are
// measured.
func TestSessionsAgainstPoosmsd(t *testing.T) {
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t))
	benchAccounts(t, d, 300)
	d.Start(t)
	r, code, log := runSessionsJSON(t, "--addr", d.C2S, "--sessions", "300", "--per-process", "120",
		"--sources", "127.0.0.1-127.0.0.3", "--hold", "1s", "--progress", "500ms", "--pid", strconv.Itoa(d.PID()))
	if code != 0 || r.Processes != 3 || r.Sources != 3 || r.LoggedIn != 300 || r.Failed != 0 || r.AliveAtEnd != 300 ||
		r.StopReason != "all logged in" || r.LoginsPerSec <= 0 || r.RampSeconds <= 0 || len(r.LoginsPerSecSeries) == 0 ||
		r.RSSPerSession <= 0 || r.ServerOpenFiles < 300 || r.ServerFileLimit <= 0 {
		t.Fatalf("exit %d, report %+v: want 300 sessions in, held and measured\n%s", code, r, log)
	}
}

// TestSessionsStopAtServerFileLimit: a server whose open-file limit runs
// out stops the ramp cleanly: the report says how many logged in and
// which limit was met, and every worker ends.
func TestSessionsStopAtServerFileLimit(t *testing.T) {
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t))
	benchAccounts(t, d, 120)
	d.Start(t)
	open, err := processOpenFiles(d.PID())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	// Room for about 40 more connections.
	lim := &unix.Rlimit{Cur: uint64(open + 40), Max: uint64(open + 40)}
	if err := unix.Prlimit(d.PID(), unix.RLIMIT_NOFILE, lim, nil); err != nil {
		t.Fatalf("lower the server's open-file limit: %v", err)
	}
	start := time.Now()
	r, code, log := runSessionsJSON(t, "--addr", d.C2S, "--sessions", "120", "--login-concurrency", "10",
		"--timeout", "3s", "--hold", "0s", "--pid", strconv.Itoa(d.PID()))
	if code != 1 || r.LoggedIn == 0 || r.LoggedIn >= 120 || r.Failed == 0 || r.AliveAtEnd != r.LoggedIn ||
		!strings.Contains(r.StopReason, "open-file limit") || r.FirstFailure == "" {
		t.Fatalf("exit %d, report %+v: want a clean stop at the server's limit\n%s", code, r, log)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("the stop took %v", time.Since(start))
	}
}

// TestLoginLimitNamesTheServersLimit: a server that cannot check a
// password because it ran out of files answers temporary-auth-failure;
// the bench names the server's limit for it, not missing accounts.
func TestLoginLimitNamesTheServersLimit(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&xmppclient.AuthError{Condition: "temporary-auth-failure"}, "open-file limit"},
		{fmt.Errorf("login: %w", &xmppclient.AuthError{Condition: "not-authorized"}), "do the accounts exist?"},
		{fmt.Errorf("dial: %w", syscall.EMFILE), "the bench's open-file limit"},
		{io.ErrUnexpectedEOF, "the server closed the connection"},
	} {
		if got := loginLimit(c.err); !strings.Contains(got, c.want) {
			t.Errorf("loginLimit(%v) = %q, want it to say %q", c.err, got, c.want)
		}
	}
}
