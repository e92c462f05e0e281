// Package turn is poosms's embedded TURN/STUN relay: it lets clients
// behind NAT reach the SFU and each other. It hands out time-limited
// credentials in the TURN REST form, refuses to relay into the server's
// own host and networks, and caps allocations per user.
package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"

	pion "github.com/pion/turn/v4"

	"poosms.org/poosms/internal/connlimit"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultCredentialTTL         = 24 * time.Hour
	DefaultMaxAllocationsPerUser = 10
)

// A stream (TCP and TLS) connection must hold an allocation within
// Config.AuthTimeout (default DefaultAuthTimeout) of being accepted,
// whatever it sends meanwhile; one that holds an allocation is closed
// when it stays silent for streamIdleTimeout, which exceeds the longest
// allocation lifetime (one hour) so that a client refreshing its
// allocation is never cut off.
const (
	DefaultAuthTimeout = 10 * time.Second
	streamIdleTimeout  = time.Hour + 5*time.Minute
)

// udpListenerBuffer is the receive and send buffer size asked for on
// each UDP listener (the kernel doubles it for its bookkeeping and caps
// the request at net.core.rmem_max and wmem_max), so that a burst from
// many clients, or a moment without CPU, does not overflow the default
// buffer of about 200 KiB and lose packets.
const udpListenerBuffer = 2 << 20

// closeDrainTimeout bounds how long Close waits for live allocations to
// be torn down after their sockets are closed.
const closeDrainTimeout = 5 * time.Second

// Config configures the relay. The zero value of every optional field
// means its documented default.
type Config struct {
	// Realm is the TURN realm, the server's domain. Required.
	Realm string `yaml:"realm"`

	// UDPAddr is where STUN and TURN over UDP listen, e.g. ":3478".
	// Empty disables UDP.
	UDPAddr string `yaml:"udp_addr"`
	// TCPAddr is where STUN and TURN over TCP listen, e.g. ":3478".
	// Empty disables TCP.
	TCPAddr string `yaml:"tcp_addr"`
	// TLSAddr is where TURN over TLS listens, e.g. ":5349". Empty (the
	// default) disables it; when set, TLSConfig must carry a certificate.
	TLSAddr   string      `yaml:"tls_addr"`
	TLSConfig *tls.Config `yaml:"-"`

	// RelayIP is the IPv4 address advertised to clients as their relayed
	// address. Default: the IPv4 address the first listener is bound to;
	// when the listeners are on a wildcard or IPv6 address, the first
	// non-loopback IPv4 address of this host's interfaces, or 127.0.0.1
	// when there is none. Set it to the public address behind NAT.
	// Relay sockets bind to the listener's IPv4 address when it is a
	// specific one, otherwise to 0.0.0.0.
	RelayIP net.IP `yaml:"relay_ip"`

	// RelayPortMin and RelayPortMax, when both set, confine relay
	// sockets to that inclusive port range (for firewalls and port
	// forwarding). Default: ephemeral ports chosen by the system.
	RelayPortMin uint16 `yaml:"relay_port_min"`
	RelayPortMax uint16 `yaml:"relay_port_max"`

	// Secret is the key credentials are signed with. Required; see
	// LoadOrCreateSecret.
	Secret []byte `yaml:"-"`
	// CredentialTTL is the lifetime of credentials made by
	// Server.Credentials. Default 24h.
	CredentialTTL time.Duration `yaml:"credential_ttl"`

	// AllowPeers lists prefixes the relay may reach although PeerAllowed
	// refuses them by default (loopback for tests, a LAN). Default: none.
	// It does not open this host's own addresses: see AllowSelf.
	AllowPeers []netip.Prefix `yaml:"allow_peers"`

	// AllowSelf lets relays reach this host's own addresses: loopback,
	// its interfaces' addresses, the listen addresses and SelfAddrs (see
	// self.go). Default false: they are refused even inside AllowPeers,
	// except for datagrams between two allocations of this relay.
	AllowSelf bool `yaml:"allow_self"`
	// SelfAddrs are further addresses of this host for the relay to
	// refuse: where the other services listen and the public address
	// behind NAT (see ListenAddrs). The relay's own listen addresses and
	// relayed address are always refused. Default: none.
	SelfAddrs []netip.Addr `yaml:"-"`

	// UDPListeners is the number of UDP sockets bound to UDPAddr with
	// SO_REUSEPORT, each with its own read loop. Default runtime.NumCPU();
	// always 1 where SO_REUSEPORT is unavailable.
	UDPListeners int `yaml:"udp_listeners"`

	// MaxAllocationsPerUser caps live allocations per credential user
	// (the USER part of "EXPIRY:USER"), across all listeners. Default 10.
	MaxAllocationsPerUser int `yaml:"max_allocations_per_user"`

	// AuthTimeout is how long a TCP or TLS connection may stay open
	// without an allocation (which needs valid credentials), counted
	// from its accept: requests without one do not extend it. Default
	// DefaultAuthTimeout.
	AuthTimeout time.Duration `yaml:"auth_timeout"`
	// MaxConnsPerAddress is how many TCP and TLS connections one client
	// address (IPv6: its /64) may have open at once, both listeners
	// together; one more is closed at once. 0: no limit.
	MaxConnsPerAddress int `yaml:"max_conns_per_address"`
	// LimitExempt are addresses MaxConnsPerAddress does not count.
	LimitExempt []netip.Prefix `yaml:"-"`

	// Logger receives the relay's logs. Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Now is the clock credentials are checked against. Default time.Now.
	Now func() time.Time `yaml:"-"`
}

