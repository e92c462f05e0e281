package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/signaling/sasl"
)

func httpGet(t *testing.T, url, bearer string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsListener: /metrics is not on the public HTTP listener by
// default, only on --metrics-addr; with --metrics-token it needs the
// token, on both.
func TestMetricsListener(t *testing.T) {
	n := startTestNode(t, testConfig(t, ""))
	if code, _ := httpGet(t, n.httpURL()+"/metrics", ""); code != http.StatusNotFound {
		t.Errorf("public /metrics: %d, want 404", code)
	}
	if code, body := httpGet(t, "http://"+n.metricsAddr.String()+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "poosms_sessions") {
		t.Errorf("metrics listener: %d, want 200 with poosms_sessions", code)
	}

	cfg := testConfig(t, "")
	cfg.MetricsToken = "0123456789abcdef-metrics"
	n = startTestNode(t, cfg)
	for _, url := range []string{n.httpURL() + "/metrics", "http://" + n.metricsAddr.String() + "/metrics"} {
		if code, _ := httpGet(t, url, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", url, code)
		}
		if code, _ := httpGet(t, url, "wrong-token-0123456789"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", url, code)
		}
		if code, body := httpGet(t, url, cfg.MetricsToken); code != http.StatusOK || !strings.Contains(body, "poosms_sessions") {
			t.Errorf("%s with the token: %d, want 200 with poosms_sessions", url, code)
		}
	}
}

func saslFrom(t *testing.T, n *testNode, from, user, pass, mech string) string {
	t.Helper()
	c, err := xmppclient.Dial(context.Background(), xmppclient.Options{
		Addr: n.c2sAddr(), Domain: n.cfg.Domain, Username: user, Password: pass, Mechanism: mech,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second,
	})
	if err == nil {
		c.Close()
		return ""
	}
	var ae *xmppclient.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("%s logs in from %s: %v", user, from, err)
	}
	return ae.Condition
}

// TestOneLoginThrottleForXMPPAndHTTP: guesses at /api/turn count against
// XMPP logins from the same address, and not from another.
func TestOneLoginThrottleForXMPPAndHTTP(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.LoginFailures = 2
	n := startTestNode(t, cfg)
	addUser(t, cfg, "alice", "alice-password")
	for range 2 {
		req, _ := http.NewRequest("GET", n.httpURL()+"/api/turn", nil)
		req.SetBasicAuth("alice", "wrong-password")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password at /api/turn: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	if got := saslFrom(t, n, "127.0.0.1", "alice", "alice-password", ""); got != "temporary-auth-failure" {
		t.Fatalf("XMPP login from the guessing address: %q, want temporary-auth-failure", got)
	}
	if got := saslFrom(t, n, "127.0.0.2", "alice", "alice-password", ""); got != "" {
		t.Fatalf("XMPP login from another address: %q, want success", got)
	}
}

// TestSCRAMIterations: "user add" takes --scram-iterations, a count under
// 4096 is a configuration error, and an account made with fewer than the
// server's count is upgraded at its first PLAIN login, on either store.
func TestSCRAMIterations(t *testing.T) {
	code, _, errOut := runCLI(t, "long-enough-pw\n", "user", "add", "zed", "--scram-iterations", "4095", "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "--scram-iterations") || !strings.Contains(errOut, "4096") {
		t.Fatalf("--scram-iterations 4095: exit %d, %q; want 2 naming the setting and its minimum", code, errOut)
	}
	databases(t, func(t *testing.T, db string) {
		cfg := testConfig(t, db)
		n := startTestNode(t, cfg)
		iterations := func(user string) int {
			a, err := n.db.Account(context.Background(), user)
			if err != nil {
				t.Fatal(err)
			}
			return a.Iterations
		}
		addUser(t, cfg, "newbie", "newbie-password")
		if got := iterations("newbie"); got != sasl.DefaultIterations {
			t.Errorf("user add: %d iterations, want the default %d", got, sasl.DefaultIterations)
		}
		var out, errOut strings.Builder
		if code := run(context.Background(), []string{"user", "add", "oldie", "--scram-iterations", "4096", "--db", cfg.DB, "--data-dir", cfg.DataDir},
			nil, strings.NewReader("oldie-password\n"), &out, &errOut); code != 0 {
			t.Fatalf("user add --scram-iterations 4096: %d %s", code, errOut.String())
		}
		if got := iterations("oldie"); got != 4096 {
			t.Fatalf("user add --scram-iterations 4096: %d iterations", got)
		}
		if got := saslFrom(t, n, "127.0.0.1", "oldie", "oldie-password", "PLAIN"); got != "" {
			t.Fatalf("PLAIN login: %q", got)
		}
		if got := iterations("oldie"); got != cfg.SCRAMIterations {
			t.Fatalf("after a PLAIN login: %d iterations, want %d", got, cfg.SCRAMIterations)
		}
		for _, mech := range []string{"SCRAM-SHA-1", "SCRAM-SHA-256-PLUS"} {
			if got := saslFrom(t, n, "127.0.0.1", "oldie", "oldie-password", mech); got != "" {
				t.Fatalf("%s after the upgrade: %q", mech, got)
			}
		}
	})
}
