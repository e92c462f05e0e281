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
func TestSlixmppCarbonsAndArchive(t *testing.T) { runSlixmpp(t, "slixmpp_history.py") }

// TestSlixmppPEP runs slixmpp's PEP, avatar, vCard and blocking clients.
func TestSlixmppPEP(t *testing.T) { runSlixmpp(t, "slixmpp_pep.py") }

// runSlixmpp runs a script from testdata against a fresh stack with alice
// and bob; the script prints PASS on success.
func runSlixmpp(t *testing.T, script string) {
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
	out, err := exec.CommandContext(ctx, python, "testdata/"+script, host, port, "localhost").CombinedOutput()
	t.Logf("%s:\n%s", script, out)
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("%s failed: %v", script, err)
	}
}
