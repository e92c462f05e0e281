package turn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/logging"
	pion "github.com/pion/turn/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testRealm = "example.test"

var (
	testSecret   = []byte("0123456789abcdef-test-secret")
	allowLoopV4  = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	quietLoggers = logging.NewDefaultLoggerFactory()
)

func init() {
	quietLoggers.DefaultLogLevel = logging.LogLevelDisabled
}

// relayToLoopback lets the relay reach test peers: loopback sockets on
// this host, which the relay refuses twice by default (a loopback range,
// and this host's own addresses).
func relayToLoopback(c *Config) {
	c.AllowPeers = allowLoopV4
	c.AllowSelf = true
}

// startServer starts a relay on loopback UDP and TCP with the test secret
// and returns it; edit adjusts the config first.
func startServer(t testing.TB, edit func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Realm:        testRealm,
		UDPAddr:      "127.0.0.1:0",
		TCPAddr:      "127.0.0.1:0",
		Secret:       testSecret,
		UDPListeners: 2,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
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

// dialUDP returns a TURN client talking to srv over UDP.
func dialUDP(t *testing.T, srv *Server, c Credentials) *pion.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, srv.UDPAddr().String(), conn, c)
}

// dialStream returns a TURN client talking to srv over an established
// TCP or TLS connection.
func dialStream(t *testing.T, addr string, nc net.Conn, c Credentials) *pion.Client {
	t.Helper()
	return newClient(t, addr, pion.NewSTUNConn(nc), c)
}

func newClient(t *testing.T, addr string, conn net.PacketConn, c Credentials) *pion.Client {
	t.Helper()
	client, err := pion.NewClient(&pion.ClientConfig{
		STUNServerAddr: addr,
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       c.Username,
		Password:       c.Password,
		Realm:          testRealm,
		RTO:            100 * time.Millisecond,
		LoggerFactory:  quietLoggers,
	})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		conn.Close()
	})
	return client
}

func creds(user string) Credentials {
	return NewCredentials(testSecret, user, time.Hour, time.Now())
}