// Server is a running TURN/STUN relay. Create it with New, then Start it.
type Server struct {
	cfg      Config
	log      *slog.Logger
	quota    *quota
	counters counters

	mu      sync.Mutex
	started bool
	closed  bool
	engine  *pion.Server
	udp     []*net.UDPConn
	tcp     *trackingListener
	tls     *trackingListener
	tlsLn   net.Listener
	relayIP net.IP
	self    *selfGuard
	perAddr *connlimit.Limiter // stream connections per client address
	fast    *fastPath
	pollers []*relayPoller // one per UDP listener: read its clients' relay sockets

	channelBind time.Duration // channel binding lifetime; zero is the engine's 10 minutes; tests shorten it
}

// New validates cfg, fills in defaults and returns a server that is not
// yet listening.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Realm == "":
		return nil, errors.New("turn: config: realm is required")
	case cfg.UDPAddr == "" && cfg.TCPAddr == "" && cfg.TLSAddr == "":
		return nil, errors.New("turn: config: no listen address (udp, tcp or tls) is set")
	case cfg.TLSAddr != "" && (cfg.TLSConfig == nil ||
		(len(cfg.TLSConfig.Certificates) == 0 && cfg.TLSConfig.GetCertificate == nil && cfg.TLSConfig.GetConfigForClient == nil)):
		return nil, errors.New("turn: config: tls address set but no TLS certificate configured")
	case len(cfg.Secret) == 0:
		return nil, errors.New("turn: config: secret is required")
	case cfg.CredentialTTL < 0:
		return nil, fmt.Errorf("turn: config: negative credential TTL %s", cfg.CredentialTTL)
	case cfg.UDPListeners < 0:
		return nil, fmt.Errorf("turn: config: negative UDP listener count %d", cfg.UDPListeners)
	case cfg.AuthTimeout < 0:
		return nil, fmt.Errorf("turn: config: negative auth timeout %s", cfg.AuthTimeout)
	case cfg.MaxConnsPerAddress < 0:
		return nil, fmt.Errorf("turn: config: negative connection cap %d", cfg.MaxConnsPerAddress)
	case cfg.MaxAllocationsPerUser < 0:
		return nil, fmt.Errorf("turn: config: negative allocation quota %d", cfg.MaxAllocationsPerUser)
	case (cfg.RelayPortMin == 0) != (cfg.RelayPortMax == 0) || cfg.RelayPortMin > cfg.RelayPortMax:
		return nil, fmt.Errorf("turn: config: relay port range %d-%d: set both ends, lowest first", cfg.RelayPortMin, cfg.RelayPortMax)
	case cfg.RelayIP != nil && cfg.RelayIP.To4() == nil:
		return nil, fmt.Errorf("turn: config: relay IP %s is not an IPv4 address (relayed addresses are IPv4)", cfg.RelayIP)
	}
	for _, p := range cfg.AllowPeers {
		if !p.IsValid() {
			return nil, fmt.Errorf("turn: config: invalid allowed peer prefix %q", p)
		}
	}

	if cfg.CredentialTTL == 0 {
		cfg.CredentialTTL = DefaultCredentialTTL
	}
	if cfg.UDPListeners == 0 {
		cfg.UDPListeners = runtime.NumCPU()
	}
	if !reusePortSupported {
		cfg.UDPListeners = 1
	}
	if cfg.MaxAllocationsPerUser == 0 {
		cfg.MaxAllocationsPerUser = DefaultMaxAllocationsPerUser
	}
	if cfg.AuthTimeout == 0 {
		cfg.AuthTimeout = DefaultAuthTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	cfg.AllowPeers = append([]netip.Prefix(nil), cfg.AllowPeers...)
	cfg.SelfAddrs = append([]netip.Addr(nil), cfg.SelfAddrs...)
	if cfg.RelayIP != nil {
		cfg.RelayIP = cfg.RelayIP.To4()
	}

	return &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "turn"),
		quota:   newQuota(cfg.MaxAllocationsPerUser, cfg.Now),
		perAddr: connlimit.New(cfg.MaxConnsPerAddress, cfg.LimitExempt),
		fast:    newFastPath(),
	}, nil
}

