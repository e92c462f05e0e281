package signaling

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/clientaddr"
	"poosms.org/poosms/internal/connlimit"
	"poosms.org/poosms/internal/loginlimit"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Config is the signaling layer's share of the server settings.
type Config struct {
	Domain         string      // the XMPP domain served
	TLS            *tls.Config // certificate for Domain; nil disables STARTTLS and direct TLS
	C2SAddr        string      // STARTTLS listener, e.g. ":5222"; "" disables
	C2STLSAddr     string      // direct TLS listener (XEP-0368), e.g. ":5223"; "" disables
	MaxStanzaBytes int64       // largest stanza accepted; default 262144
	// StanzaLimits bounds the elements, nesting and attributes of a stanza
	// (zero fields: the stanza package's defaults).
	StanzaLimits              stanza.Limits
	AuthTimeout               time.Duration // time to authenticate and bind; default 30s
	IdleTimeout               time.Duration // silence after which a stream is closed; default 5m
	WriteTimeout              time.Duration // a single write's deadline; default 10s
	WriteQueue                int           // stanzas queued per session; default 256
	WriteQueueBytes           int           // bytes queued per session; default 1 MiB
	MaxPresenceBytes          int           // largest presence a client may send; default 16 KiB
	UnackedBytes              int           // bytes kept unacknowledged per session (XEP-0198); default 2 MiB
	ResumeTimeout             time.Duration // how long a lost session waits to be resumed (XEP-0198); default 5m
	MaxSessionsPerUser        int           // default 10
	AllowPlain                bool          // SASL PLAIN inside TLS
	AllowInsecureLoopbackAuth bool          // SASL without TLS for loopback clients (development)
	InBandRegistration        bool          // XEP-0077 account creation on the stream (needs Registrar)
	Registrar                 Registrar     // account changes (in-band registration, password change, removal); nil: refused
	// Caps returns the server's XEP-0115 <c/> element, added to stream
	// features once the stream is encrypted; nil: none.
	Caps func() *stanza.Element
	// SCRAMIterations is the PBKDF2 count of new verifiers (registration,
	// password change, upgrades at login) and of unknown users' fake ones;
	// default sasl.DefaultIterations.
	SCRAMIterations int
	LoginFailures   int           // failed logins per account and address before refusing; default 5
	LoginWindow     time.Duration // window for LoginFailures; default 5m
	// Limiter throttles failed logins (see loginlimit); share one with the
	// web server so HTTP logins count too. nil: one of its own, from
	// LoginFailures and LoginWindow.
	Limiter *loginlimit.Limiter
	// TrustedProxies are the reverse proxies whose X-Forwarded-For and
	// Forwarded headers name the client of a WebSocket; none: the headers
	// are ignored.
	TrustedProxies []netip.Prefix
	// WebSocketOrigins are the browser origins, besides the page's own,
	// that may open /xmpp-websocket: "https://app.example.org" (exact) or a
	// host pattern such as "*.example.org". Requests without Origin
	// (native clients) are always allowed.
	WebSocketOrigins []string
	// MaxStreamsPerAddress is how many client streams (TCP, direct TLS and
	// WebSocket together) one address may have open at once, and
	// MaxNegotiatingPerAddress how many of them may be still
	// unauthenticated; one more is refused with policy-violation (TCP),
	// closed (direct TLS) or answered 429 (WebSocket). An address is the
	// peer, or the client a trusted proxy names; IPv6 counts by /64. 0: no
	// limit.
	MaxStreamsPerAddress     int
	MaxNegotiatingPerAddress int
	// LimitExempt are addresses the two limits above do not count (the
	// host itself, a local TLS-terminating proxy); none: every address
	// counts.
	LimitExempt []netip.Prefix
	Now         func() time.Time
	Logger      *slog.Logger
	Registerer  prometheus.Registerer // metrics; nil: not registered
}

// Accounts is the credential lookup the server needs from the store.
type Accounts interface {
	Account(ctx context.Context, username string) (store.Account, error)
}

// Server accepts client streams on its listeners and on WebSocket.
type Server struct {
	cfg      Config
	accounts Accounts
	router   *Router
	log      *slog.Logger
	limiter  *loginlimit.Limiter
	proxies  *clientaddr.Resolver
	// registrations limits in-band account creation per address.
	registrations *throttle
	// streams and negotiating count each address's open streams and its
	// streams not yet authenticated.
	streams, negotiating *connlimit.Limiter
	metrics              *metrics
	fakeKey              []byte
	certDER              []byte // leaf certificate, for tls-server-end-point binding

	mu        sync.Mutex
	sessions  map[string]*Session   // full JID → bound session
	perUser   map[string]int        // localpart → bound sessions
	all       map[*Session]struct{} // every session with a reader, bound or not
	resume    map[string]*Session   // XEP-0198 resumption id → session
	detached  map[*Session]*time.Timer
	ended     map[string]time.Time // localpart → when EndUser ended its sessions
	listeners []net.Listener
	closing   bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// idle watches the sockets of idle bound sessions, which then have
	// no goroutine (parking.go); nil where that is not available.
	idle *idleWaiter
}

