package turn

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// The fast path relays data without the engine; these tests try to get
// data past the engine's rules through it. Each one sends what must not
// be relayed, then a datagram that must be, through the same single
// listener socket and in that order, so that the second one arriving
// first proves the first was not relayed (and expectNothing checks the
// sockets it could have gone to).

// startFastServer starts a relay with one UDP listener (so that
// datagrams from different clients are handled in the order sent).
func startFastServer(t *testing.T, edit func(*Config), channelBind time.Duration) *Server {
	t.Helper()
	cfg := Config{
		Realm:        testRealm,
		UDPAddr:      "127.0.0.1:0",
		Secret:       testSecret,
		UDPListeners: 1,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.channelBind = channelBind
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv
}

// fastRelayed sums the datagrams the fast path relayed, client → peer
// and peer → client, over the live relay sockets.
func (s *Server) fastRelayed() (in, out uint64) {
	s.fast.mu.RLock()
	defer s.fast.mu.RUnlock()
	for _, rc := range s.fast.relays {
		in += rc.fastIn.Load()
		out += rc.fastOut.Load()
	}
	return in, out
}

// mirrorChannels returns the channels the fast path knows for the
// allocation of client.
func (s *Server) mirrorChannels(client netip.AddrPort) int {
	s.fast.mu.RLock()
	rc := s.fast.clients[client]
	s.fast.mu.RUnlock()
	if rc == nil {
		return -1
	}
	rc.smu.RLock()
	defer rc.smu.RUnlock()
	return len(rc.chans)
}

// newRawClient dials srv and allocates, for user.
func newRawClient(t *testing.T, srv *Server, user string) (*rawClient, netip.AddrPort) {
	t.Helper()
	c, err := dialRaw(srv, user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	relayed, err := c.allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	return c, relayed
}

func dialRaw(srv *Server, user string) (*rawClient, error) {
	port := srv.UDPAddr().(*net.UDPAddr).Port
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return nil, err
	}
	cr := srv.Credentials(user)
	return &rawClient{conn: conn, user: cr.Username, pass: cr.Password, buf: make([]byte, 2048)}, nil
}

func (c *rawClient) local() netip.AddrPort {
	return c.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func peerAttr(peer netip.AddrPort) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		return stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
	})
}

// createPermission asks for a permission for peer's address.
func (c *rawClient) createPermission(peer netip.AddrPort) error {
	typ := stun.NewType(stun.MethodCreatePermission, stun.ClassRequest)
	res, err := c.roundTrip(append([]stun.Setter{stun.TransactionID, typ, peerAttr(peer)}, c.auth()...)...)
	if err != nil {
		return err
	}
	if res.Type.Class != stun.ClassSuccessResponse {
		return fmt.Errorf("create permission refused: %s", res)
	}
	return nil
}

// deleteAllocation refreshes the allocation with lifetime 0.
func (c *rawClient) deleteAllocation() error {
	typ := stun.NewType(stun.MethodRefresh, stun.ClassRequest)
	zero := setterFunc(func(m *stun.Message) error {
		m.Add(stun.AttrLifetime, []byte{0, 0, 0, 0})
		return nil
	})
	res, err := c.roundTrip(append([]stun.Setter{stun.TransactionID, typ, zero}, c.auth()...)...)
	if err != nil {
		return err
	}
	if res.Type.Class != stun.ClassSuccessResponse {
		return fmt.Errorf("refresh refused: %s", res)
	}
	return nil
}

// sendIndication sends data to peer in a Send indication.
func (c *rawClient) sendIndication(t *testing.T, peer netip.AddrPort, data []byte) {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		peerAttr(peer), setterFunc(func(m *stun.Message) error {
			m.Add(stun.AttrData, data)
			return nil
		}), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.Write(m.Raw); err != nil {
		t.Fatal(err)
	}
}