// Start binds the listeners and starts relaying. ctx bounds only the
// binding; the server runs until Close. Start may be called once.
func (s *Server) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("turn: start: server closed")
	}
	if s.started {
		return errors.New("turn: start: already started")
	}
	s.started = true
	defer func() {
		if err != nil {
			s.closeSocketsLocked()
		}
	}()

	var firstHost string
	if s.cfg.UDPAddr != "" {
		if err := s.listenUDP(ctx); err != nil {
			return err
		}
		firstHost = hostOf(s.cfg.UDPAddr)
	}
	var lc net.ListenConfig
	if s.cfg.TCPAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.TCPAddr)
		if err != nil {
			return fmt.Errorf("turn: listen tcp %s: %w", s.cfg.TCPAddr, err)
		}
		s.tcp = newTrackingListener(ln, s.cfg.AuthTimeout, streamIdleTimeout, s.perAddr, s.log)
		if firstHost == "" {
			firstHost = hostOf(s.cfg.TCPAddr)
		}
	}
	if s.cfg.TLSAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.TLSAddr)
		if err != nil {
			return fmt.Errorf("turn: listen tls %s: %w", s.cfg.TLSAddr, err)
		}
		s.tls = newTrackingListener(ln, s.cfg.AuthTimeout, streamIdleTimeout, s.perAddr, s.log)
		s.tlsLn = tls.NewListener(s.tls, s.cfg.TLSConfig)
		if firstHost == "" {
			firstHost = hostOf(s.cfg.TLSAddr)
		}
	}

	relayIP, relayBind := s.relayAddresses(firstHost)
	s.relayIP = relayIP
	s.self = newSelfGuard(s.cfg.AllowSelf, netip.AddrFrom4([4]byte(relayIP.To4())), s.ownAddrsLocked(relayBind), s.cfg.Now, s.log)
	newGen := func(listener *udpConn, poller *relayPoller) pion.RelayAddressGenerator {
		return &relayGenerator{advertise: relayIP, bind: net.ParseIP(relayBind),
			minPort: s.cfg.RelayPortMin, maxPort: s.cfg.RelayPortMax,
			self: s.self, dropped: &s.counters.self, fast: s.fast, listener: listener, poller: poller}
	}

	pcfg := pion.ServerConfig{
		Realm:              s.cfg.Realm,
		LoggerFactory:      slogFactory{log: s.log},
		AuthHandler:        s.authenticate,
		QuotaHandler:       s.allowAllocation,
		ChannelBindTimeout: s.channelBind,
		InboundMTU:         relayMTU,
		EventHandler: pion.EventHandler{
			OnAllocationCreated: s.allocationCreated,
			OnAllocationDeleted: s.allocationDeleted,
			OnAuth:              s.authChecked,
			OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
				s.fast.permissionCreated(relay, peer)
			},
			OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
				s.fast.permissionDeleted(relay, peer)
			},
			OnChannelCreated: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, number uint16) {
				s.fast.channelCreated(relay, peer, number)
			},
			OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, number uint16) {
				s.fast.channelDeleted(relay, peer, number)
			},
		},
	}
	for _, c := range s.udp {
		lc := newUDPConn(c)
		pc, err := newListenConn(lc, s.fast)
		if err != nil {
			return err
		}
		poller, err := newRelayPoller(lc)
		if err != nil {
			return err
		}
		if poller != nil {
			s.pollers = append(s.pollers, poller)
		}
		pcfg.PacketConnConfigs = append(pcfg.PacketConnConfigs, pion.PacketConnConfig{
			PacketConn:            pc,
			RelayAddressGenerator: newGen(lc, poller),
			PermissionHandler:     s.allowPeer,
		})
	}
	for _, ln := range []net.Listener{s.tcpListener(), s.tlsLn} {
		if ln == nil {
			continue
		}
		pcfg.ListenerConfigs = append(pcfg.ListenerConfigs, pion.ListenerConfig{
			Listener:              ln,
			RelayAddressGenerator: newGen(nil, nil),
			PermissionHandler:     s.allowPeer,
		})
	}
	engine, err := pion.NewServer(pcfg)
	if err != nil {
		return fmt.Errorf("turn: start: %w", err)
	}
	s.engine = engine
	s.log.Info("turn relay listening",
		"udp", addrString(s.udpAddrLocked()), "udp_listeners", len(s.udp),
		"tcp", addrString(s.tcpAddrLocked()), "tls", addrString(s.tlsAddrLocked()),
		"relay_ip", relayIP.String(), "relay_bind", relayBind, "realm", s.cfg.Realm)
	return nil
}

