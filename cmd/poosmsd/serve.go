package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/chat/accounts"
	"poosms.org/poosms/chat/upload"
	"poosms.org/poosms/cluster/link"
	"poosms.org/poosms/conference"
	"poosms.org/poosms/config"
	"poosms.org/poosms/internal/clientaddr"
	"poosms.org/poosms/internal/connlimit"
	"poosms.org/poosms/internal/loginlimit"
	"poosms.org/poosms/s2s"
	"poosms.org/poosms/signaling"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
	"poosms.org/poosms/turn"
	"poosms.org/poosms/web"
)

// serve runs the server until ctx ends (SIGINT, SIGTERM).
func serve(ctx context.Context, cfg config.Config, stderr io.Writer) int {
	log := newLogger(cfg, stderr)
	lim, ok := currentFileLimit()
	logFileLimit(log, lim, ok)
	setGCPercent(ctx, log, cfg.GCPercent)
	n, err := startNode(ctx, cfg, log)
	if err != nil {
		log.Error("poosmsd could not start", "err", err)
		return exitFail
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.Close(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return exitFail
	}
	return exitOK
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// node is one running poosmsd: every service, wired, listening.
type node struct {
	cfg     config.Config
	log     *slog.Logger
	db      *store.DB
	chat    *chat.Service
	c2s     *signaling.Server
	turn    *turn.Server // nil when the relay is off
	uploads *upload.Service
	// conference runs conference.DOMAIN: the rooms and their calls.
	conference  *conference.Service
	link        *link.Link
	s2s         *s2s.Server // federation; nil when off
	router      *signaling.Router
	accounts    *accounts.Watcher
	stopCluster func() // leaves the cluster; nil until joined
	http        *http.Server
	httpHandler atomic.Pointer[http.Handler] // what http serves: see serveHTTP
	// httpConns counts each peer's connections to http; httpProxied the
	// requests under way of each client a trusted proxy names.
	httpConns, httpProxied *connlimit.Limiter
	httpAddr               net.Addr
	debugAddr              net.Addr // --debug-addr as bound; nil when off
	metricsAddr            net.Addr // --metrics-addr as bound; nil when off
	ready                  atomic.Bool
	closers                []func(context.Context) error // run in reverse order by Close
}

// startNode opens the store, starts every listener and returns once all are
// bound. On error everything started so far is stopped again.
func startNode(ctx context.Context, cfg config.Config, log *slog.Logger) (n *node, err error) {
	n = &node{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = n.Close(cctx)
			n = nil
		}
	}()

	// The HTTP listener comes up first and goes down last, so /healthz
	// answers 503 (starting, stopping) whenever the node is not serving.
	if err := n.serveHTTP(); err != nil {
		return n, err
	}
	n.db, err = store.Open(ctx, cfg.DB, cfg.DataDir)
	if err != nil {
		return n, err
	}
	n.db.SetMaxConns(cfg.DBMaxConns)
	n.closers = append(n.closers, func(context.Context) error { return n.db.Close() })
	if err := n.openAccounts(ctx); err != nil {
		return n, err
	}
	// The cluster is joined last but left just before the store closes:
	// after the listeners, so sessions ending at shutdown still tell the
	// other nodes, and while what arrives meanwhile can still be stored.
	n.closers = append(n.closers, func(context.Context) error {
		if n.stopCluster != nil {
			n.stopCluster()
		}
		return nil
	})

	cert, err := certificate(cfg)
	if err != nil {
		return n, err
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "poosms_http_refused_total",
		Help: "HTTP connections (and requests through a trusted proxy) refused at the per-address limit.",
	}, func() float64 { return float64(n.httpConns.Refused() + n.httpProxied.Refused()) }))

	n.chat, err = chat.New(chat.Config{
		Domain:           cfg.Domain,
		OfflineLimit:     cfg.OfflineLimit,
		Limits:           chatLimits(cfg),
		ArchiveRetention: cfg.ArchiveRetention,
		Version:          shortVersion(),
		Logger:           log.With("service", "chat"),
		Federation:       n.chatFederation(),
		// Presence seen from a server whose streams broke waits for its
		// answer to a new probe: time to reach it, and to hear back.
		RemotePresenceTimeout: cfg.S2STimeout + 15*time.Second,
	}, n.db)
	if err != nil {
		return n, err
	}
	n.closers = append(n.closers, func(context.Context) error { n.chat.Close(); return nil })
	n.chat.AddFeature("jabber:iq:register") // password change and removal, answered by signaling
	if err := n.newConference(); err != nil {
		return n, err
	}
	n.newLink()
	router := signaling.NewRouter(signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { n.chat.HandleStanza(ctx, s, el) },
		// Chat tells the link (chat.Publisher): the link takes the JID
		// in the cluster's directory first, and gives it back last.
		Bound:  func(ctx context.Context, s *signaling.Session) { n.chat.SessionBound(ctx, s) },
		Closed: func(ctx context.Context, s *signaling.Session) { n.chat.SessionClosed(ctx, s) },
		// Messages a session never received go where RFC 6121 sends
		// messages for a resource that is gone: other resources, or offline.
		Undelivered: n.chat.Deliver,
		Remote:      n.chat.HandleRemote,
	})
	n.router = router
	// Federation closes after the client streams, so that the presence
	// of the sessions they end still reaches other servers.
	if err := n.newS2S(router, tlsConfig, reg); err != nil {
		return n, err
	}

	// One login throttle for XMPP and HTTP logins.
	limiter := loginlimit.New(loginlimit.Config{Failures: cfg.LoginFailures, Window: cfg.LoginWindow})
	n.c2s, err = signaling.New(signaling.Config{
		Domain:                    cfg.Domain,
		TLS:                       tlsConfig,
		C2SAddr:                   cfg.C2SAddr,
		C2STLSAddr:                cfg.C2STLSAddr,
		MaxStanzaBytes:            int64(cfg.MaxStanzaBytes),
		AuthTimeout:               cfg.AuthTimeout,
		IdleTimeout:               cfg.IdleTimeout,
		WriteQueue:                cfg.WriteQueue,
		WriteQueueBytes:           cfg.WriteQueueBytes,
		MaxPresenceBytes:          cfg.MaxPresenceBytes,
		UnackedBytes:              cfg.UnackedBytes,
		StanzaLimits:              stanzaLimits(cfg),
		MaxSessionsPerUser:        cfg.MaxSessionsPerUser,
		AllowPlain:                cfg.AllowPlain,
		AllowInsecureLoopbackAuth: cfg.AllowInsecureLoopbackAuth,
		InBandRegistration:        cfg.InBandRegistration,
		Registrar:                 registrar{n},
		Caps:                      n.chat.Caps,
		ResumeTimeout:             cfg.ResumeTimeout,
		SCRAMIterations:           cfg.SCRAMIterations,
		LoginFailures:             cfg.LoginFailures,
		LoginWindow:               cfg.LoginWindow,
		Limiter:                   limiter,
		TrustedProxies:            cfg.TrustedProxies,
		WebSocketOrigins:          cfg.WebSocketOrigins,
		MaxStreamsPerAddress:      cfg.MaxStreamsPerAddress,
		MaxNegotiatingPerAddress:  cfg.MaxNegotiatingPerAddress,
		LimitExempt:               cfg.ConnLimitExempt,
		Logger:                    log.With("service", "c2s"),
		Registerer:                reg,
	}, n.db, router)
	if err != nil {
		return n, err
	}
	if err := n.c2s.Start(); err != nil {
		return n, err
	}
	n.closers = append(n.closers, n.c2s.Close)

	w, err := web.New(web.Config{
		Domain:         cfg.Domain,
		Registration:   cfg.Registration == config.RegistrationOpen,
		C2SAddr:        cfg.C2SAddr,
		C2STLSAddr:     cfg.C2STLSAddr,
		Iterations:     cfg.SCRAMIterations,
		TrustedProxies: cfg.TrustedProxies,
		UploadURL:      n.uploadURL(),
		Limiter:        limiter,
		Logger:         log.With("service", "web"),
	}, n.db)
	if err != nil {
		return n, err
	}
	if cfg.TURNAddr != "" {
		if err := n.startTURN(ctx, tlsConfig, reg); err != nil {
			return n, err
		}
		w.EnableTURNAPI(n.db, n.turnAPIResponse)
	}
	if err := n.startRooms(router); err != nil {
		return n, err
	}
	if err := n.startDirectory(router); err != nil {
		return n, err
	}
	up, err := n.startUpload(router)
	if err != nil {
		return n, err
	}
	// Files move for as long as they keep moving, past the HTTP
	// server's whole-request timeouts.
	w.Mount("/upload/", web.Transfer(up.HTTPHandler(), cfg.HTTPReadTimeout, cfg.HTTPWriteTimeout))
	w.Mount("/xmpp-websocket", n.c2s.WebSocketHandler())
	if err := n.serveMetrics(w, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})); err != nil {
		return n, err
	}
	w.SetReady(n.ready.Load)
	n.setHTTPHandler(w.Handler())
	if err := n.startS2S(); err != nil {
		return n, err
	}

	if cfg.DebugAddr != "" {
		if err := n.serveDebug(); err != nil {
			return n, err
		}
	}
	if err := n.joinCluster(ctx, reg); err != nil {
		return n, err
	}
	n.runAccounts()
	n.ready.Store(true)
	log.Info("poosmsd is serving",
		"version", shortVersion(),
		"domain", cfg.Domain,
		"db", n.db.Dialect(),
		"c2s", addrString(n.c2s.Addrs()),
		"http", n.httpAddr.String(),
		"metrics", addrString(nonNil(n.metricsAddr)))
	return n, nil
}