// channelData sends data on channel.
func (c *rawClient) channelData(t *testing.T, channel uint16, data []byte) {
	t.Helper()
	b := make([]byte, 4+len(data))
	binary.BigEndian.PutUint16(b, channel)
	binary.BigEndian.PutUint16(b[2:], uint16(len(data)))
	copy(b[4:], data)
	if _, err := c.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// relayed is a datagram the relay delivered to a client.
type relayed struct {
	channel uint16         // ChannelData: its channel; 0 for a Data indication
	peer    netip.AddrPort // Data indication: the peer
	data    string
}

// receive reads the next ChannelData or Data indication.
func (c *rawClient) receive(t *testing.T) relayed {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c.conn.Read(c.buf)
		if err != nil {
			t.Fatalf("client receive: %v", err)
		}
		b := c.buf[:n]
		if b[0]&0xc0 == 0x40 {
			l := int(binary.BigEndian.Uint16(b[2:]))
			if n%4 != 0 || l > n-4 {
				t.Fatalf("malformed ChannelData %x", b)
			}
			return relayed{channel: binary.BigEndian.Uint16(b), data: string(b[4 : 4+l])}
		}
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if err := m.Decode(); err != nil {
			t.Fatalf("client got neither ChannelData nor STUN: %v", err)
		}
		if m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
			continue
		}
		var peer stun.XORMappedAddress
		if err := peer.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
			t.Fatalf("Data indication without peer: %v", err)
		}
		data, err := m.Get(stun.AttrData)
		if err != nil {
			t.Fatalf("Data indication without data: %v", err)
		}
		ip, _ := netip.AddrFromSlice(peer.IP)
		return relayed{peer: netip.AddrPortFrom(ip.Unmap(), uint16(peer.Port)), data: string(data)}
	}
}

// peerOn returns a UDP socket on ip standing in for a remote peer.
func peerOn(t *testing.T, ip string) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// peerReceive reads the next datagram at a peer and checks where it
// came from.
func peerReceive(t *testing.T, c *net.UDPConn, from netip.AddrPort) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("peer receive: %v", err)
	}
	if src.Port() != from.Port() {
		t.Fatalf("peer got %q from %s, want from the relay %s", buf[:n], src, from)
	}
	return string(buf[:n])
}

func sendFrom(t *testing.T, c *net.UDPConn, to netip.AddrPort, data string) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(data), to); err != nil {
		t.Fatal(err)
	}
}

// TestFastPathRelays: ChannelData and Send indications reach the peer,
// and the peer's datagrams come back as ChannelData on a bound channel
// and as Data indications otherwise, all through the fast path.
func TestFastPathRelays(t *testing.T) {
	t.Run("ipv4 listener", func(t *testing.T) { testFastPathRelays(t, relayToLoopback) })
	// A listener on the wildcard address is an IPv6 socket that sees
	// IPv4 clients in IPv4-mapped form (clients still use loopback).
	t.Run("dual-stack listener", func(t *testing.T) { testFastPathRelays(t, dualStackListener) })
}

// dualStackListener is relayToLoopback with the listener on the wildcard
// address: an IPv6 socket that sees IPv4 clients in IPv4-mapped form.
func dualStackListener(c *Config) {
	relayToLoopback(c)
	c.UDPAddr = ":0"
	c.RelayIP = net.IPv4(127, 0, 0, 1)
}

func testFastPathRelays(t *testing.T, edit func(*Config)) {
	srv := startFastServer(t, edit, 0)
	c, relayAddr := newRawClient(t, srv, "alice")
	p, pAddr := peerOn(t, "127.0.0.1")
	q, qAddr := peerOn(t, "127.0.0.1")

	if err := c.bindChannel(0x4001, pAddr); err != nil {
		t.Fatal(err)
	}
	c.channelData(t, 0x4001, []byte("on channel"))
	if got := peerReceive(t, p, relayAddr); got != "on channel" {
		t.Errorf("peer got %q over the channel", got)
	}
	// The channel's permission (per address) covers q as well.
	c.sendIndication(t, qAddr, []byte("indicated"))
	if got := peerReceive(t, q, relayAddr); got != "indicated" {
		t.Errorf("peer got %q in a Send indication", got)
	}
	for _, size := range []int{1, 2, 3, 4, 5, 1200} { // padding
		msg := bytes.Repeat([]byte{'x'}, size)
		sendFrom(t, p, relayAddr, string(msg))
		if got := c.receive(t); got != (relayed{channel: 0x4001, data: string(msg)}) {
			t.Errorf("client got %+v from the channel's peer, want %d bytes of ChannelData on 0x4001", got, size)
		}
		sendFrom(t, q, relayAddr, string(msg))
		if got := c.receive(t); got != (relayed{peer: qAddr, data: string(msg)}) {
			t.Errorf("client got %+v from an unbound peer, want a Data indication of %d bytes from %s", got, size, qAddr)
		}
	}
	in, out := srv.fastRelayed()
	if in != 2 || out != 12 {
		t.Errorf("fast path relayed %d datagrams to peers and %d to the client, want 2 and 12", in, out)
	}
}