// listenUDP binds cfg.UDPListeners sockets to one port. The first socket
// picks the port (which may be 0 in tests); the others join it.
func (s *Server) listenUDP(ctx context.Context) error {
	lc := net.ListenConfig{}
	if s.cfg.UDPListeners > 1 {
		lc.Control = reusePort
	}
	first, err := lc.ListenPacket(ctx, "udp", s.cfg.UDPAddr)
	if err != nil {
		return fmt.Errorf("turn: listen udp %s: %w", s.cfg.UDPAddr, err)
	}
	s.udp = append(s.udp, first.(*net.UDPConn))
	port := first.LocalAddr().(*net.UDPAddr).Port
	addr := net.JoinHostPort(hostOf(s.cfg.UDPAddr), strconv.Itoa(port))
	for i := 1; i < s.cfg.UDPListeners; i++ {
		c, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return fmt.Errorf("turn: listen udp %s (socket %d): %w", addr, i+1, err)
		}
		s.udp = append(s.udp, c.(*net.UDPConn))
	}
	for _, c := range s.udp {
		// A smaller buffer than asked for is no reason to fail.
		_ = c.SetReadBuffer(udpListenerBuffer)
		_ = c.SetWriteBuffer(udpListenerBuffer)
	}
	return nil
}

// relayAddresses returns the address advertised for relays and the
// address relay sockets bind to, given the host part of the first
// listen address.
func (s *Server) relayAddresses(host string) (advertise net.IP, bind string) {
	bind = "0.0.0.0"
	var listenIP net.IP
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().Is4() && !ip.Unmap().IsUnspecified() {
		listenIP = net.IP(ip.Unmap().AsSlice())
		bind = listenIP.String()
	}
	switch {
	case s.cfg.RelayIP != nil:
		return s.cfg.RelayIP, bind
	case listenIP != nil:
		return listenIP, bind
	}
	if ip := firstInterfaceIPv4(); ip != nil {
		s.log.Warn("turn relay IP guessed from the host's interfaces; set it explicitly if clients reach this host through NAT", "relay_ip", ip.String())
		return ip, bind
	}
	return net.IPv4(127, 0, 0, 1).To4(), bind
}