// serveMetrics serves /metrics on --metrics-addr, and on the public
// listener only when --metrics-token guards it.
func (n *node) serveMetrics(w *web.Server, h http.Handler) error {
	h = web.MetricsHandler(h, n.cfg.MetricsToken)
	if n.cfg.MetricsToken != "" {
		w.Mount("GET /metrics", h)
	}
	if n.cfg.MetricsAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	addr, err := n.serveAside("metrics", n.cfg.MetricsAddr, mux)
	if err != nil {
		return fmt.Errorf("%w (set --metrics-addr to a free address, or empty to turn the metrics listener off)", err)
	}
	n.metricsAddr = addr
	return nil
}

// serveHTTP binds --http-addr and serves whatever setHTTPHandler last
// installed: until then, 503 "starting" for every path.
func (n *node) serveHTTP() error {
	n.setHTTPHandler(unavailable("starting"))
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", n.cfg.HTTPAddr, err)
	}
	n.httpAddr = ln.Addr()
	// Trusted proxies carry many clients: the listener does not count
	// them, LimitProxied counts the clients they name.
	exempt := append(append([]netip.Prefix(nil), n.cfg.ConnLimitExempt...), n.cfg.TrustedProxies...)
	n.httpConns = connlimit.New(n.cfg.HTTPMaxConnsPerAddress, exempt)
	n.httpProxied = connlimit.New(n.cfg.HTTPMaxConnsPerAddress, n.cfg.ConnLimitExempt)
	ln = web.LimitListener(ln, n.httpConns)
	proxies := clientaddr.New(n.cfg.TrustedProxies)
	n.http = n.httpServer(web.LimitProxied(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*n.httpHandler.Load()).ServeHTTP(w, r)
	}), n.httpProxied, proxies), true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server", "err", err)
		}
	}()
	n.closers = append(n.closers, func(ctx context.Context) error {
		err := n.http.Shutdown(ctx)
		<-done
		return err
	})
	return nil
}

