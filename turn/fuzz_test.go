package turn

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// FuzzTURNUsername: the REST username (EXPIRY:USER) parses only with a
// positive expiry and a user, and credentials the server issues parse
// back to their user and expiry.
func FuzzTURNUsername(f *testing.F) {
	for _, s := range []string{"1700000000:alice", "1700000000:a:b", ":alice", "0:alice", "-5:a", "1700000000:", "alice", "99999999999999999999:a", "+1:a"} {
		f.Add(s)
	}
	srv := &Server{cfg: Config{Realm: testRealm, Secret: testSecret, Now: func() time.Time { return time.Unix(1700000000, 0) }}}
	srv.log = slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, username string) {
		exp, user, ok := splitUsername(username)
		if ok {
			if user == "" || exp.Unix() <= 0 || !strings.HasSuffix(username, ":"+user) {
				t.Fatalf("%q parsed to %v, %q", username, exp, user)
			}
		}
		key, authed := srv.authenticate(username, testRealm, &net.UDPAddr{})
		if authed != (ok && exp.After(srv.cfg.Now())) || authed && len(key) == 0 {
			t.Fatalf("%q (parsed %v, expires %v): authenticated %v", username, ok, exp, authed)
		}
		if _, authed := srv.authenticate(username, testRealm+".evil", &net.UDPAddr{}); authed {
			t.Fatalf("%q authenticated in a foreign realm", username)
		}
		if user != "" && !strings.ContainsAny(user, "\x00") {
			c := NewCredentials(testSecret, user, time.Hour, srv.cfg.Now())
			exp2, user2, ok := splitUsername(c.Username)
			if !ok || user2 != user || !exp2.Equal(c.Expires) {
				t.Fatalf("issued %q for %q parses to %q, %v (%v)", c.Username, user, user2, exp2, ok)
			}
		}
	})
}

// FuzzPeerAllowed: a peer the relay may reach is none of the server's own
// or reserved ranges, in any IPv6 form that carries an IPv4 address.
func FuzzPeerAllowed(f *testing.F) {
	for _, s := range []string{"8.8.8.8", "127.0.0.1", "10.1.2.3", "169.254.169.254", "::ffff:127.0.0.1", "::127.0.0.1",
		"64:ff9b::7f00:1", "2002:7f00:1::", "2001:0:808:808::80ff:fefe", "2606:4700::1", "fe80::1%eth0", "::", "ff02::1"} {
		f.Add(netip.MustParseAddr(s).AsSlice())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		if !PeerAllowed(ip, nil) {
			return
		}
		if inAny(ip.Unmap(), forbiddenPeers) || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
			ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsInterfaceLocalMulticast() {
			t.Fatalf("%v may be relayed to", ip)
		}
		for _, v4 := range embeddedIPv4(ip, nil) {
			if !PeerAllowed(v4, nil) {
				t.Fatalf("%v may be relayed to, carrying %v", ip, v4)
			}
		}
		if ip.Is4() && !PeerAllowed(netip.AddrFrom16(ip.As16()), nil) {
			t.Fatalf("%v allowed, but not as %v", ip, netip.AddrFrom16(ip.As16()))
		}
	})
}

// stunMessage builds a STUN message of type typ with attrs (type, value).
func stunMessage(f *testing.F, typ stun.MessageType, attrs ...stun.RawAttribute) []byte {
	m := stun.New()
	m.Type = typ
	if err := m.NewTransactionID(); err != nil {
		f.Fatal(err)
	}
	for _, a := range attrs {
		m.Add(a.Type, a.Value)
	}
	m.WriteHeader()
	return bytes.Clone(m.Raw)
}

// FuzzTURNDatagram sends datagrams to a running relay's UDP port, each
// followed by a binding request: whatever came before, the relay keeps
// answering, and the fuzzer's one address never holds more than one
// allocation (none without credentials).
func FuzzTURNDatagram(f *testing.F) {
	srv := startServer(f, func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) })
	udpTransport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	peer := stun.RawAttribute{Type: stun.AttrXORPeerAddress, Value: []byte{0, 1, 0x21, 0x12, 0x21, 0x12, 0xa4, 0x42}}
	c := NewCredentials(testSecret, "alice", time.Hour, time.Now())
	for _, b := range [][]byte{
		stunMessage(f, stun.BindingRequest),
		stunMessage(f, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport),
		stunMessage(f, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport,
			stun.RawAttribute{Type: stun.AttrUsername, Value: []byte(c.Username)},
			stun.RawAttribute{Type: stun.AttrRealm, Value: []byte(testRealm)},
			stun.RawAttribute{Type: stun.AttrNonce, Value: []byte("nonce")},
			stun.RawAttribute{Type: stun.AttrMessageIntegrity, Value: make([]byte, 20)}),
		stunMessage(f, stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}}),
		stunMessage(f, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), peer),
		stunMessage(f, stun.NewType(stun.MethodChannelBind, stun.ClassRequest), peer, stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40, 0, 0, 0}}),
		stunMessage(f, stun.NewType(stun.MethodSend, stun.ClassIndication), peer, stun.RawAttribute{Type: stun.AttrData, Value: []byte("hi")}),
		{0x40, 0x00, 0x00, 0x02, 'h', 'i', 0, 0},
		{0x00, 0x01, 0xff, 0xff, 0x21, 0x12, 0xa4, 0x42},
	} {
		f.Add(b)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	defer conn.Close()
	to := srv.UDPAddr()
	buf := make([]byte, 1500)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := conn.WriteTo(b, to); err != nil {
			t.Fatal(err)
		}
		ping := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := conn.WriteTo(ping.Raw, to); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("after %x, no answer to a binding request: %v", b, err)
			}
			if n >= 20 && binary.BigEndian.Uint16(buf[:2]) == stun.BindingSuccess.Value() && bytes.Equal(buf[8:20], ping.TransactionID[:]) {
				break
			}
		}
		if n := srv.AllocationCount(); n > 0 {
			t.Fatalf("after %x, %d allocations exist without valid credentials", b, n)
		}
	})
}