// ownAddrsLocked lists the addresses this relay itself is bound to, with
// SelfAddrs. s.mu must be held.
func (s *Server) ownAddrsLocked(relayBind string) []netip.Addr {
	own := append([]netip.Addr(nil), s.cfg.SelfAddrs...)
	for _, a := range []net.Addr{s.udpAddrLocked(), s.tcpAddrLocked(), s.tlsAddrLocked()} {
		if a != nil {
			own = append(own, ListenAddrs(a.String())...)
		}
	}
	return append(own, ListenAddrs(net.JoinHostPort(relayBind, "0"))...)
}

func firstInterfaceIPv4() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip4 := ipn.IP.To4(); ip4 != nil && !ip4.IsLoopback() && !ip4.IsLinkLocalUnicast() {
			return ip4
		}
	}
	return nil
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Close stops the relay, closes every client connection and allocation,
// and waits (bounded) for allocations to be torn down. It is safe to call
// more than once and before Start.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	engine := s.engine
	var err error
	if engine != nil {
		// The engine closes the UDP sockets and the listeners.
		err = engine.Close()
		if s.tcp != nil {
			s.tcp.closeConns()
		}
		if s.tls != nil {
			s.tls.closeConns()
		}
	} else {
		s.closeSocketsLocked()
	}
	s.mu.Unlock()

	if engine != nil {
		t := time.NewTimer(closeDrainTimeout)
		defer t.Stop()
		select {
		case <-s.quota.idleCh():
		case <-t.C:
			s.log.Warn("turn relay closed with allocations still being torn down")
		}
	}
	s.mu.Lock()
	pollers := s.pollers
	s.pollers = nil
	s.mu.Unlock()
	for _, p := range pollers {
		p.close()
	}
	if err != nil {
		return fmt.Errorf("turn: close: %w", err)
	}
	return nil
}

// closeSocketsLocked closes whatever Start bound before it failed.
// s.mu must be held.
func (s *Server) closeSocketsLocked() {
	for _, p := range s.pollers {
		p.close()
	}
	s.pollers = nil
	for _, c := range s.udp {
		c.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
		s.tcp.closeConns()
	}
	if s.tls != nil {
		s.tls.Close()
		s.tls.closeConns()
	}
}

// UDPAddr returns the address the UDP listeners are bound to, or nil.
func (s *Server) UDPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddrLocked()
}

// TCPAddr returns the address the TCP listener is bound to, or nil.
func (s *Server) TCPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpAddrLocked()
}

// TLSAddr returns the address the TLS listener is bound to, or nil.
func (s *Server) TLSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tlsAddrLocked()
}

// RelayIP returns the address advertised for relays, nil before Start.
func (s *Server) RelayIP() net.IP {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relayIP
}

func (s *Server) udpAddrLocked() net.Addr {
	if len(s.udp) == 0 {
		return nil
	}
	return s.udp[0].LocalAddr()
}

func (s *Server) tcpAddrLocked() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

func (s *Server) tlsAddrLocked() net.Addr {
	if s.tls == nil {
		return nil
	}
	return s.tls.Addr()
}

func (s *Server) tcpListener() net.Listener {
	if s.tcp == nil {
		return nil
	}
	return s.tcp
}

// Credentials returns fresh credentials for user, valid for the
// configured CredentialTTL from now.
func (s *Server) Credentials(user string) Credentials {
	return NewCredentials(s.cfg.Secret, user, s.cfg.CredentialTTL, s.cfg.Now())
}

// URLs returns the ICE server URLs under which clients reach this relay
// at host (a public name or address): stun: and turn: for UDP and TCP,
// and turns: when TLS is on. Call it after Start.
func (s *Server) URLs(host string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	port := func(a net.Addr) string {
		switch a := a.(type) {
		case *net.UDPAddr:
			return strconv.Itoa(a.Port)
		case *net.TCPAddr:
			return strconv.Itoa(a.Port)
		}
		return ""
	}
	var urls []string
	if a := s.udpAddrLocked(); a != nil {
		hp := net.JoinHostPort(host, port(a))
		urls = append(urls, "stun:"+hp, "turn:"+hp+"?transport=udp")
	}
	if a := s.tcpAddrLocked(); a != nil {
		urls = append(urls, "turn:"+net.JoinHostPort(host, port(a))+"?transport=tcp")
	}
	if a := s.tlsAddrLocked(); a != nil {
		urls = append(urls, "turns:"+net.JoinHostPort(host, port(a))+"?transport=tcp")
	}
	return urls
}

