package turn

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	pion "github.com/pion/turn/v4"
)

// flakyListener fails its first Accept calls with errs, then accepts.
type flakyListener struct {
	net.Listener
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

func TestTrackingListenerRidesOutAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emfile := errors.New("accept: too many open files")
	tl := newTrackingListener(&flakyListener{Listener: ln, errs: []error{emfile, emfile}},
		time.Minute, time.Minute, nil, slog.New(slog.DiscardHandler))
	defer tl.Close()

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := tl.Accept()
	if err != nil {
		t.Fatalf("Accept after transient errors: %v", err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("accepted %s, want %s", c.RemoteAddr(), client.LocalAddr())
	}

	// Closing the listener ends a retrying Accept too.
	tl2 := newTrackingListener(&flakyListener{Listener: ln, errs: []error{emfile, emfile, emfile, emfile, emfile, emfile, emfile, emfile}},
		time.Minute, time.Minute, nil, slog.New(slog.DiscardHandler))
	result := make(chan error, 1)
	go func() {
		_, err := tl2.Accept()
		result <- err
	}()
	tl2.Close()
	select {
	case err := <-result:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept kept retrying after Close")
	}
}

// TestUnauthenticatedStreamCutShort: a TCP connection that talks but never
// holds an allocation (binding requests, allocations with forged
// credentials) is closed AuthTimeout after its accept; one that allocated
// stays, silent or not.
func TestUnauthenticatedStreamCutShort(t *testing.T) {
	const limit = 300 * time.Millisecond
	srv := startServer(t, func(c *Config) { relayToLoopback(c); c.AuthTimeout = limit })
	addr := srv.TCPAddr().String()
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}

	good := dialStream(t, addr, dial(), creds("alice"))
	relay, err := good.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()

	chatty := dialStream(t, addr, dial(), creds("alice"))
	forged := creds("mallory")
	forged.Password = "not-the-password"
	liar := dialStream(t, addr, dial(), forged)
	if _, err := liar.Allocate(); err == nil {
		t.Fatal("an allocation with a forged password was granted")
	}

	// Both keep sending; the server ends both soon after the limit.
	start := time.Now()
	for _, c := range []*pion.Client{chatty, liar} {
		for {
			if _, err := c.SendBindingRequest(); err != nil {
				break
			}
			if time.Since(start) > 20*limit {
				t.Fatalf("a connection without an allocation was still served after %s (limit %s)", time.Since(start), limit)
			}
			time.Sleep(limit / 6)
		}
	}

	// The allocated connection outlived them by far, and still works
	// after a silence longer than the limit.
	time.Sleep(2 * limit)
	if _, err := good.SendBindingRequest(); err != nil {
		t.Fatalf("the connection holding an allocation was closed: %v", err)
	}
	if n := srv.AllocationCount(); n != 1 {
		t.Errorf("AllocationCount = %d, want 1", n)
	}
	peer := listenPeer(t)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := relay.WriteTo([]byte("still relaying"), peer.LocalAddr()); err != nil {
		t.Fatalf("relay write: %v", err)
	}
	buf := make([]byte, 64)
	if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "still relaying" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
}

// TestStreamConnsPerAddress: one address holds at most MaxConnsPerAddress
// TCP and TLS connections; the next is closed at once, another address
// still gets in, a closed connection gives its place back, and exempt
// addresses are not counted.
func TestStreamConnsPerAddress(t *testing.T) {
	srv := startServer(t, func(c *Config) {
		relayToLoopback(c)
		c.MaxConnsPerAddress = 2
		c.LimitExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
	})
	addr := srv.TCPAddr().String()
	dialFrom := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	// closedAtOnce: the server closes nc without waiting for anything.
	closedAtOnce := func(nc net.Conn) bool {
		nc.SetReadDeadline(time.Now().Add(time.Second))
		_, err := nc.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded))
	}

	first := dialFrom("127.0.0.1")
	second := dialFrom("127.0.0.1")
	waitFor(t, 5*time.Second, func() bool { return srv.perAddr.Held(netip.MustParseAddr("127.0.0.1")) == 2 })
	if !closedAtOnce(dialFrom("127.0.0.1")) {
		t.Fatal("a third connection from one address was kept open")
	}
	if n := srv.Stats().ConnsRefused; n != 1 {
		t.Errorf("ConnsRefused = %d, want 1", n)
	}
	// Another address relays as usual.
	relayRoundTrip(t, srv, dialStream(t, addr, dialFrom("127.0.0.2"), creds("bob")))

	first.Close()
	waitFor(t, 5*time.Second, func() bool { return srv.perAddr.Held(netip.MustParseAddr("127.0.0.1")) == 1 })
	relayRoundTrip(t, srv, dialStream(t, addr, dialFrom("127.0.0.1"), creds("alice")))
	_ = second

	for range 4 {
		dialFrom("127.0.0.9")
	}
	if closedAtOnce(dialFrom("127.0.0.9")) {
		t.Error("an exempt address was refused")
	}
}
