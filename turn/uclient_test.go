package turn

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// uclient returns the path of coturn's test client, skipping the test
// when it is missing (failing under CI, where it must be installed).
func uclient(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("turnutils_uclient not found (install the coturn package): %v", err)
		}
		t.Skip("turnutils_uclient not installed (Debian package coturn)")
	}
	return path
}

var uclientTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)

// runUclient runs turnutils_uclient against srv with REST credentials
// and returns the messages it sent and received back.
// It returns -1, -1 when the client exits with an error.
func runUclient(t *testing.T, srv *Server, args ...string) (sent, received int, out []byte) {
	t.Helper()
	bin := uclient(t)
	c := srv.Credentials("uclient")
	addr := srv.UDPAddr()
	switch {
	case slices.Contains(args, "-S"):
		addr = srv.TLSAddr()
	case slices.Contains(args, "-t"):
		addr = srv.TCPAddr()
	}
	_, port, _ := net.SplitHostPort(addr.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-u", c.Username, "-w", c.Password, "-p", port}, args...)
	full = append(full, "127.0.0.1")
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	if err != nil {
		return -1, -1, out
	}
	all := uclientTotals.FindAllSubmatch(out, -1)
	if len(all) == 0 {
		t.Fatalf("no totals in turnutils_uclient output:\n%s", out)
	}
	m := all[len(all)-1] // the last line holds the totals over all sessions
	sent, _ = strconv.Atoi(string(m[1]))
	received, _ = strconv.Atoi(string(m[2]))
	t.Logf("turnutils_uclient %v: sent %d, received %d", args, sent, received)
	return sent, received, out
}

func TestUclientClientToClient(t *testing.T) {
	uclient(t)
	srv := startServer(t, func(c *Config) { c.AllowPeers = allowLoopV4 })
	// -y: two allocations relay to each other; -c: no RTCP pair. Their
	// relayed addresses are this host's, which the relay lets through
	// between live allocations only (AllowSelf is off).
	sent, received, out := runUclient(t, srv, "-y", "-c", "-n", "20", "-z", "5")
	if sent <= 0 || received != sent {
		t.Errorf("sent %d, received %d: want every message back\n%s", sent, received, out)
	}
}

func TestUclientOverTCP(t *testing.T) {
	uclient(t)
	srv := startServer(t, func(c *Config) { c.AllowPeers = allowLoopV4 })
	sent, received, out := runUclient(t, srv, "-t", "-y", "-c", "-n", "20", "-z", "5")
	if sent <= 0 || received != sent {
		t.Errorf("sent %d, received %d: want every message back\n%s", sent, received, out)
	}
}

func TestUclientOverTLS(t *testing.T) {
	uclient(t)
	cert, _ := selfSigned(t)
	srv := startServer(t, func(c *Config) {
		c.AllowPeers = allowLoopV4
		c.TLSAddr = "127.0.0.1:0"
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	sent, received, out := runUclient(t, srv, "-t", "-S", "-y", "-c", "-n", "20", "-z", "5")
	if sent <= 0 || received != sent {
		t.Errorf("sent %d, received %d: want every message back\n%s", sent, received, out)
	}
}

func TestUclientPeer(t *testing.T) {
	uclient(t)
	srv := startServer(t, relayToLoopback)
	port := echoPeer(t)
	sent, received, out := runUclient(t, srv, "-c", "-n", "20", "-z", "5", "-e", "127.0.0.1", "-r", port)
	if sent <= 0 || received != sent {
		t.Errorf("sent %d, received %d: want every message echoed back\n%s", sent, received, out)
	}
}

// echoPeer starts a UDP peer on 127.0.0.1 that echoes what it receives
// until the test ends, and returns its port.
func echoPeer(t *testing.T) string {
	t.Helper()
	peer := listenPeer(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			peer.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { peer.Close(); <-done })
	_, port, _ := net.SplitHostPort(peer.LocalAddr().String())
	return port
}

func TestUclientRefusedByDefault(t *testing.T) {
	uclient(t)
	srv := startServer(t, nil)
	_, received, out := runUclient(t, srv, "-y", "-c", "-n", "5", "-z", "5")
	if received > 0 {
		t.Errorf("turnutils_uclient relayed %d messages between loopback relays under the default policy\n%s", received, out)
	}
	if srv.Stats().PeersRefused == 0 {
		t.Errorf("no permission was refused\n%s", out)
	}
}