// listenPeer returns a UDP socket on loopback standing in for the remote
// party of a relayed flow.
func listenPeer(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// relayRoundTrip sends a datagram from the client through its relay to a
// peer, answers it from the peer, and checks both arrive intact and that
// the peer sees the relayed address as the sender.
func relayRoundTrip(t *testing.T, srv *Server, client *pion.Client) {
	t.Helper()
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	relayAddr := relay.LocalAddr().(*net.UDPAddr)
	if !relayAddr.IP.Equal(srv.RelayIP()) {
		t.Errorf("relayed address %s, want IP %s", relayAddr, srv.RelayIP())
	}

	peer := listenPeer(t)
	deadline := time.Now().Add(5 * time.Second)
	peer.SetDeadline(deadline)
	relay.SetDeadline(deadline)

	out := []byte("hello through the relay")
	if _, err := relay.WriteTo(out, peer.LocalAddr()); err != nil {
		t.Fatalf("relay write: %v", err)
	}
	buf := make([]byte, 1500)
	n, from, err := peer.ReadFrom(buf)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	if string(buf[:n]) != string(out) {
		t.Errorf("peer got %q, want %q", buf[:n], out)
	}
	if from.(*net.UDPAddr).Port != relayAddr.Port {
		t.Errorf("peer saw sender %s, want the relayed address %s", from, relayAddr)
	}

	back := []byte("and back again")
	if _, err := peer.WriteTo(back, from); err != nil {
		t.Fatalf("peer write: %v", err)
	}
	n, from, err = relay.ReadFrom(buf)
	if err != nil {
		t.Fatalf("relay read: %v", err)
	}
	if string(buf[:n]) != string(back) {
		t.Errorf("client got %q, want %q", buf[:n], back)
	}
	if from.String() != peer.LocalAddr().String() {
		t.Errorf("client saw sender %s, want the peer %s", from, peer.LocalAddr())
	}
}

func TestRelayUDP(t *testing.T) {
	srv := startServer(t, relayToLoopback)
	relayRoundTrip(t, srv, dialUDP(t, srv, creds("alice")))
}

func TestRelayTCP(t *testing.T) {
	srv := startServer(t, relayToLoopback)
	nc, err := net.Dial("tcp", srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	relayRoundTrip(t, srv, dialStream(t, srv.TCPAddr().String(), nc, creds("alice")))
}

func TestRelayTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srv := startServer(t, func(c *Config) {
		relayToLoopback(c)
		c.TLSAddr = "127.0.0.1:0"
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	nc, err := tls.Dial("tcp", srv.TLSAddr().String(), &tls.Config{RootCAs: pool, ServerName: "turn.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	relayRoundTrip(t, srv, dialStream(t, srv.TLSAddr().String(), nc, creds("alice")))
}

func TestSTUNBinding(t *testing.T) {
	srv := startServer(t, nil)
	client := dialUDP(t, srv, Credentials{})
	mapped, err := client.SendBindingRequest()
	if err != nil {
		t.Fatalf("binding request: %v", err)
	}
	if !mapped.(*net.UDPAddr).IP.IsLoopback() {
		t.Errorf("mapped address %s, want a loopback address", mapped)
	}
}

func TestPeerPolicyOnServer(t *testing.T) {
	forbidden := []string{"127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1", "192.168.1.1"}

	t.Run("default refuses", func(t *testing.T) {
		srv := startServer(t, nil)
		client := dialUDP(t, srv, creds("alice"))
		relay, err := client.Allocate()
		if err != nil {
			t.Fatalf("Allocate: %v", err)
		}
		defer relay.Close()
		for _, ip := range forbidden {
			err := client.CreatePermission(&net.UDPAddr{IP: net.ParseIP(ip), Port: 9})
			if err == nil {
				t.Errorf("CreatePermission to %s succeeded, want refused", ip)
			}
		}
		// A public address stays reachable (no packet is sent).
		if err := client.CreatePermission(&net.UDPAddr{IP: net.ParseIP("93.184.216.34"), Port: 9}); err != nil {
			t.Errorf("CreatePermission to a public address: %v", err)
		}
		// Nor can a refused peer be reached by sending to it directly.
		peer := listenPeer(t)
		if _, err := relay.WriteTo([]byte("x"), peer.LocalAddr()); err == nil {
			t.Errorf("relaying to loopback peer %s succeeded, want refused", peer.LocalAddr())
		}
		if got := srv.Stats().PeersRefused; got == 0 {
			t.Errorf("Stats().PeersRefused = 0 after refusals")
		}
	})

	t.Run("allowed ranges accepted", func(t *testing.T) {
		srv := startServer(t, func(c *Config) {
			c.AllowSelf = true // loopback and unspecified are also this host's own
			c.AllowPeers = []netip.Prefix{
				netip.MustParsePrefix("127.0.0.0/8"),
				netip.MustParsePrefix("10.0.0.0/8"),
				netip.MustParsePrefix("169.254.169.254/32"),
				netip.MustParsePrefix("0.0.0.0/32"),
				netip.MustParsePrefix("::/127"),
				netip.MustParsePrefix("192.168.0.0/16"),
			}
		})
		client := dialUDP(t, srv, creds("alice"))
		relay, err := client.Allocate()
		if err != nil {
			t.Fatalf("Allocate: %v", err)
		}
		defer relay.Close()
		for _, ip := range forbidden {
			if err := client.CreatePermission(&net.UDPAddr{IP: net.ParseIP(ip), Port: 9}); err != nil {
				t.Errorf("CreatePermission to allowed %s: %v", ip, err)
			}
		}
		if err := client.CreatePermission(&net.UDPAddr{IP: net.ParseIP("172.16.0.1"), Port: 9}); err == nil {
			t.Errorf("CreatePermission to 172.16.0.1 (not in the allow list) succeeded")
		}
	})
}

func TestCredentialsRefused(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	srv := startServer(t, func(c *Config) {
		c.Now = func() time.Time { return *now.Load() }
	})

	good := NewCredentials(testSecret, "alice", time.Hour, start)
	for _, tc := range []struct {
		name string
		c    Credentials
	}{
		{"wrong secret", NewCredentials([]byte("not the server secret"), "alice", time.Hour, start)},
		{"user swapped", Credentials{Username: strings.Replace(good.Username, "alice", "mallory", 1), Password: good.Password}},
		{"expiry extended", Credentials{Username: "9999999999:alice", Password: good.Password}},
		{"already expired", NewCredentials(testSecret, "alice", -time.Second, start)},
		{"no expiry", Credentials{Username: "alice", Password: password(testSecret, "alice")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Stats().AuthRefused
			if _, err := dialUDP(t, srv, tc.c).Allocate(); err == nil {
				t.Fatalf("Allocate with %s credentials succeeded", tc.name)
			}
			if srv.Stats().AuthRefused == before {
				t.Errorf("Stats().AuthRefused did not count the refusal")
			}
		})
	}

	t.Run("valid, then expired", func(t *testing.T) {
		relay, err := dialUDP(t, srv, good).Allocate()
		if err != nil {
			t.Fatalf("Allocate with valid credentials: %v", err)
		}
		relay.Close()
		later := start.Add(time.Hour + time.Second)
		now.Store(&later)
		defer now.Store(&start)
		if _, err := dialUDP(t, srv, good).Allocate(); err == nil {
			t.Fatal("Allocate with expired credentials succeeded")
		}
	})
}

func TestQuota(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.MaxAllocationsPerUser = 2 })

	var relays []net.PacketConn
	for i := range 2 {
		// Different expiries: the quota is per user, not per username.
		c := NewCredentials(testSecret, "carol", time.Hour+time.Duration(i)*time.Minute, time.Now())
		relay, err := dialUDP(t, srv, c).Allocate()
		if err != nil {
			t.Fatalf("Allocate %d: %v", i+1, err)
		}
		defer relay.Close()
		relays = append(relays, relay)
	}
	_, err := dialUDP(t, srv, creds("carol")).Allocate()
	if err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("third Allocate: err = %v, want 486 allocation quota reached", err)
	}
	// Over TCP too: the quota spans listeners.
	nc, err := net.Dial("tcp", srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialStream(t, srv.TCPAddr().String(), nc, creds("carol")).Allocate(); err == nil {
		t.Fatal("Allocate over TCP beyond the quota succeeded")
	}
	// Another user is unaffected.
	other, err := dialUDP(t, srv, creds("dave")).Allocate()
	if err != nil {
		t.Fatalf("Allocate for another user: %v", err)
	}
	defer other.Close()

	// Ending an allocation frees its slot.
	relays[0].Close()
	waitFor(t, 5*time.Second, func() bool { return srv.quota.count("carol") == 1 })
	relay, err := dialUDP(t, srv, creds("carol")).Allocate()
	if err != nil {
		t.Fatalf("Allocate after one ended: %v", err)
	}
	relay.Close()
}

func TestCloseEndsClientsAndAllocations(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.AllowPeers = allowLoopV4 })
	nc, err := net.Dial("tcp", srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	relay, err := dialStream(t, srv.TCPAddr().String(), nc, creds("alice")).Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	udpRelay, err := dialUDP(t, srv, creds("bob")).Allocate()
	if err != nil {
		t.Fatalf("Allocate over UDP: %v", err)
	}
	defer udpRelay.Close()
	if n := srv.AllocationCount(); n != 2 {
		t.Fatalf("AllocationCount = %d, want 2", n)
	}
	if err := srv.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := srv.AllocationCount(); n != 0 {
		t.Errorf("AllocationCount after Close = %d, want 0", n)
	}
	if err := srv.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(nc); err != nil {
		t.Errorf("client connection not closed by server Close: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	ok := Config{Realm: testRealm, UDPAddr: ":0", Secret: testSecret}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no realm", func(c *Config) { c.Realm = "" }},
		{"no listener", func(c *Config) { c.UDPAddr = "" }},
		{"no secret", func(c *Config) { c.Secret = nil }},
		{"tls without cert", func(c *Config) { c.TLSAddr = ":0" }},
		{"ipv6 relay ip", func(c *Config) { c.RelayIP = net.ParseIP("2001:db8::1") }},
		{"negative ttl", func(c *Config) { c.CredentialTTL = -time.Second }},
		{"negative quota", func(c *Config) { c.MaxAllocationsPerUser = -1 }},
		{"half a port range", func(c *Config) { c.RelayPortMin = 50000 }},
		{"reversed port range", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 50010, 50000 }},
	} {
		c := ok
		tc.edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New succeeded, want an error", tc.name)
		}
	}
	srv, err := New(ok)
	if err != nil {
		t.Fatalf("New(minimal): %v", err)
	}
	if srv.cfg.CredentialTTL != DefaultCredentialTTL || srv.cfg.MaxAllocationsPerUser != DefaultMaxAllocationsPerUser ||
		srv.cfg.UDPListeners < 1 || srv.cfg.Now == nil || srv.cfg.Logger == nil {
		t.Errorf("defaults not filled: %+v", srv.cfg)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
}

func TestUDPListenersShareAPort(t *testing.T) {
	if !reusePortSupported {
		t.Skip("SO_REUSEPORT not available on this platform")
	}
	srv := startServer(t, func(c *Config) { c.UDPListeners = 4; relayToLoopback(c) })
	if len(srv.udp) != 4 {
		t.Fatalf("%d UDP sockets bound, want 4", len(srv.udp))
	}
	for _, c := range srv.udp[1:] {
		if c.LocalAddr().String() != srv.UDPAddr().String() {
			t.Errorf("socket bound to %s, want %s", c.LocalAddr(), srv.UDPAddr())
		}
	}
	// Many clients each get a working relay, whichever socket the kernel
	// hands their flow to.
	for i := range 8 {
		relayRoundTrip(t, srv, dialUDP(t, srv, creds("user"+string(rune('a'+i)))))
	}
}

func TestURLs(t *testing.T) {
	cert, _ := selfSigned(t)
	srv := startServer(t, func(c *Config) {
		c.TLSAddr = "127.0.0.1:0"
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	_, up, _ := net.SplitHostPort(srv.UDPAddr().String())
	_, tp, _ := net.SplitHostPort(srv.TCPAddr().String())
	_, sp, _ := net.SplitHostPort(srv.TLSAddr().String())
	want := []string{
		"stun:turn.example.test:" + up,
		"turn:turn.example.test:" + up + "?transport=udp",
		"turn:turn.example.test:" + tp + "?transport=tcp",
		"turns:turn.example.test:" + sp + "?transport=tcp",
	}
	got := srv.URLs("turn.example.test")
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("URLs = %q, want %q", got, want)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		<-tick.C
	}
}

// selfSigned returns a certificate for turn.example.test and 127.0.0.1
// and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "turn.example.test"},
		DNSNames:     []string{"turn.example.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestSilentStreamClosed(t *testing.T) {
	cert, pool := selfSigned(t)
	srv, err := New(Config{
		Realm:       testRealm,
		TCPAddr:     "127.0.0.1:0",
		TLSAddr:     "127.0.0.1:0",
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}},
		Secret:      testSecret,
		AuthTimeout: 200 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	for _, addr := range []net.Addr{srv.TCPAddr(), srv.TLSAddr()} {
		nc, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(nc); err != nil {
			t.Errorf("%s: silent connection not closed by the server: %v", addr, err)
		}
	}

	// A client that speaks in time keeps its connection past that limit.
	nc, err := tls.Dial("tcp", srv.TLSAddr().String(), &tls.Config{RootCAs: pool, ServerName: "turn.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	client := dialStream(t, srv.TLSAddr().String(), nc, creds("alice"))
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	tick := time.NewTicker(srv.cfg.AuthTimeout / 4)
	defer tick.Stop()
	for range 12 { // three times the first-read limit
		<-tick.C
		if _, err := client.SendBindingRequest(); err != nil {
			t.Fatalf("binding request: %v", err)
		}
	}
	if n := srv.AllocationCount(); n != 1 {
		t.Errorf("AllocationCount = %d, want the allocation to live on", n)
	}
}

func TestRelayAddresses(t *testing.T) {
	for _, tc := range []struct {
		host, relayIP     string
		advertise, bind   string
		advertiseNotEmpty bool
	}{
		{host: "127.0.0.1", advertise: "127.0.0.1", bind: "127.0.0.1"},
		{host: "127.0.0.1", relayIP: "203.0.113.5", advertise: "203.0.113.5", bind: "127.0.0.1"},
		{host: "", relayIP: "203.0.113.5", advertise: "203.0.113.5", bind: "0.0.0.0"},
		{host: "0.0.0.0", relayIP: "203.0.113.5", advertise: "203.0.113.5", bind: "0.0.0.0"},
		{host: "::", advertiseNotEmpty: true, bind: "0.0.0.0"},
		{host: "::1", advertiseNotEmpty: true, bind: "0.0.0.0"},
		{host: "::ffff:127.0.0.1", advertise: "127.0.0.1", bind: "127.0.0.1"},
	} {
		cfg := Config{Realm: testRealm, UDPAddr: ":0", Secret: testSecret,
			Logger: slog.New(slog.DiscardHandler)}
		if tc.relayIP != "" {
			cfg.RelayIP = net.ParseIP(tc.relayIP)
		}
		srv, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		adv, bind := srv.relayAddresses(tc.host)
		if bind != tc.bind {
			t.Errorf("host %q relay IP %q: bind %s, want %s", tc.host, tc.relayIP, bind, tc.bind)
		}
		switch {
		case tc.advertiseNotEmpty:
			if adv.To4() == nil {
				t.Errorf("host %q: advertised %v, want some IPv4 address", tc.host, adv)
			}
		case !adv.Equal(net.ParseIP(tc.advertise)):
			t.Errorf("host %q relay IP %q: advertised %s, want %s", tc.host, tc.relayIP, adv, tc.advertise)
		}
	}

	// The configured address is what clients are told.
	srv := startServer(t, func(c *Config) { c.RelayIP = net.ParseIP("203.0.113.5") })
	relay, err := dialUDP(t, srv, creds("alice")).Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	if got := relay.LocalAddr().(*net.UDPAddr).IP; !got.Equal(net.ParseIP("203.0.113.5")) {
		t.Errorf("relayed address %s, want 203.0.113.5", relay.LocalAddr())
	}
}

func TestRelayPortRange(t *testing.T) {
	// Find a few free ports to form the range; another process may take
	// one meanwhile, which the range search tolerates.
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	base := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	lo, hi := uint16(base), uint16(min(base+3, 65535))
	srv := startServer(t, func(c *Config) {
		c.AllowPeers = allowLoopV4
		c.RelayPortMin, c.RelayPortMax = lo, hi
	})
	var relays []net.PacketConn
	for i := range int(hi-lo) + 1 {
		relay, err := dialUDP(t, srv, creds(fmt.Sprint("range", i))).Allocate()
		if err != nil {
			break // the range is exhausted (or a port was taken by someone else)
		}
		defer relay.Close()
		relays = append(relays, relay)
		if p := relay.LocalAddr().(*net.UDPAddr).Port; p < int(lo) || p > int(hi) {
			t.Errorf("relay port %d outside %d-%d", p, lo, hi)
		}
	}
	if len(relays) == 0 {
		t.Fatal("no allocation got a port from the range")
	}
	if _, err := dialUDP(t, srv, creds("one-too-many")).Allocate(); err == nil {
		t.Errorf("Allocate succeeded with every port of %d-%d in use", lo, hi)
	}
}
