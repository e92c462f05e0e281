package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Config is the federation service's share of the server settings.
type Config struct {
	// Domain is the server's XMPP domain. Required.
	Domain string
	// Hosted reports whether this server serves a domain: Domain and its
	// service subdomains (conference., upload., …). Default: Domain only.
	Hosted func(domain string) bool
	// TLS holds the certificate for the hosted domains. Required: every
	// server stream is encrypted.
	TLS *tls.Config
	// Addr is the STARTTLS listener (":5269"); TLSAddr the direct TLS one
	// (XEP-0368, ":5270"). Empty: not listening there. Outgoing streams
	// work without either.
	Addr, TLSAddr string
	// Allow, when not empty, lists the only domains federated with; Deny
	// lists domains never federated with. An entry covers the domain and
	// its subdomains.
	Allow, Deny []string
	// Routes maps a domain to the host:port its streams go to, instead of
	// what DNS says (STARTTLS); a route covers the domain's subdomains
	// that have none of their own.
	Routes map[string]string
	// SecureAuth makes a certificate valid for the peer's domain mandatory
	// in both directions: no Server Dialback on DNS alone.
	SecureAuth bool
	// Roots are the certificate authorities trusted for peers'
	// certificates. Default: the system's.
	Roots *x509.CertPool
	// DialbackSecret is the key from which dialback keys are derived
	// (XEP-0185); every node of a cluster needs the same. Required, at
	// least 16 bytes.
	DialbackSecret []byte
	// Deliver receives the stanzas other servers send (from and to
	// checked), and the errors for stanzas that could not reach their
	// server. Required. It runs on the stream's reader goroutine.
	Deliver func(ctx context.Context, el *stanza.Element)
	// Availability, when set, is told when this server gains its first
	// authenticated stream with a domain (up) and loses its last one; it
	// runs on a goroutine of its own, in the order of the changes.
	Availability func(domain string, up bool)

	// StanzaLimits bounds the elements, nesting and attributes of a stanza
	// read from a peer server (zero fields: the stanza package's defaults).
	StanzaLimits stanza.Limits

	MaxStanzaBytes int64         // largest stanza accepted; default 262144
	Timeout        time.Duration // time to reach a domain before its stanzas bounce; default 30s
	AuthTimeout    time.Duration // time an incoming stream has to authenticate; default 30s
	IdleTimeout    time.Duration // an outgoing stream with nothing to send closes, an incoming one that sends nothing too; default 10m
	WriteTimeout   time.Duration // one write's deadline; default 10s
	QueueStanzas   int           // stanzas waiting per pair of domains; default 1000
	QueueBytes     int           // bytes waiting per pair of domains; default 4 MiB
	StanzaRate     float64       // stanzas per second one incoming stream may deliver; default 500
	StanzaBurst    int           // stanzas beyond the rate accepted at once; default 1000
	RetryMin       time.Duration // wait after a domain could not be reached; default 2s
	RetryMax       time.Duration // longest such wait, doubling from RetryMin; default 2m
	MaxIncoming    int           // incoming streams at once, authenticated or not; default 1000

	Resolver Resolver                                                          // default net.DefaultResolver
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error) // default a net.Dialer's
	Logger   *slog.Logger
}

