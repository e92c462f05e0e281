// Package web is poosms's HTTP face: the browser client at / (see
// docs/client.md), the plain start page at /welcome, the account
// registration form, /healthz, and the mount point for handlers owned by
// other packages (the /xmpp-websocket endpoint, /metrics when a token
// guards it; by default metrics have a listener of their own).
package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/clientaddr"
	"poosms.org/poosms/internal/loginlimit"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// Accounts creates local accounts. CreateAccount returns store.ErrExists
// when the username is taken.
type Accounts interface {
	CreateAccount(ctx context.Context, username string, c store.Credentials) error
}

// Config shapes a Server. Zero values get the defaults noted.
type Config struct {
	// Domain is the XMPP domain accounts are created in. Required.
	Domain string
	// Registration opens the registration form; when false, /register
	// says registration is closed.
	Registration bool
	// C2SAddr and C2STLSAddr are the client listen addresses; their ports
	// are shown after registration. An empty C2STLSAddr is not shown.
	C2SAddr, C2STLSAddr string
	// Logger receives registration events. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock for rate limiting. Default: time.Now.
	Now func() time.Time
	// RegisterAttempts registration attempts per client address are
	// allowed within RegisterWindow. Default: 10 per 10 minutes.
	RegisterAttempts int
	RegisterWindow   time.Duration
	// Iterations is the SCRAM iteration count for new accounts and for
	// upgrading weaker verifiers at /api/turn logins. Default:
	// sasl.DefaultIterations (also when below sasl.MinIterations).
	Iterations int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For,
	// X-Forwarded-Proto and Forwarded headers are believed; none: the
	// headers are ignored and the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// UploadURL is the public base URL of HTTP file upload (XEP-0363);
	// the client page lets scripts send files to its origin and show
	// pictures from it. Empty: uploads are on the page's own origin.
	UploadURL string
	// Limiter throttles failed logins (/api/turn); share the signaling
	// server's. nil: one of its own with loginlimit's defaults.
	Limiter *loginlimit.Limiter
}

// Server serves poosms's HTTP routes. Create it with New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	accounts Accounts
	mux      *http.ServeMux
	csrf     *csrfGuard
	limit    *limiter
	proxies  *clientaddr.Resolver
	fakeKey  []byte // unknown users' fake verifiers (sasl.FakeCredentials)
	ready    atomic.Pointer[func() bool]
}

// MaxUsernameBytes is the longest username, after normalisation.
const MaxUsernameBytes = 64

// New validates cfg, fills its defaults and builds the routes. accounts
// may be nil only when registration is closed.
func New(cfg Config, accounts Accounts) (*Server, error) {
	d, err := jid.New("", cfg.Domain, "")
	if err != nil || cfg.Domain == "" {
		return nil, fmt.Errorf("web: invalid domain %q", cfg.Domain)
	}
	cfg.Domain = d.Domainpart()
	if cfg.Registration && accounts == nil {
		return nil, errors.New("web: open registration needs an account store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RegisterAttempts <= 0 {
		cfg.RegisterAttempts = 10
	}
	if cfg.RegisterWindow <= 0 {
		cfg.RegisterWindow = 10 * time.Minute
	}
	if cfg.Iterations < sasl.MinIterations {
		cfg.Iterations = sasl.DefaultIterations
	}
	if cfg.Limiter == nil {
		cfg.Limiter = loginlimit.New(loginlimit.Config{Now: cfg.Now})
	}
	csrf, err := newCSRFGuard()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		accounts: accounts,
		mux:      http.NewServeMux(),
		csrf:     csrf,
		limit:    newLimiter(cfg.RegisterAttempts, cfg.RegisterWindow, cfg.Now),
		proxies:  clientaddr.New(cfg.TrustedProxies),
		fakeKey:  make([]byte, 32),
	}
	rand.Read(s.fakeKey) // never fails (crypto/rand)
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	// The browser client is the start page; /welcome keeps the plain
	// page for people who use another XMPP app.
	if err := s.mountClient(); err != nil {
		return nil, err
	}
	s.mux.HandleFunc("GET /welcome", s.landing)
	s.mux.HandleFunc("GET /register", s.registerForm)
	s.mux.HandleFunc("POST /register", s.register)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /.well-known/host-meta", s.hostMeta)
	s.mux.HandleFunc("GET /.well-known/host-meta.json", s.hostMeta)
	return s, nil
}

// Handler is the HTTP handler for every route, mounted ones included.
func (s *Server) Handler() http.Handler { return s.mux }

// Mount serves h at path (a ServeMux pattern such as "/xmpp-websocket"
// or "GET /metrics"). It panics if the pattern clashes with a route
// already there, like http.ServeMux.Handle.
func (s *Server) Mount(path string, h http.Handler) { s.mux.Handle(path, h) }

// SetReady installs the readiness check: /healthz answers 200 only when
// ready returns true, and 503 before SetReady is called.
func (s *Server) SetReady(ready func() bool) { s.ready.Store(&ready) }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if f := s.ready.Load(); f != nil && *f != nil && (*f)() {
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready")
}

// page is what the templates see.
type page struct {
	Title        string
	Domain       string
	Registration bool

	// The registration form.
	Username    string
	CSRF        string
	Errors      []string
	Invalid     map[string]bool
	MinPassword int

	// The page after registration.
	JID, Server, C2SPort, TLSPort, WebSocketURL string
}

func (s *Server) page(title string) *page {
	return &page{Title: title, Domain: s.cfg.Domain, Registration: s.cfg.Registration,
		MinPassword: sasl.MinPasswordLength}
}

func (s *Server) render(w http.ResponseWriter, status int, name string, p *page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if name != "landing" {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, p); err != nil {
		s.log.Error("web: render page", "page", name, "err", err)
	}
}

func (s *Server) landing(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "landing", s.page("Welcome"))
}

// clientAddr groups requests by client address (through trusted
// proxies): an IPv4 address, or the /64 an IPv6 address belongs to.
func (s *Server) clientAddr(r *http.Request) string {
	if k := clientaddr.Key(s.proxies.Client(r)); k != "" {
		return k
	}
	return r.RemoteAddr
}

// MetricsHandler serves h only to requests carrying token as a bearer
// token (Authorization: Bearer TOKEN), compared in constant time; with an
// empty token every request passes.
func MetricsHandler(h http.Handler, token string) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="poosms metrics"`)
			http.Error(w, "metrics need the bearer token (--metrics-token)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