// New validates cfg, fills defaults and returns a server that is not yet
// listening.
func New(cfg Config, accounts Accounts, router *Router) (*Server, error) {
	d, err := jid.Parse(cfg.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("signaling: invalid domain %q", cfg.Domain)
	}
	cfg.Domain = d.String()
	if accounts == nil || router == nil {
		return nil, errors.New("signaling: accounts and router are required")
	}
	if cfg.MaxStanzaBytes <= 0 {
		cfg.MaxStanzaBytes = 262144
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.WriteQueue <= 0 {
		cfg.WriteQueue = 256
	}
	if cfg.WriteQueueBytes <= 0 {
		cfg.WriteQueueBytes = 1 << 20
	}
	if cfg.MaxPresenceBytes <= 0 {
		cfg.MaxPresenceBytes = 16384
	}
	if cfg.UnackedBytes <= 0 {
		cfg.UnackedBytes = 2 << 20
	}
	if cfg.ResumeTimeout <= 0 {
		cfg.ResumeTimeout = 5 * time.Minute
	}
	if cfg.MaxSessionsPerUser <= 0 {
		cfg.MaxSessionsPerUser = 10
	}
	if cfg.SCRAMIterations < sasl.MinIterations {
		cfg.SCRAMIterations = sasl.DefaultIterations
	}
	if cfg.LoginFailures <= 0 {
		cfg.LoginFailures = 5
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TLS != nil {
		cfg.TLS = cfg.TLS.Clone()
		if cfg.TLS.MinVersion < tls.VersionTLS12 {
			cfg.TLS.MinVersion = tls.VersionTLS12
		}
		cfg.TLS.NextProtos = append(cfg.TLS.NextProtos, "xmpp-client")
	}
	s := &Server{
		cfg:           cfg,
		accounts:      accounts,
		router:        router,
		log:           cfg.Logger,
		limiter:       cfg.Limiter,
		proxies:       clientaddr.New(cfg.TrustedProxies),
		registrations: newThrottle(5, time.Hour, cfg.Now),
		streams:       connlimit.New(cfg.MaxStreamsPerAddress, cfg.LimitExempt),
		negotiating:   connlimit.New(cfg.MaxNegotiatingPerAddress, cfg.LimitExempt),
		fakeKey:       make([]byte, 32),
		sessions:      map[string]*Session{},
		perUser:       map[string]int{},
		all:           map[*Session]struct{}{},
		resume:        map[string]*Session{},
		detached:      map[*Session]*time.Timer{},
		ended:         map[string]time.Time{},
	}
	if s.limiter == nil {
		s.limiter = loginlimit.New(loginlimit.Config{Failures: cfg.LoginFailures, Window: cfg.LoginWindow, Now: cfg.Now})
	}
	_, _ = rand.Read(s.fakeKey)
	if cfg.TLS != nil && len(cfg.TLS.Certificates) > 0 && len(cfg.TLS.Certificates[0].Certificate) > 0 {
		s.certDER = cfg.TLS.Certificates[0].Certificate[0]
	}
	s.metrics = newMetrics(cfg.Registerer, func() float64 { return float64(s.Sessions()) })
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start opens the TCP listeners and starts accepting. It returns once the
// sockets are bound.
func (s *Server) Start() error {
	if s.idle == nil {
		w, err := newIdleWaiter()
		if err != nil {
			s.log.Info("idle sessions keep a goroutine each", "why", err)
		}
		s.idle = w
	}
	if s.cfg.C2SAddr != "" {
		if err := s.listen(s.cfg.C2SAddr, false); err != nil {
			return err
		}
	}
	if s.cfg.C2STLSAddr != "" {
		if s.cfg.TLS == nil {
			return errors.New("signaling: direct TLS listener needs a certificate")
		}
		if err := s.listen(s.cfg.C2STLSAddr, true); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) listen(addr string, directTLS bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("signaling: listen %s: %w", addr, err)
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.accept(ln, directTLS)
	}()
	return nil
}

func (s *Server) accept(ln net.Listener, directTLS bool) {
	kind := "tcp"
	if directTLS {
		kind = "tls"
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "addr", ln.Addr().String(), "err", err)
			// Back off briefly on resource exhaustion (EMFILE) instead of spinning.
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		s.metrics.connections.WithLabelValues(kind).Inc()
		var direct *tls.Config
		if directTLS {
			direct = s.cfg.TLS
		}
		t := newTCPTransport(conn, direct, s.cfg.MaxStanzaBytes, s.cfg.StanzaLimits, s.cfg.WriteTimeout)
		t.idle = s.idle
		pl, refused := s.admit(connlimit.AddrOf(conn.RemoteAddr()))
		if refused != "" {
			s.metrics.refused.WithLabelValues(kind, refused).Inc()
			s.log.Debug("connection refused: "+refusals[refused], "remote", hostOf(conn.RemoteAddr()))
			if !directTLS {
				// The stream error needs no handshake; on the TLS port
				// one would cost more than the connection it refuses.
				t.wtimeout = time.Second
				_ = t.writeHeader(newStreamID(), s.cfg.Domain)
				_ = t.write(stanza.StreamError("policy-violation", refusals[refused]))
				_ = t.writeClose()
			}
			_ = t.close()
			continue
		}
		s.serve(t, directTLS, pl)
	}
}

// Reasons a new stream is refused, the values of
// poosms_connections_refused_total's reason label, and what the client
// is told.
var refusals = map[string]string{
	"streams_per_address":     "too many streams from your address",
	"negotiating_per_address": "too many streams from your address are still logging in",
}

// places are what a stream holds against the per-address limits: its
// place among the address's streams, and among those negotiating until
// it authenticates.
type places struct{ stream, negotiating func() }

// admit takes a new stream's places for the client at addr, or names the
// limit that refuses it.
func (s *Server) admit(addr netip.Addr) (places, string) {
	stream, ok := s.streams.Acquire(addr)
	if !ok {
		return places{}, "streams_per_address"
	}
	negotiating, ok := s.negotiating.Acquire(addr)
	if !ok {
		stream()
		return places{}, "negotiating_per_address"
	}
	return places{stream, negotiating}, ""
}

// serve runs a session on t in a goroutine owned by the server; the
// session gives pl back when its connection ends.
func (s *Server) serve(t transport, secure bool, pl places) *Session {
	sess := &Session{
		srv:        s,
		t:          t,
		log:        s.log.With("remote", hostOf(t.remoteAddr())),
		secure:     secure,
		started:    time.Now(),
		negotiated: pl.negotiating,
	}
	sess.q.init(s.cfg.WriteQueue, s.cfg.WriteQueueBytes, sess.startWriter)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		pl.negotiating()
		pl.stream()
		_ = t.close()
		return nil
	}
	s.all[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	// end runs when the connection is read no more; a bound connection
	// whose client is idle has no goroutine meanwhile (parking.go), and
	// stays counted in s.wg.
	end := func() {
		s.mu.Lock()
		delete(s.all, sess)
		s.mu.Unlock()
		pl.negotiating()
		pl.stream()
		s.wg.Done()
	}
	go func() {
		if tc, ok := t.(*tcpTransport); ok && tc.tls != nil {
			ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
			err := tc.tls.HandshakeContext(ctx)
			cancel()
			if err != nil {
				sess.log.Debug("tls handshake failed", "err", err)
				_ = t.close()
				end()
				return
			}
		}
		sess.run(s.ctx, end)
	}()
	return sess
}

// register binds sess under its full JID. An existing session with the
// same JID is returned so the caller can end it (resource conflict).
func (s *Server) register(sess *Session) (*Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := sess.jid.String()
	if at, ok := s.ended[sess.user]; ok && !sess.authStarted.After(at) {
		return nil, errAccountEnded
	}
	old := s.sessions[key]
	if old == nil && s.perUser[sess.user] >= s.cfg.MaxSessionsPerUser {
		return nil, fmt.Errorf("at most %d sessions per account", s.cfg.MaxSessionsPerUser)
	}
	s.sessions[key] = sess
	if old == nil {
		s.perUser[sess.user]++
	}
	return old, nil
}

func (s *Server) unregister(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := sess.jid.String()
	if s.sessions[key] != sess {
		return // replaced by a newer session with the same JID
	}
	delete(s.sessions, key)
	if s.perUser[sess.user]--; s.perUser[sess.user] <= 0 {
		delete(s.perUser, sess.user)
	}
}

func (s *Server) addResumable(id string, sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resume[id] = sess
}

func (s *Server) resumable(id string) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resume[id]
}

func (s *Server) forgetResumable(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.resume {
		if r == sess {
			delete(s.resume, id)
		}
	}
}

// detach starts the resumption timer of a session whose connection died;
// false when the server is shutting down.
func (s *Server) detach(sess *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	s.detached[sess] = time.AfterFunc(s.cfg.ResumeTimeout, func() {
		defer s.wg.Done()
		s.mu.Lock()
		delete(s.detached, sess)
		s.mu.Unlock()
		sess.expire()
	})
	return true
}

// expireNow ends a session waiting to be resumed without waiting for its
// timer, which is stopped; nothing happens if it has fired already or the
// session is not waiting.
func (s *Server) expireNow(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.detached[sess]; ok && t.Stop() {
		delete(s.detached, sess)
		go func() {
			defer s.wg.Done()
			sess.expire()
		}()
	}
}

// undetach stops the timer of a session being resumed.
func (s *Server) undetach(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.detached[sess]; ok {
		delete(s.detached, sess)
		if t.Stop() {
			s.wg.Done()
		}
	}
}

// errAccountEnded refuses to bind a session whose login began before its
// account was deleted.
var errAccountEnded = errors.New("the account was deleted")

// EndUser ends every session of the local user with this localpart, whose
// account was deleted: bound sessions end with a not-authorized stream
// error, sessions waiting to be resumed end at once, and a login that
// began before this call cannot bind afterwards. The stanzas the sessions
// never delivered are dropped, not routed to the user's other resources
// or offline queue: the account they were for is gone, and a new account
// with the same name must not receive them.
func (s *Server) EndUser(local string) {
	now := s.cfg.Now()
	s.mu.Lock()
	for u, at := range s.ended {
		// A login has AuthTimeout to bind; older marks can go.
		if now.Sub(at) > s.cfg.AuthTimeout {
			delete(s.ended, u)
		}
	}
	s.ended[local] = now
	var live, waiting []*Session
	for _, sess := range s.sessions {
		if sess.user != local {
			continue
		}
		sess.accountGone.Store(true)
		if t, ok := s.detached[sess]; ok {
			delete(s.detached, sess)
			if t.Stop() {
				waiting = append(waiting, sess)
			}
			continue
		}
		live = append(live, sess)
	}
	s.mu.Unlock()
	for _, sess := range waiting {
		sess.expire()
		s.wg.Done()
	}
	for _, sess := range live {
		if !sess.removing.Load() {
			sess.Stop("not-authorized", "the account was deleted")
		}
	}
	if n := len(live) + len(waiting); n > 0 {
		s.log.Info("sessions of a deleted account ended", "user", local, "sessions", n)
	}
}

// Session returns the session bound to full on this server, or nil.
func (s *Server) Session(full jid.JID) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[full.String()]
}