// httpServer serves h within the configured HTTP timeouts: the headers,
// the whole request, the whole response (unless writeTimeout is false:
// pprof's profiles take as long as asked), and the wait for the next
// request on a kept-alive connection. A WebSocket stream, once upgraded,
// has its own idle timeout (net/http clears the deadlines of a
// connection it hands over).
func (n *node) httpServer(h http.Handler, writeTimeout bool) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: n.cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       n.cfg.HTTPReadTimeout,
		IdleTimeout:       n.cfg.HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	if writeTimeout {
		srv.WriteTimeout = n.cfg.HTTPWriteTimeout
	}
	return srv
}

func (n *node) setHTTPHandler(h http.Handler) { n.httpHandler.Store(&h) }

// unavailable answers every request with 503 while the node is starting
// or stopping; /healthz says which.
func unavailable(state string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, state)
	})
}

// Close stops the services in the reverse order of their start. The HTTP
// listener, started first, answers 503 until it stops last.
func (n *node) Close(ctx context.Context) error {
	n.ready.Store(false)
	if n.http != nil {
		n.setHTTPHandler(unavailable("stopping"))
	}
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	n.closers = nil
	return errors.Join(errs...)
}

// certificate loads the configured certificate or the self-signed one kept
// in the data directory for the domain and its conference service.
func certificate(cfg config.Config) (tls.Certificate, error) {
	if cfg.TLSCert != "" {
		return signaling.LoadCertificate(cfg.TLSCert, cfg.TLSKey)
	}
	return signaling.LoadOrCreateSelfSigned(filepath.Join(cfg.DataDir, "tls"), cfg.Domain, "conference."+cfg.Domain)
}

func addrString(as []net.Addr) string {
	s := ""
	for i, a := range as {
		if i > 0 {
			s += " "
		}
		s += a.String()
	}
	return s
}

// nonNil lists a, or nothing when a is nil.
func nonNil(a net.Addr) []net.Addr {
	if a == nil {
		return nil
	}
	return []net.Addr{a}
}

// stanzaLimits is the shape a stanza from a peer may have.
func stanzaLimits(cfg config.Config) stanza.Limits {
	return stanza.Limits{MaxElements: cfg.MaxStanzaElements, MaxDepth: cfg.MaxStanzaDepth, MaxAttributes: cfg.MaxStanzaAttributes}
}
