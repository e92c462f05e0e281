package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
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