// LocalSessions calls fn for every bound session, outside the server's
// lock; fn sees the sessions bound when the call began.
func (s *Server) LocalSessions(fn func(*Session)) {
	s.mu.Lock()
	all := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	for _, sess := range all {
		fn(sess)
	}
}

// Sessions is the number of bound sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Addrs returns the bound listener addresses, in the order C2SAddr, C2STLSAddr.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// Close stops accepting, ends every session with system-shutdown and waits
// for their goroutines, at most until ctx ends.
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
	live := make([]*Session, 0, len(s.all))
	for sess := range s.all {
		live = append(live, sess)
	}
	var waiting []*Session
	for sess, timer := range s.detached {
		if timer.Stop() {
			waiting = append(waiting, sess)
		}
	}
	s.mu.Unlock()
	// Sessions waiting to be resumed end now; their undelivered messages
	// go to the offline queue.
	for _, sess := range waiting {
		sess.expire()
		s.wg.Done()
	}
	for _, sess := range live {
		sess.Stop("system-shutdown", "the server is shutting down")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer func() {
		if s.idle != nil {
			s.idle.close() // every session has ended: none is parked
		}
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		for _, sess := range live {
			_ = sess.t.close()
		}
		<-done
		return fmt.Errorf("signaling: close: %w", ctx.Err())
	}
}

func (s *Server) lookup(ctx context.Context, username string) (store.Credentials, error) {
	a, err := s.accounts.Account(ctx, username)
	if err != nil {
		return store.Credentials{}, err
	}
	return a.Credentials, nil
}

func (s *Server) normalizeUser(name string) (string, error) {
	j, err := jid.New(name, s.cfg.Domain, "")
	if err != nil {
		return "", err
	}
	return j.Localpart(), nil
}

// detachedCount is the number of sessions waiting to be resumed.
func (s *Server) detachedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.detached)
}