// TestFastPathNoPermission: without a permission or channel nothing
// passes, in either direction; a peer of a permitted address passes.
func TestFastPathNoPermission(t *testing.T) {
	srv := startFastServer(t, relayToLoopback, 0)
	c, relayAddr := newRawClient(t, srv, "alice")
	p, pAddr := peerOn(t, "127.0.0.1")
	q, qAddr := peerOn(t, "127.0.0.2") // never permitted

	// Before any permission: Send indications and ChannelData are dropped.
	c.sendIndication(t, pAddr, []byte("no permission yet"))
	c.channelData(t, 0x4001, []byte("no channel yet"))
	if err := c.createPermission(pAddr); err != nil {
		t.Fatal(err)
	}
	c.sendIndication(t, qAddr, []byte("to a peer without permission"))
	c.channelData(t, 0x4001, []byte("unbound channel"))
	c.sendIndication(t, pAddr, []byte("permitted"))
	if got := peerReceive(t, p, relayAddr); got != "permitted" {
		t.Errorf("peer got %q first, want only the permitted datagram", got)
	}
	expectNothing(t, p, "permitted peer")
	expectNothing(t, q, "peer without permission")

	// From the peer without permission nothing reaches the client.
	sendFrom(t, q, relayAddr, "unpermitted peer")
	sendFrom(t, p, relayAddr, "permitted peer")
	if got := c.receive(t); got != (relayed{peer: pAddr, data: "permitted peer"}) {
		t.Errorf("client got %+v first, want the permitted peer's datagram", got)
	}
}

// TestFastPathDeniedPeer: a peer the policy refuses gets no permission
// or channel, so nothing reaches it through the fast path either.
func TestFastPathDeniedPeer(t *testing.T) {
	srv := startFastServer(t, func(c *Config) {
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.AllowSelf = true
	}, 0)
	c, relayAddr := newRawClient(t, srv, "alice")
	p, pAddr := peerOn(t, "127.0.0.1")
	q, qAddr := peerOn(t, "127.0.0.2") // refused by the policy

	if err := c.bindChannel(0x4002, qAddr); err == nil {
		t.Fatal("ChannelBind to a refused peer succeeded")
	}
	if err := c.createPermission(qAddr); err == nil {
		t.Fatal("CreatePermission for a refused peer succeeded")
	}
	if err := c.bindChannel(0x4001, pAddr); err != nil {
		t.Fatal(err)
	}
	c.channelData(t, 0x4002, []byte("refused peer's channel"))
	c.sendIndication(t, qAddr, []byte("refused peer"))
	c.channelData(t, 0x4001, []byte("allowed"))
	if got := peerReceive(t, p, relayAddr); got != "allowed" {
		t.Errorf("peer got %q first", got)
	}
	expectNothing(t, q, "refused peer")
	sendFrom(t, q, relayAddr, "from a refused peer")
	sendFrom(t, p, relayAddr, "from the allowed peer")
	if got := c.receive(t); got != (relayed{channel: 0x4001, data: "from the allowed peer"}) {
		t.Errorf("client got %+v first", got)
	}
	if s := srv.Stats(); s.PeersRefused != 2 {
		t.Errorf("PeersRefused = %d, want 2", s.PeersRefused)
	}
}

// TestFastPathChannelExpires: once a channel binding's lifetime runs
// out, its number no longer relays; the peer's datagrams come back as
// Data indications while the permission lasts.
func TestFastPathChannelExpires(t *testing.T) {
	srv := startFastServer(t, relayToLoopback, 300*time.Millisecond)
	c, relayAddr := newRawClient(t, srv, "alice")
	p, pAddr := peerOn(t, "127.0.0.1")
	if err := c.bindChannel(0x4001, pAddr); err != nil {
		t.Fatal(err)
	}
	c.channelData(t, 0x4001, []byte("bound"))
	if got := peerReceive(t, p, relayAddr); got != "bound" {
		t.Fatalf("peer got %q", got)
	}
	waitFor(t, 5*time.Second, func() bool { return srv.mirrorChannels(c.local()) == 0 })

	c.channelData(t, 0x4001, []byte("expired channel"))
	c.sendIndication(t, pAddr, []byte("indication"))
	if got := peerReceive(t, p, relayAddr); got != "indication" {
		t.Errorf("peer got %q first, want nothing over the expired channel", got)
	}
	sendFrom(t, p, relayAddr, "answer")
	if got := c.receive(t); got != (relayed{peer: pAddr, data: "answer"}) {
		t.Errorf("client got %+v, want a Data indication after the channel expired", got)
	}
}

