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
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/chat/upload"
	"poosms.org/poosms/cluster/link"
	"poosms.org/poosms/config"
	"poosms.org/poosms/sfu"
	"poosms.org/poosms/signaling"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
	"poosms.org/poosms/turn"
	"poosms.org/poosms/web"
)

// serve runs the server until ctx ends (SIGINT, SIGTERM).
func serve(ctx context.Context, cfg config.Config, stderr io.Writer) int {
	log := newLogger(cfg, stderr)
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
	cfg         config.Config
	log         *slog.Logger
	db          *store.DB
	chat        *chat.Service
	c2s         *signaling.Server
	turn        *turn.Server // nil when the relay is off
	sfu         *sfu.Service
	uploads     *upload.Service
	rooms       *muc.Service
	link        *link.Link
	stopCluster func() // leaves the cluster; nil until joined
	http        *http.Server
	httpAddr    net.Addr
	debugAddr   net.Addr // --debug-addr as bound; nil when off
	ready       atomic.Bool
	closers     []func(context.Context) error // run in reverse order by Close
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

	n.db, err = store.Open(ctx, cfg.DB, cfg.DataDir)
	if err != nil {
		return n, err
	}
	n.closers = append(n.closers, func(context.Context) error { return n.db.Close() })
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

	n.chat, err = chat.New(chat.Config{
		Domain:           cfg.Domain,
		OfflineLimit:     cfg.OfflineLimit,
		ArchiveRetention: cfg.ArchiveRetention,
		Version:          version,
		Logger:           log.With("service", "chat"),
		// Other nodes of a cluster mirror this node's sessions.
		Observe:          func(full jid.JID, st chat.ResourceState, gone bool) { n.link.Observe(full, st, gone) },
		BlocklistChanged: func(local string) { n.link.BlocklistChanged(local) },
	}, n.db)
	if err != nil {
		return n, err
	}
	n.closers = append(n.closers, func(context.Context) error { n.chat.Close(); return nil })
	n.chat.AddFeature("jabber:iq:register") // password change and removal, answered by signaling
	n.newLink()
	router := signaling.NewRouter(signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { n.chat.HandleStanza(ctx, s, el) },
		Bound: func(ctx context.Context, s *signaling.Session) {
			n.link.Bound(ctx, s.JID()) // ends a session with the same JID on another node
			n.chat.SessionBound(ctx, s)
		},
		Closed: func(ctx context.Context, s *signaling.Session) {
			n.chat.SessionClosed(ctx, s)
			n.link.Closed(ctx, s.JID())
		},
		// Messages a session never received go where RFC 6121 sends
		// messages for a resource that is gone: other resources, or offline.
		Undelivered: n.chat.Deliver,
	})

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
		UnackedBytes:              cfg.UnackedBytes,
		StanzaLimits:              stanzaLimits(cfg),
		MaxSessionsPerUser:        cfg.MaxSessionsPerUser,
		AllowPlain:                cfg.AllowPlain,
		AllowInsecureLoopbackAuth: cfg.AllowInsecureLoopbackAuth,
		InBandRegistration:        cfg.InBandRegistration,
		Registrar:                 registrar{n},
		Caps:                      n.chat.Caps,
		ResumeTimeout:             cfg.ResumeTimeout,
		LoginFailures:             cfg.LoginFailures,
		LoginWindow:               cfg.LoginWindow,
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
		Domain:       cfg.Domain,
		Registration: cfg.Registration == config.RegistrationOpen,
		C2SAddr:      cfg.C2SAddr,
		C2STLSAddr:   cfg.C2STLSAddr,
		Logger:       log.With("service", "web"),
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
	w.Mount("/upload/", up.HTTPHandler())
	w.Mount("/xmpp-websocket", n.c2s.WebSocketHandler())
	w.Mount("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	w.SetReady(n.ready.Load)
	if err := n.serveHTTP(w.Handler()); err != nil {
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
	n.ready.Store(true)
	log.Info("poosmsd is serving",
		"version", version,
		"domain", cfg.Domain,
		"db", n.db.Dialect(),
		"c2s", addrString(n.c2s.Addrs()),
		"http", n.httpAddr.String())
	return n, nil
}

func (n *node) serveHTTP(h http.Handler) error {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", n.cfg.HTTPAddr, err)
	}
	n.httpAddr = ln.Addr()
	n.http = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
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

// Close stops the services in the reverse order of their start.
func (n *node) Close(ctx context.Context) error {
	n.ready.Store(false)
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

// stanzaLimits is the shape a stanza from a peer may have.
func stanzaLimits(cfg config.Config) stanza.Limits {
	return stanza.Limits{MaxElements: cfg.MaxStanzaElements, MaxDepth: cfg.MaxStanzaDepth, MaxAttributes: cfg.MaxStanzaAttributes}
}