// authenticate is the engine's auth hook: it recomputes the REST
// password from the username and refuses malformed, expired and
// foreign-realm usernames. A forged password fails the engine's
// message-integrity check against the key returned here.
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	expires, _, ok := splitUsername(username)
	switch {
	case !ok:
		s.log.Debug("turn auth refused: malformed username", "username", username, "client", addrString(src))
	case realm != s.cfg.Realm:
		s.log.Debug("turn auth refused: wrong realm", "username", username, "realm", realm, "client", addrString(src))
		ok = false
	case !s.cfg.Now().Before(expires):
		s.log.Debug("turn auth refused: credentials expired", "username", username, "client", addrString(src))
		ok = false
	}
	if !ok {
		s.counters.auth.Add(1)
		return nil, false
	}
	return pion.GenerateAuthKey(username, realm, password(s.cfg.Secret, username)), true
}

// authChecked is told the outcome of each message-integrity check: a
// failure means a forged or mistyped password.
func (s *Server) authChecked(src, _ net.Addr, _, username, _, method string, verdict bool) {
	if verdict {
		return
	}
	s.counters.auth.Add(1)
	s.log.Debug("turn auth refused: bad message integrity", "username", username, "method", method,
		"client", addrString(src))
}

// allowPeer is the engine's permission hook for CreatePermission and
// ChannelBind.
func (s *Server) allowPeer(client net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if ok && PeerAllowed(ip, s.cfg.AllowPeers) && !s.self.refusesPeer(ip) {
		return true
	}
	s.log.Debug("turn peer refused", "peer", peer.String(), "client", addrString(client))
	s.counters.peer.Add(1)
	return false
}

// allowAllocation is the engine's quota hook.
func (s *Server) allowAllocation(username, _ string, src net.Addr) bool {
	_, user, _ := splitUsername(username)
	if s.quota.allow(user, src) {
		return true
	}
	s.log.Info("turn allocation refused: quota reached", "user", user, "client", addrString(src),
		"max", s.cfg.MaxAllocationsPerUser)
	s.counters.quota.Add(1)
	return false
}

func (s *Server) allocationCreated(src, dst net.Addr, proto, username, _ string, relay net.Addr, _ int) {
	_, user, _ := splitUsername(username)
	s.quota.created(user, src)
	s.fast.allocationCreated(src, relay)
	s.log.Debug("turn allocation created", "user", user, "client", addrString(src), "transport", proto,
		"relay", addrString(relay))
	s.streamAllocated(src, dst, true)
}

func (s *Server) allocationDeleted(src, dst net.Addr, _, username, _ string) {
	_, user, _ := splitUsername(username)
	s.quota.deleted(user)
	s.log.Debug("turn allocation deleted", "user", user, "client", addrString(src))
	s.streamAllocated(src, dst, false)
}

// streamAllocated tells the stream listener whose connection runs between
// src and dst that it carries an allocation (on) or no longer does, which
// sets its deadline. UDP allocations have no connection.
func (s *Server) streamAllocated(src, dst net.Addr, on bool) {
	if _, ok := src.(*net.TCPAddr); !ok {
		return
	}
	// Not under s.mu, which Close holds while the engine stops: the
	// listeners are set before the engine that calls here starts, and
	// never change.
	for _, l := range []*trackingListener{s.tcp, s.tls} {
		if l != nil && l.allocated(src, dst, on) {
			return
		}
	}
}

// AllocationCount returns the number of live allocations.
func (s *Server) AllocationCount() int {
	s.quota.mu.Lock()
	defer s.quota.mu.Unlock()
	return s.quota.total
}