// TestFastPathAllocationDeleted: after the client deletes its
// allocation, its channel and permission are gone, for it and for a
// client at another address using the same channel number.
func TestFastPathAllocationDeleted(t *testing.T) {
	srv := startFastServer(t, relayToLoopback, 0)
	gone, goneRelay := newRawClient(t, srv, "alice")
	other, otherRelay := newRawClient(t, srv, "bob")
	p, pAddr := peerOn(t, "127.0.0.1")
	for _, c := range []*rawClient{gone, other} {
		if err := c.bindChannel(0x4001, pAddr); err != nil {
			t.Fatal(err)
		}
	}
	if err := gone.deleteAllocation(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return srv.AllocationCount() == 1 })
	gone.channelData(t, 0x4001, []byte("deleted allocation"))
	gone.sendIndication(t, pAddr, []byte("deleted allocation"))
	other.channelData(t, 0x4001, []byte("live allocation"))
	if got := peerReceive(t, p, otherRelay); got != "live allocation" {
		t.Errorf("peer got %q first", got)
	}
	expectNothing(t, p, "peer")
	// The deleted relay address is closed; the live one relays.
	sendFrom(t, p, goneRelay, "to the deleted relay")
	sendFrom(t, p, otherRelay, "to the live relay")
	if got := other.receive(t); got.data != "to the live relay" {
		t.Errorf("live client got %+v", got)
	}
	_ = gone.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := gone.conn.Read(gone.buf); err == nil {
		t.Errorf("client of the deleted allocation received %x", gone.buf[:n])
	}
}

// TestFastPathOverQuota: a client refused an allocation at the quota
// relays nothing, even on a channel number another client bound.
func TestFastPathOverQuota(t *testing.T) {
	srv := startFastServer(t, func(c *Config) {
		relayToLoopback(c)
		c.MaxAllocationsPerUser = 1
	}, 0)
	first, firstRelay := newRawClient(t, srv, "alice")
	p, pAddr := peerOn(t, "127.0.0.1")
	if err := first.bindChannel(0x4001, pAddr); err != nil {
		t.Fatal(err)
	}
	second, err := dialRaw(srv, "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer second.conn.Close()
	if _, err := second.allocate(); err == nil {
		t.Fatal("second allocation over the quota succeeded")
	}
	second.channelData(t, 0x4001, []byte("over quota"))
	second.sendIndication(t, pAddr, []byte("over quota"))
	first.channelData(t, 0x4001, []byte("within quota"))
	if got := peerReceive(t, p, firstRelay); got != "within quota" {
		t.Errorf("peer got %q first", got)
	}
	expectNothing(t, p, "peer")
	if s := srv.Stats(); s.QuotaRefused != 1 {
		t.Errorf("QuotaRefused = %d, want 1", s.QuotaRefused)
	}
}

// TestFastPathOwnAddresses: with loopback allowed as a peer range but
// the host's own addresses refused, a permission for the relayed
// address (relay to relay) lets only live relay ports through on the
// fast path, as on the engine's.
func TestFastPathOwnAddresses(t *testing.T) {
	srv := startFastServer(t, func(c *Config) { c.AllowPeers = allowLoopV4 }, 0)
	a, aRelay := newRawClient(t, srv, "alice")
	b, bRelay := newRawClient(t, srv, "bob")
	service, servicePort := peerOn(t, "127.0.0.1") // a service on this host, same address as the relays
	if err := a.bindChannel(0x4001, bRelay); err != nil {
		t.Fatal(err)
	}
	if err := b.createPermission(aRelay); err != nil {
		t.Fatal(err)
	}
	// The permission for the relayed address covers servicePort, but
	// datagrams there are dropped.
	a.sendIndication(t, servicePort, []byte("to a local service"))
	a.channelData(t, 0x4001, []byte("relay to relay"))
	if got := b.receive(t); got != (relayed{peer: aRelay, data: "relay to relay"}) {
		t.Errorf("relay b's client got %+v", got)
	}
	expectNothing(t, service, "local service")
	// The service cannot reach the client through the relayed address.
	sendFrom(t, service, aRelay, "from a local service")
	b.sendIndication(t, aRelay, []byte("back"))
	if got := a.receive(t); got != (relayed{channel: 0x4001, data: "back"}) {
		t.Errorf("client a got %+v first", got)
	}
	if s := srv.Stats(); s.SelfDropped != 2 {
		t.Errorf("SelfDropped = %d, want 2", s.SelfDropped)
	}
}

// TestParseSend: malformed Send indications are left to the engine.
func TestParseSend(t *testing.T) {
	peer := netip.MustParseAddrPort("192.0.2.7:4000")
	build := func(setters ...stun.Setter) []byte {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication)}, setters...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	data := setterFunc(func(m *stun.Message) error { m.Add(stun.AttrData, []byte("hello")); return nil })
	good := build(peerAttr(peer), data, stun.Fingerprint)
	if got, d, ok := parseSend(good); !ok || got != peer || string(d) != "hello" {
		t.Fatalf("parseSend(good) = %s %q %v", got, d, ok)
	}
	v6 := netip.MustParseAddrPort("[2001:db8::1]:9")
	if got, _, ok := parseSend(build(peerAttr(v6), data)); !ok || got != v6 {
		t.Errorf("parseSend(IPv6 peer) = %s %v", got, ok)
	}
	for name, pkt := range map[string][]byte{
		"no peer":     build(data),
		"no data":     build(peerAttr(peer)),
		"truncated":   good[:len(good)-3],
		"bad cookie":  append(append([]byte{}, good[:4]...), append([]byte{1, 2, 3, 4}, good[8:]...)...),
		"long attr":   append(append([]byte{}, good[:22]...), append([]byte{0xff, 0xff}, good[24:]...)...),
		"header only": good[:stunHeaderSize],
	} {
		if _, _, ok := parseSend(pkt); ok {
			t.Errorf("parseSend(%s) accepted", name)
		}
	}
}

