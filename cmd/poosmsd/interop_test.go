package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
)

// TestSlixmppInterop runs a third-party client library (slixmpp, from
// Debian's python3-slixmpp) against a real node: STARTTLS + SCRAM-SHA-256,
// presence subscription, messages both ways and an offline message with
// its delay stamp.
func TestSlixmppInterop(t *testing.T) {
	databases(t, func(t *testing.T, db string) {
		runSlixmpp(t, db, "slixmpp_chat.py")
	})
}

// TestSlixmppStreamResumption kills slixmpp's TCP connection mid-session;
// after it resumes, every message arrived exactly once.
func TestSlixmppStreamResumption(t *testing.T) {
	runSlixmpp(t, "", "slixmpp_resume.py")
}

// runSlixmpp starts a node with alice and bob and runs a slixmpp script
// from testdata against it; the script prints PASS on success.
func runSlixmpp(t *testing.T, db, script string) {
	t.Helper()
	python := testenv.Command(t, "/usr/bin/python3", "apt-get install -y python3")
	if err := exec.Command(python, "-c", "import slixmpp").Run(); err != nil {
		testenv.Require(t, "python3-slixmpp is not installed (apt-get install -y python3-slixmpp)")
	}
	cfg := testConfig(t, db)
	n := startTestNode(t, cfg)
	addUser(t, cfg, "alice", "alice-password")
	addUser(t, cfg, "bob", "bob-password")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/"+script, "127.0.0.1", n.c2sPort(), cfg.Domain)
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", script, out)
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("%s failed: %v", script, err)
	}
}

// TestGoSendxmppOverSTARTTLS sends a message with go-sendxmpp (Debian's
// package, a go-xmpp based client) over STARTTLS: go-xmpp ends its
// <starttls/> with a newline, which must not cost it the login.
func TestGoSendxmppOverSTARTTLS(t *testing.T) {
	bin := testenv.Command(t, "go-sendxmpp", "apt-get install -y go-sendxmpp")
	cfg := testConfig(t, "")
	n := startTestNode(t, cfg)
	addUser(t, cfg, "alice", "alice-password")
	addUser(t, cfg, "bob", "bob-password")
	bob := dialUser(t, n, "bob", "bob-password", "desk")
	ping(t, bob)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body := "sent by go-sendxmpp over STARTTLS"
	cmd := exec.CommandContext(ctx, bin, "-u", "alice@localhost", "-p", "alice-password",
		"-j", n.c2sAddr(), "-n", "bob@localhost")
	cmd.Stdin = strings.NewReader(body + "\n")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no sendxmpprc of the machine's
	out, err := cmd.CombinedOutput()
	t.Logf("go-sendxmpp: %s", out)
	if err != nil {
		t.Fatalf("go-sendxmpp over STARTTLS: %v", err)
	}
	m, err := bob.Expect(10*time.Second, func(e *stanza.Element) bool {
		return e.Local == "message" && e.ChildText("", "body") == body
	})
	if err != nil {
		t.Fatalf("bob waiting for go-sendxmpp's message: %v", err)
	}
	if !strings.HasPrefix(m.From(), "alice@localhost/") {
		t.Fatalf("message from %q, want alice's full JID", m.From())
	}
}