// Server runs federation: listeners for incoming streams, and one link per
// pair of domains for outgoing ones.
type Server struct {
	cfg      Config
	log      *slog.Logger
	tlsIn    *tls.Config // for incoming streams: asks for the peer's certificate
	tlsInDir *tls.Config // the same with the xmpp-server ALPN protocol

	// dialing holds a token per connection being set up: a flood of
	// stanzas for new domains cannot open connections without bound.
	dialing chan struct{}

	mu        sync.Mutex
	links     map[pair]*link
	sweepAt   int // the number of links past which idle ones are forgotten
	ins       map[*inStream]struct{}
	listeners []net.Listener
	up        map[string]int // remote domain → authenticated streams
	verifying int            // dialback verifications in progress
	closing   bool
	events    []availEvent // for Availability, in order
	eventsOn  bool         // a goroutine delivers events

	m *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// pair names the two ends of outgoing streams: a domain of ours and a
// remote one.
type pair struct{ local, remote string }

type availEvent struct {
	domain string
	up     bool
}

// New validates cfg, fills defaults and returns a server that is not yet
// listening.
func New(cfg Config) (*Server, error) {
	d, err := jid.Parse(cfg.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" || cfg.Domain == "" {
		return nil, fmt.Errorf("s2s: invalid domain %q", cfg.Domain)
	}
	cfg.Domain = d.Domainpart()
	if cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
		return nil, errors.New("s2s: a certificate is required")
	}
	if len(cfg.DialbackSecret) < 16 {
		return nil, errors.New("s2s: the dialback secret must be at least 16 bytes")
	}
	if cfg.Deliver == nil {
		return nil, errors.New("s2s: Deliver is required")
	}
	if cfg.Hosted == nil {
		dom := cfg.Domain
		cfg.Hosted = func(d string) bool { return d == dom }
	}
	routes := make(map[string]string, len(cfg.Routes))
	for dom, addr := range cfg.Routes {
		n, ok := normDomain(dom)
		if !ok {
			return nil, fmt.Errorf("s2s: route for invalid domain %q", dom)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("s2s: route for %s: want host:port, not %q", dom, addr)
		}
		routes[n] = addr
	}
	cfg.Routes = routes
	for _, l := range []*[]string{&cfg.Allow, &cfg.Deny} {
		out := make([]string, 0, len(*l))
		for _, dom := range *l {
			n, ok := normDomain(dom)
			if !ok {
				return nil, fmt.Errorf("s2s: invalid domain %q in an allow or deny list", dom)
			}
			out = append(out, n)
		}
		*l = out
	}
	setDefault(&cfg.MaxStanzaBytes, 262144)
	setDefault(&cfg.Timeout, 30*time.Second)
	setDefault(&cfg.AuthTimeout, 30*time.Second)
	setDefault(&cfg.IdleTimeout, 10*time.Minute)
	setDefault(&cfg.WriteTimeout, 10*time.Second)
	setDefault(&cfg.QueueStanzas, 1000)
	setDefault(&cfg.QueueBytes, 4<<20)
	setDefault(&cfg.StanzaRate, 500)
	setDefault(&cfg.StanzaBurst, 1000)
	setDefault(&cfg.RetryMin, 2*time.Second)
	setDefault(&cfg.RetryMax, 2*time.Minute)
	setDefault(&cfg.MaxIncoming, 1000)
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Dial == nil {
		var nd net.Dialer
		cfg.Dial = nd.DialContext
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Roots == nil {
		if cfg.Roots, err = x509.SystemCertPool(); err != nil {
			cfg.Roots = x509.NewCertPool()
		}
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		links:   map[pair]*link{},
		sweepAt: minSweep,
		ins:     map[*inStream]struct{}{},
		up:      map[string]int{},
		dialing: make(chan struct{}, maxDialing),
	}
	pinned := append([]string(nil), cfg.Allow...)
	for d := range cfg.Routes {
		pinned = append(pinned, d)
	}
	s.m = newMetrics(pinned)
	s.tlsIn = cfg.TLS.Clone()
	s.tlsIn.MinVersion = max(s.tlsIn.MinVersion, tls.VersionTLS12)
	s.tlsIn.ClientAuth = tls.RequestClientCert
	s.tlsIn.NextProtos = nil
	s.tlsInDir = s.tlsIn.Clone()
	s.tlsInDir.NextProtos = []string{"xmpp-server"}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func setDefault[T int | int64 | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// normDomain normalises a domain name (PRECIS, lower case).
func normDomain(s string) (string, bool) {
	if s == "" || strings.ContainsAny(s, "@/") {
		return "", false
	}
	j, err := jid.Parse(s)
	if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
		return "", false
	}
	return j.Domainpart(), true
}

// Start opens the listeners. It returns once they are bound.
func (s *Server) Start() error {
	for _, l := range []struct {
		addr   string
		direct bool
	}{{s.cfg.Addr, false}, {s.cfg.TLSAddr, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("s2s: listen %s: %w", l.addr, err)
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, ln)
		s.wg.Add(1)
		s.mu.Unlock()
		go s.accept(ln, l.direct)
	}
	return nil
}

// Addrs returns the bound listener addresses, STARTTLS first.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[i] = ln.Addr()
	}
	return out
}

