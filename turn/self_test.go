package turn

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

// expectNothing checks that nothing is waiting on c.
func expectNothing(t *testing.T, c *net.UDPConn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now())
	buf := make([]byte, 1500)
	if n, from, err := c.ReadFrom(buf); err == nil {
		t.Errorf("%s received %q from %s", what, buf[:n], from)
	}
}

// TestRelayRefusesOwnAddresses: with loopback opened by AllowPeers (as an
// operator might open a private range holding the server's addresses),
// a relay still cannot reach the server's own services, in any address
// form; two allocations of the relay still reach each other.
func TestRelayRefusesOwnAddresses(t *testing.T) {
	public := netip.MustParseAddr("93.184.216.34") // the node's public address (SelfAddrs); no packet is sent to it
	srv := startServer(t, func(c *Config) {
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::/127")}
		c.SelfAddrs = []netip.Addr{public}
	})
	sfu := listenPeer(t) // one of the node's services (the SFU) on the relay's own address
	sfuPort := sfu.LocalAddr().(*net.UDPAddr).Port
	turnPort := srv.UDPAddr().(*net.UDPAddr).Port

	alice := dialUDP(t, srv, creds("alice"))
	relayA, err := alice.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relayA.Close()
	bob := dialUDP(t, srv, creds("bob"))
	relayB, err := bob.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relayB.Close()

	// Permissions for this host's addresses other than the relayed one
	// are refused, whatever form the address takes.
	for _, ip := range []string{
		"127.0.0.2", "127.1.2.3", "0.0.0.0", "::1", "::", "::ffff:127.0.0.2",
		public.String(), "::ffff:" + public.String(), "64:ff9b::5db8:d822", "2002:5db8:d822::1", "::5db8:d822",
	} {
		if err := alice.CreatePermission(&net.UDPAddr{IP: net.ParseIP(ip), Port: sfuPort}); err == nil {
			t.Errorf("CreatePermission to this host's %s succeeded, want refused", ip)
		}
	}
	// A public address that is not this host's stays reachable (no
	// packet is sent).
	if err := alice.CreatePermission(&net.UDPAddr{IP: net.ParseIP("93.184.216.35"), Port: 9}); err != nil {
		t.Errorf("CreatePermission to another public address: %v", err)
	}

	// The relayed address itself may be given a permission (bob relays
	// too), but only relay sockets are reached through it: the SFU and
	// the TURN port get nothing, bob gets his datagram.
	dropped := srv.Stats().SelfDropped
	relayA.SetDeadline(time.Now().Add(5 * time.Second))
	relayB.SetDeadline(time.Now().Add(5 * time.Second))
	for _, port := range []int{sfuPort, turnPort} {
		if _, err := relayA.WriteTo([]byte("to the node's own service"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
			t.Fatalf("relay write to port %d: %v", port, err)
		}
	}
	if err := bob.CreatePermission(relayA.LocalAddr()); err != nil {
		t.Fatalf("bob's permission for alice's relayed address: %v", err)
	}
	if _, err := relayA.WriteTo([]byte("hello bob"), relayB.LocalAddr()); err != nil {
		t.Fatalf("relay write to bob's relay: %v", err)
	}
	buf := make([]byte, 1500)
	n, from, err := relayB.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello bob" {
		t.Fatalf("bob got %q from %v (%v), want alice's datagram through both relays", buf[:n], from, err)
	}
	waitFor(t, 5*time.Second, func() bool { return srv.Stats().SelfDropped >= dropped+2 })
	expectNothing(t, sfu, "the SFU")

	// Nor does the SFU reach alice through her relay: what it sends to the
	// relayed address is dropped, bob's next datagram arrives first.
	if _, err := sfu.WriteTo([]byte("from the node's own service"), relayA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := relayB.WriteTo([]byte("hello alice"), from); err != nil {
		t.Fatalf("bob's reply: %v", err)
	}
	n, _, err = relayA.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello alice" {
		t.Fatalf("alice got %q (%v), want bob's reply and nothing from the SFU", buf[:n], err)
	}
	if got := srv.Stats().SelfDropped; got < dropped+3 {
		t.Errorf("SelfDropped = %d, want %d", got, dropped+3)
	}
}

// TestRelayToSelfWhenAllowed: AllowSelf opens this host's addresses (for
// tests and benchmarks whose peers run on the server's host).
func TestRelayToSelfWhenAllowed(t *testing.T) {
	srv := startServer(t, relayToLoopback)
	alice := dialUDP(t, srv, creds("alice"))
	relay, err := alice.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	if err := alice.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 9}); err != nil {
		t.Errorf("CreatePermission to 127.0.0.2 with AllowSelf: %v", err)
	}
	sfu := listenPeer(t) // one of the node's services (the SFU) on the relay's own address
	relay.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := relay.WriteTo([]byte("allowed"), sfu.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = sfu.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	if n, _, err := sfu.ReadFrom(buf); err != nil || string(buf[:n]) != "allowed" {
		t.Errorf("own service got %q (%v) with AllowSelf", buf[:n], err)
	}
}

