package chat_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
)

// TestSlixmppCarbonsAndArchive runs slixmpp's carbons and MAM clients (from
// Debian's python3-slixmpp) against the chat service over real streams.
func TestSlixmppCarbonsAndArchive(t *testing.T) {
	python := testenv.Command(t, "/usr/bin/python3", "apt-get install -y python3")
	if err := exec.Command(python, "-c", "import slixmpp").Run(); err != nil {
		testenv.Require(t, "python3-slixmpp is not installed (apt-get install -y python3-slixmpp)")
	}
	st := newStack(t, "", "alice", "bob")
	host, port, err := net.SplitHostPort(st.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "testdata/slixmpp_history.py", host, port, "localhost").CombinedOutput()
	t.Logf("slixmpp_history.py:\n%s", out)
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("slixmpp_history.py failed: %v", err)
	}
}