func (s *Server) accept(ln net.Listener, direct bool) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("s2s accept failed", "addr", ln.Addr().String(), "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		s.serveIn(c, direct)
	}
}

// Close stops accepting, closes every stream (writing what is queued
// first, within ctx) and bounces what could not be sent.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	ins := make([]*inStream, 0, len(s.ins))
	for in := range s.ins {
		ins = append(ins, in)
	}
	s.mu.Unlock()
	// Outgoing links flush and close on the cancelled context; incoming
	// streams are told the server is going away.
	s.cancel()
	for _, in := range ins {
		in.stop(streamErr("system-shutdown", "the server is shutting down"))
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for _, l := range s.links {
			l.closeConn()
		}
		s.mu.Unlock()
		<-done
		return fmt.Errorf("s2s: close: %w", ctx.Err())
	}
}

// allowed reports whether federation with domain is permitted by the
// allow and deny lists.
func (s *Server) allowed(domain string) bool {
	covered := func(list []string) bool {
		for _, d := range list {
			if domain == d || strings.HasSuffix(domain, "."+d) {
				return true
			}
		}
		return false
	}
	if covered(s.cfg.Deny) {
		return false
	}
	return len(s.cfg.Allow) == 0 || covered(s.cfg.Allow)
}

// ErrLocal is returned by Send for a stanza addressed to a domain this
// server hosts: it is not federation's to carry.
var ErrLocal = errors.New("s2s: the destination is hosted here")

// Send queues el for the server of its 'to' domain; el's 'from' must be
// in a hosted domain. It never blocks: a stanza that cannot be queued, or
// later cannot be sent, comes back to Deliver as an error reply (RFC 6120
// §10.4), unless it is one that must not be answered. el must not be
// changed afterwards.
func (s *Server) Send(ctx context.Context, el *stanza.Element) error {
	from, ferr := el.FromJID()
	to, terr := el.ToJID()
	switch {
	case ferr != nil || terr != nil || el.From() == "" || el.To() == "":
		return fmt.Errorf("s2s: send: bad addresses from=%q to=%q", el.From(), el.To())
	case !s.cfg.Hosted(from.Domainpart()):
		return fmt.Errorf("s2s: send: %q is not a domain of this server", from.Domainpart())
	case s.cfg.Hosted(to.Domainpart()):
		return ErrLocal
	}
	remote := to.Domainpart()
	if !s.allowed(remote) {
		s.bounce(ctx, el, stanza.RemoteServerNotFound, "this server does not federate with "+remote)
		return nil
	}
	s.linkFor(pair{local: from.Domainpart(), remote: remote}).send(ctx, el)
	return nil
}

// Bounds on outgoing work.
const (
	maxDialing = 64   // connections being set up at once
	minSweep   = 1024 // links kept before idle ones are looked for
)

// linkFor returns the link of p, creating it. When there are many links,
// the idle ones are forgotten.
func (s *Server) linkFor(p pair) *link {
	s.mu.Lock()
	l := s.links[p]
	if l == nil {
		l = &link{s: s, pair: p, wake: make(chan struct{}, 1)}
		s.links[p] = l
	}
	sweep := len(s.links) > s.sweepAt
	s.mu.Unlock()
	if sweep {
		s.sweepLinks()
	}
	return l
}