// TestFastPathMixedBursts: bursts in which datagrams for the engine (an
// unbound channel, a peer without a permission) sit between relayed
// ones, so that one read holds both, arrive in order and nothing is left
// waiting in a socket afterwards.
func TestFastPathMixedBursts(t *testing.T) {
	srv := startFastServer(t, relayToLoopback, 0)
	c, relayAddr := newRawClient(t, srv, "alice")
	p, pAddr := peerOn(t, "127.0.0.1")
	q, _ := peerOn(t, "127.0.0.2") // never permitted
	if err := c.bindChannel(0x4001, pAddr); err != nil {
		t.Fatal(err)
	}
	const burst = 40
	for round := range 3 {
		for i := range burst {
			c.channelData(t, 0x4001, fmt.Appendf(nil, "to peer %d.%d", round, i))
			if i%7 == 3 {
				c.channelData(t, 0x4002, []byte("unbound channel"))
			}
		}
		for i := range burst {
			if got, want := peerReceive(t, p, relayAddr), fmt.Sprintf("to peer %d.%d", round, i); got != want {
				t.Fatalf("peer got %q, want %q", got, want)
			}
		}
		for i := range burst {
			sendFrom(t, p, relayAddr, fmt.Sprintf("to client %d.%d", round, i))
			if i%5 == 2 {
				sendFrom(t, q, relayAddr, "unpermitted peer")
			}
		}
		for i := range burst {
			want := relayed{channel: 0x4001, data: fmt.Sprintf("to client %d.%d", round, i)}
			if got := c.receive(t); got != want {
				t.Fatalf("client got %+v, want %+v", got, want)
			}
		}
	}
	// A lone datagram after the bursts still goes through both ways.
	c.channelData(t, 0x4001, []byte("last"))
	if got := peerReceive(t, p, relayAddr); got != "last" {
		t.Errorf("peer got %q, want the last datagram", got)
	}
	sendFrom(t, p, relayAddr, "last back")
	if got := c.receive(t); got != (relayed{channel: 0x4001, data: "last back"}) {
		t.Errorf("client got %+v, want the last datagram back", got)
	}
	expectNothing(t, p, "peer")
}

// gsoSent sums the datagrams the relay's writers sent in GSO runs:
// client → peer and peer → client.
func (s *Server) gsoSent() (in, out uint64) {
	s.fast.mu.RLock()
	for _, rc := range s.fast.relays {
		if rc.peerWriter.Writer == nil {
			continue
		}
		_, d := rc.peerWriter.GSO()
		in += d
		if rc.writer != nil {
			_, d = rc.writer.GSO()
			out += d
		}
	}
	s.fast.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pollers {
		_, d := p.writer.GSO()
		out += d
	}
	return in, out
}

