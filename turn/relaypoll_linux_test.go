//go:build linux

package turn

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// relayOf returns the relay socket of c's allocation.
func relayOf(t *testing.T, srv *Server, c *rawClient) *relayConn {
	t.Helper()
	srv.fast.mu.RLock()
	rc := srv.fast.clients[c.local()]
	srv.fast.mu.RUnlock()
	if rc == nil {
		t.Fatal("no relay socket for the client")
	}
	return rc
}

// TestRelayPollerOneWakeManySockets: the relay sockets of one listener's
// allocations are read by one goroutine, which takes every socket that
// is readable in one wake-up and sends all their datagrams to their
// clients together. While the poller is held at the first socket's
// datagram (its mirror locked), datagrams reach seven more relay
// sockets; it then reads all seven in one more wake-up, and each client
// gets its own datagram. Fails with a reader per relay socket (no
// poller, or one wake-up per socket).
func TestRelayPollerOneWakeManySockets(t *testing.T) {
	srv := startFastServer(t, relayToLoopback, 0)
	if len(srv.pollers) != 1 {
		t.Fatalf("%d relay pollers for one UDP listener, want 1", len(srv.pollers))
	}
	poller := srv.pollers[0]
	p, pAddr := peerOn(t, "127.0.0.1")
	const n = 8
	clients := make([]*rawClient, n)
	relays := make([]netip.AddrPort, n)
	for i := range clients {
		clients[i], relays[i] = newRawClient(t, srv, fmt.Sprintf("user%d", i))
		if err := clients[i].bindChannel(0x4001, pAddr); err != nil {
			t.Fatal(err)
		}
	}
	first := relayOf(t, srv, clients[0])
	for round := range 3 {
		wakeups, reads := poller.wakeups.Load(), poller.reads.Load()
		first.smu.Lock()
		for i := range clients {
			// On loopback a datagram is in the relay socket's queue when
			// the send returns.
			sendFrom(t, p, relays[i], fmt.Sprintf("round %d to %d", round, i))
		}
		first.smu.Unlock()
		for i, c := range clients {
			want := relayed{channel: 0x4001, data: fmt.Sprintf("round %d to %d", round, i)}
			if got := c.receive(t); got != want {
				t.Fatalf("client %d got %+v, want %+v", i, got, want)
			}
		}
		dw, dr := poller.wakeups.Load()-wakeups, poller.reads.Load()-reads
		if dr != n || dw > 2 {
			t.Fatalf("round %d: the poller read %d relay sockets in %d wake-ups, want %d in at most 2", round, dr, dw, n)
		}
	}
	expectNothing(t, p, "peer")
}

// TestRelayPollerHandsOffToEngine: a datagram the fast path leaves to the
// engine (here one too long for it, which the engine relays cut to its
// buffer) goes to the engine's goroutine between the fast path's
// datagrams before and after it, in order, and the poller reads the
// socket again afterwards. Fails if the hand-off loses the datagram, the
// rest of its batch, or the socket.
func TestRelayPollerHandsOffToEngine(t *testing.T) {
	srv := startFastServer(t, relayToLoopback, 0)
	poller := srv.pollers[0]
	c, relayAddr := newRawClient(t, srv, "alice")
	_ = c.conn.SetReadBuffer(1 << 20)
	c.buf = make([]byte, 4096)
	p, pAddr := peerOn(t, "127.0.0.1")
	if err := c.bindChannel(0x4001, pAddr); err != nil {
		t.Fatal(err)
	}
	rc := relayOf(t, srv, c)
	long := strings.Repeat("x", relayMTU+100)
	for round := range 3 {
		// Held at the mirror, the poller finds all three in one read.
		rc.smu.Lock()
		sendFrom(t, p, relayAddr, fmt.Sprintf("before %d", round))
		sendFrom(t, p, relayAddr, long)
		sendFrom(t, p, relayAddr, fmt.Sprintf("after %d", round))
		rc.smu.Unlock()
		if got := c.receive(t); got != (relayed{channel: 0x4001, data: fmt.Sprintf("before %d", round)}) {
			t.Fatalf("client got %.40q, want before %d", got.data, round)
		}
		if got := c.receive(t); got.channel != 0x4001 || got.data != long[:relayMTU] {
			t.Fatalf("client got %d bytes on channel %#x, want the engine's %d", len(got.data), got.channel, relayMTU)
		}
		if got := c.receive(t); got != (relayed{channel: 0x4001, data: fmt.Sprintf("after %d", round)}) {
			t.Fatalf("client got %.40q, want after %d", got.data, round)
		}
		if !rc.polled.Load() {
			// The engine's goroutine gives the socket back once the batch
			// is done, which may follow the last datagram's send.
			checkPolled(t, rc)
		}
	}
	reads := poller.reads.Load()
	for i := range 5 {
		sendFrom(t, p, relayAddr, fmt.Sprintf("later %d", i))
		if got := c.receive(t); got != (relayed{channel: 0x4001, data: fmt.Sprintf("later %d", i)}) {
			t.Fatalf("client got %.40q, want later %d", got.data, i)
		}
	}
	if d := poller.reads.Load() - reads; d < 5 {
		t.Fatalf("the poller read the relay socket %d times for 5 datagrams after the hand-offs, want 5", d)
	}
	expectNothing(t, p, "peer")
}

// checkPolled waits until rc is back with its poller.
func checkPolled(t *testing.T, rc *relayConn) {
	t.Helper()
	waitFor(t, 5*time.Second, rc.polled.Load)
}

var _ net.PacketConn = (*relayConn)(nil)