// sweepLinks forgets the links with no stream, nothing queued and no
// failure to remember.
func (s *Server) sweepLinks() {
	s.mu.Lock()
	all := make([]*link, 0, len(s.links))
	for _, l := range s.links {
		all = append(all, l)
	}
	s.mu.Unlock()
	now := time.Now()
	var dead []*link
	for _, l := range all {
		l.mu.Lock()
		if !l.running && len(l.queue) == 0 && now.After(l.retryAt) {
			l.dead = true
			dead = append(dead, l)
		}
		l.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range dead {
		if s.links[l.pair] == l {
			delete(s.links, l.pair)
		}
	}
	s.sweepAt = max(minSweep, 2*len(s.links))
}

// bounce sends the error reply for el to its sender through Deliver, when
// el is one that may be answered: never an error, nor an IQ result.
func (s *Server) bounce(ctx context.Context, el *stanza.Element, cond stanza.Condition, text string) {
	s.m.bounces.WithLabelValues(string(cond)).Inc()
	if el.IsError() || el.Local == "iq" && el.IQType() == stanza.ResultIQ {
		return
	}
	s.log.Debug("s2s bounce", "to", el.To(), "from", el.From(), "cond", cond)
	s.cfg.Deliver(ctx, stanza.ErrorReply(el, cond, text))
}

// streamUp and streamDown count the authenticated streams with a domain,
// telling Availability of the first and the last. A domain that has just
// authenticated a stream is reachable: the links to it stop bouncing
// stanzas for an earlier failure, before anyone hears it is up.
func (s *Server) streamUp(domain string) {
	s.mu.Lock()
	var links []*link
	if s.up[domain] == 0 {
		for p, l := range s.links {
			if p.remote == domain {
				links = append(links, l)
			}
		}
	}
	s.mu.Unlock()
	for _, l := range links {
		l.mu.Lock()
		l.retryAt, l.backoff = time.Time{}, 0
		l.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up[domain]++
	if s.up[domain] == 1 {
		s.eventLocked(domain, true)
	}
}

func (s *Server) streamDown(domain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up[domain]--
	if s.up[domain] <= 0 {
		delete(s.up, domain)
		s.eventLocked(domain, false)
	}
}

// eventLocked queues an availability change; one goroutine delivers them
// in order. s.mu must be held.
func (s *Server) eventLocked(domain string, up bool) {
	if s.cfg.Availability == nil || s.closing {
		return
	}
	s.events = append(s.events, availEvent{domain, up})
	if s.eventsOn {
		return
	}
	s.eventsOn = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			s.mu.Lock()
			if len(s.events) == 0 {
				s.eventsOn = false
				s.mu.Unlock()
				return
			}
			ev := s.events[0]
			s.events = s.events[1:]
			s.mu.Unlock()
			s.cfg.Availability(ev.domain, ev.up)
		}
	}()
}

// Connected reports whether an authenticated stream with domain is open,
// in either direction.
func (s *Server) Connected(domain string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up[domain] > 0
}

// StreamInfo describes one authenticated stream.
type StreamInfo struct {
	Outgoing      bool
	Local, Remote string // domains
	Method        string // "sasl-external" or "dialback"
}

// Streams lists the authenticated streams (for tests and operators).
func (s *Server) Streams() []StreamInfo {
	s.mu.Lock()
	links := make([]*link, 0, len(s.links))
	for _, l := range s.links {
		links = append(links, l)
	}
	ins := make([]*inStream, 0, len(s.ins))
	for in := range s.ins {
		ins = append(ins, in)
	}
	s.mu.Unlock()
	var out []StreamInfo
	for _, l := range links {
		if m := l.method(); m != "" {
			out = append(out, StreamInfo{Outgoing: true, Local: l.pair.local, Remote: l.pair.remote, Method: m})
		}
	}
	for _, in := range ins {
		out = append(out, in.info()...)
	}
	return out
}