// TestFastPathGSO: bursts of equal-sized datagrams both ways arrive
// whole and in order, and the relay's writers join them with UDP GSO
// (the bursts are repeated until both directions have sent a run, as a
// burst's datagrams reach the relay in one read only when it is slower
// than the sender).
func TestFastPathGSO(t *testing.T) {
	t.Run("ipv4 listener", func(t *testing.T) { testFastPathGSO(t, relayToLoopback) })
	t.Run("dual-stack listener", func(t *testing.T) { testFastPathGSO(t, dualStackListener) })
}

func testFastPathGSO(t *testing.T, edit func(*Config)) {
	srv := startFastServer(t, edit, 0)
	c, relayAddr := newRawClient(t, srv, "alice")
	p, pAddr := peerOn(t, "127.0.0.1")
	if err := c.bindChannel(0x4001, pAddr); err != nil {
		t.Fatal(err)
	}
	const burst = 40
	payload := func(dir string, round, i int) string {
		return fmt.Sprintf("%s %04d.%02d %s", dir, round, i, bytes.Repeat([]byte{'x'}, 150))
	}
	deadline := time.Now().Add(10 * time.Second)
	for round := 0; ; round++ {
		for i := range burst {
			c.channelData(t, 0x4001, []byte(payload("to peer", round, i)))
		}
		for i := range burst {
			if got, want := peerReceive(t, p, relayAddr), payload("to peer", round, i); got != want {
				t.Fatalf("peer got %.20q, want %.20q", got, want)
			}
		}
		for i := range burst {
			sendFrom(t, p, relayAddr, payload("to client", round, i))
		}
		for i := range burst {
			want := relayed{channel: 0x4001, data: payload("to client", round, i)}
			if got := c.receive(t); got != want {
				t.Fatalf("client got %.30q, want %.30q", got.data, want.data)
			}
		}
		in, out := srv.gsoSent()
		if in > 0 && out > 0 {
			t.Logf("%d rounds of %d each way; %d datagrams to the peer and %d to the client went in GSO runs", round+1, burst, in, out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds, %d datagrams to the peer and %d to the client went in GSO runs; want some each way", round+1, in, out)
		}
	}
	expectNothing(t, p, "peer")
}

// TestFastPathBusyRelayGrows: a relay socket reads small batches until
// a read fills one, and relayBatchBusy datagrams at a time from then
// on; what it relays before, across and after the change arrives whole
// and in order.
func TestFastPathBusyRelayGrows(t *testing.T) {
	srv := startFastServer(t, relayToLoopback, 0)
	c, relayAddr := newRawClient(t, srv, "alice")
	_ = c.conn.SetReadBuffer(1 << 20)
	p, pAddr := peerOn(t, "127.0.0.1")
	if err := c.bindChannel(0x4001, pAddr); err != nil {
		t.Fatal(err)
	}
	srv.fast.mu.RLock()
	rc := srv.fast.clients[c.local()]
	srv.fast.mu.RUnlock()
	if rc == nil {
		t.Fatal("no relay socket for the client")
	}
	roundTrip := func(data string) {
		t.Helper()
		sendFrom(t, p, relayAddr, data)
		if got := c.receive(t); got != (relayed{channel: 0x4001, data: data}) {
			t.Fatalf("client got %+v, want %q", got, data)
		}
	}
	for i := range 3 {
		roundTrip(fmt.Sprintf("alone %d", i))
	}
	if m := rc.maxBatch.Load(); m != 1 {
		t.Fatalf("largest read %d datagrams with one at a time, want 1", m)
	}
	// Holding the mirror stops the relay's reader at the first datagram
	// of the burst, in its first batch, while the rest queue behind it:
	// the next read fills its batch, and the reads after it take more.
	const burst = 100
	sendBurst := func(name string) {
		t.Helper()
		rc.smu.Lock()
		for i := range burst {
			sendFrom(t, p, relayAddr, fmt.Sprintf("%s %03d", name, i))
		}
		rc.smu.Unlock()
		for i := range burst {
			want := relayed{channel: 0x4001, data: fmt.Sprintf("%s %03d", name, i)}
			if got := c.receive(t); got != want {
				t.Fatalf("client got %+v, want %+v", got, want)
			}
		}
	}
	sendBurst("burst")
	if m := rc.maxBatch.Load(); m <= relayBatch {
		t.Fatalf("largest read %d datagrams in a burst of %d: the batch did not grow past %d", m, burst, relayBatch)
	}
	// The grown batch serves a second burst and single datagrams alike.
	sendBurst("again")
	roundTrip("alone at the end")
	expectNothing(t, p, "peer")
}