// TestUclientOwnServiceRefused: coturn's client relays to a UDP echo
// service on the server's own address: nothing gets through, where
// TestUclientPeer (AllowSelf) gets every message back.
func TestUclientOwnServiceRefused(t *testing.T) {
	uclient(t)
	srv := startServer(t, func(c *Config) { c.AllowPeers = allowLoopV4 })
	port := echoPeer(t) // one of the node's services on the relay's own address
	_, received, out := runUclient(t, srv, "-c", "-n", "5", "-z", "5", "-e", "127.0.0.1", "-r", port)
	if received > 0 {
		t.Errorf("turnutils_uclient got %d messages back from the server's own service\n%s", received, out)
	}
	if srv.Stats().SelfDropped == 0 {
		t.Errorf("no datagram to the server's own service was dropped\n%s", out)
	}
}

// TestSelfGuardAddresses covers the addresses the guard counts as this
// host's: interface addresses (read again after selfRefresh), listen and
// public addresses, in every IPv6 form that carries them.
func TestSelfGuardAddresses(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ifaces := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("2001:db8::5")}
	g := newSelfGuard(false, netip.MustParseAddr("203.0.113.9"), ListenAddrs("192.0.2.7:5222", "", "[2001:db8::7]:5280"),
		func() time.Time { return now }, slog.New(slog.DiscardHandler))
	g.interfaces = func() ([]netip.Addr, error) { return ifaces, nil }
	g.refresh()
	for _, tc := range []struct {
		ip      string
		refused bool
	}{
		{"10.1.2.3", true}, {"::ffff:10.1.2.3", true}, {"::a01:203", true}, {"64:ff9b::a01:203", true},
		{"2002:a01:203::1", true}, {"2001:0:a01:203::", true}, // Teredo server
		{"fe80::1", true}, {"fe80::1%eth1", true}, {"2001:db8::5", true},
		{"192.0.2.7", true}, {"2001:db8::7", true}, // listen addresses
		{"127.0.0.1", true}, {"127.9.9.9", true}, {"::1", true}, {"0.0.0.0", true}, {"::", true},
		{"203.0.113.9", false}, // the relayed address: relay to relay
		{"::ffff:203.0.113.9", false},
		{"64:ff9b::cb00:7109", true}, // the relayed address in another form
		{"10.1.2.4", false}, {"192.0.2.8", false}, {"2001:db8::6", false}, {"93.184.216.34", false},
	} {
		if got := g.refusesPeer(netip.MustParseAddr(tc.ip)); got != tc.refused {
			t.Errorf("refusesPeer(%s) = %v, want %v", tc.ip, got, tc.refused)
		}
	}

	// An address added to an interface is refused once the reading is
	// older than selfRefresh; a failed reading keeps the last one.
	ifaces = append(ifaces, netip.MustParseAddr("10.9.9.9"))
	if g.refusesPeer(netip.MustParseAddr("10.9.9.9")) {
		t.Error("the interfaces were read again before selfRefresh")
	}
	now = now.Add(selfRefresh)
	if !g.refusesPeer(netip.MustParseAddr("10.9.9.9")) {
		t.Error("a new interface address is still allowed after selfRefresh")
	}
	g.interfaces = func() ([]netip.Addr, error) { return nil, errors.New("no netlink") }
	now = now.Add(selfRefresh)
	if !g.refusesPeer(netip.MustParseAddr("10.9.9.9")) {
		t.Error("a failed reading forgot the interface addresses")
	}

	// Datagrams: only the relayed address, and only on a live relay port.
	g.opened(40000)
	for _, tc := range []struct {
		addr    string
		blocked bool
	}{
		{"203.0.113.9:40000", false}, {"203.0.113.9:40001", true}, {"10.1.2.3:40000", true},
		{"[::ffff:203.0.113.9]:40000", false}, {"93.184.216.34:40001", false},
	} {
		if got := g.blocks(net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.addr))); got != tc.blocked {
			t.Errorf("blocks(%s) = %v, want %v", tc.addr, got, tc.blocked)
		}
	}
	g.closed(40000)
	if !g.blocks(net.UDPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.9:40000"))) {
		t.Error("a closed relay port is still reachable")
	}

	// AllowSelf turns the guard off.
	g.off = true
	if g.refusesPeer(netip.MustParseAddr("127.0.0.1")) || g.blocks(&net.UDPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 1}) {
		t.Error("AllowSelf does not open this host's addresses")
	}
}
