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
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/chat/directory"
	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/chat/upload"
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
	cfg      config.Config
	log      *slog.Logger
	db       *store.DB
	chat     *chat.Service
	c2s      *signaling.Server
	turn     *turn.Server // nil when the relay is off
	sfu      *sfu.Service
	uploads  *upload.Service
	http     *http.Server
	httpAddr net.Addr
	ready    atomic.Bool
	closers  []func(context.Context) error // run in reverse order by Close
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
	}, n.db)
	if err != nil {
		return n, err
	}
	n.closers = append(n.closers, func(context.Context) error { n.chat.Close(); return nil })
	n.chat.AddFeature("jabber:iq:register") // password change and removal, answered by signaling
	router := signaling.NewRouter(signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { n.chat.HandleStanza(ctx, s, el) },
		Bound:  func(ctx context.Context, s *signaling.Session) { n.chat.SessionBound(ctx, s) },
		Closed: func(ctx context.Context, s *signaling.Session) { n.chat.SessionClosed(ctx, s) },
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

// startTURN runs the embedded relay and offers it to clients through
// XEP-0215 external service discovery.
func (n *node) startTURN(ctx context.Context, tlsConfig *tls.Config, reg prometheus.Registerer) error {
	cfg := n.cfg
	secret := []byte(cfg.TURNSecret)
	if len(secret) == 0 {
		var err error
		if secret, err = turn.LoadOrCreateSecret(cfg.DataDir); err != nil {
			return err
		}
	}
	var relayIP net.IP
	if cfg.PublicIP.Is4() {
		relayIP = cfg.PublicIP.AsSlice()
	}
	t, err := turn.New(turn.Config{
		Realm:         cfg.Domain,
		UDPAddr:       cfg.TURNAddr,
		TCPAddr:       cfg.TURNAddr,
		TLSAddr:       cfg.TURNTLSAddr,
		TLSConfig:     tlsConfig,
		RelayIP:       relayIP,
		Secret:        secret,
		CredentialTTL: cfg.TURNCredentialTTL,
		AllowPeers:    cfg.TURNAllowPeers,
		Logger:        n.log.With("service", "turn"),
	})
	if err != nil {
		return err
	}
	if err := t.Start(ctx); err != nil {
		return err
	}
	n.turn = t
	n.closers = append(n.closers, func(context.Context) error { return t.Close() })
	reg.MustRegister(t.Collectors()...)
	n.chat.AddFeature(turn.NSExtDisco)
	n.chat.HandleIQ(turn.NSExtDisco, "services", func(_ context.Context, sess chat.Session, iq *stanza.Element) *stanza.Element {
		if iq.Type() != "get" {
			return stanza.ErrorReply(iq, "bad-request", "services are read with type='get'")
		}
		return stanza.Result(iq, t.ExternalServices(n.publicHost(), sess.JID().Bare().String()))
	})
	return nil
}

// startRooms runs conference.DOMAIN: group rooms (XEP-0045) and, in the
// same rooms, voice and video conferences through the SFU, which admits
// only those the room's membership admits.
func (n *node) startRooms(router *signaling.Router) error {
	cfg := n.cfg
	domain := "conference." + cfg.Domain
	rooms, err := muc.New(muc.Config{
		Domain:       domain,
		ServerDomain: cfg.Domain,
		Retention:    cfg.ArchiveRetention,
		Deliver:      n.chat.Deliver,
		Logger:       n.log.With("service", "muc"),
	}, n.db)
	if err != nil {
		return err
	}
	var public string
	if cfg.PublicIP.IsValid() {
		public = cfg.PublicIP.String()
	}
	svc, err := sfu.New(sfu.Config{
		Domain:          domain,
		UDPAddr:         cfg.MediaUDPAddr,
		TCPAddr:         cfg.MediaTCPAddr,
		PublicIP:        public,
		ICEServers:      n.iceServers,
		MaxParticipants: cfg.MaxParticipants,
		MaxConferences:  cfg.MaxConferences,
		IncludeLoopback: loopbackMedia(cfg),
		Authorize:       rooms.MayConference,
		Logger:          n.log.With("service", "sfu"),
	})
	if err != nil {
		return err
	}
	n.sfu = svc
	n.closers = append(n.closers, func(context.Context) error { return svc.Close() })
	router.Handle(domain, signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) {
			if conferenceIQ(el) {
				svc.HandleStanza(ctx, s, el)
				return
			}
			rooms.HandleStanza(ctx, s, el)
		},
		Closed: func(ctx context.Context, s *signaling.Session) {
			svc.SessionClosed(ctx, s)
			rooms.SessionClosed(ctx, s)
		},
	})
	n.chat.AddItem(domain, "Group rooms")
	return nil
}

// conferenceIQ tells the SFU's stanzas from the rooms' on conference.DOMAIN:
// IQs in the conference namespace, and results and errors addressed to a
// bare room JID (answers to the SFU's own offers and candidates). Results
// to room/nick answer requests the room relayed between occupants.
func conferenceIQ(el *stanza.Element) bool {
	if el.Local != "iq" {
		return false
	}
	if t := el.Type(); t == "result" || t == "error" {
		to, err := jid.Parse(el.To())
		return err == nil && to.Resourcepart() == ""
	}
	c := el.FirstElement()
	return c != nil && c.Space == muc.NSConference
}

// registrar is the store's account changes plus the cleanup of what an
// account leaves outside the database (shared files).
type registrar struct{ n *node }

func (r registrar) CreateAccount(ctx context.Context, user string, c store.Credentials) error {
	return r.n.db.CreateAccount(ctx, user, c)
}

func (r registrar) SetCredentials(ctx context.Context, user string, c store.Credentials) error {
	return r.n.db.SetCredentials(ctx, user, c)
}

func (r registrar) DeleteAccount(ctx context.Context, user string) error {
	if err := r.n.db.DeleteAccount(ctx, user); err != nil {
		return err
	}
	if r.n.uploads != nil {
		if err := r.n.uploads.DeleteUser(user); err != nil {
			r.n.log.Error("delete shared files of a removed account", "user", user, "err", err)
		}
	}
	return nil
}

// startDirectory runs the people directory (XEP-0055) on directory.DOMAIN.
func (n *node) startDirectory(router *signaling.Router) error {
	domain := "directory." + n.cfg.Domain
	dir, err := directory.New(directory.Config{
		Domain: domain, ServerDomain: n.cfg.Domain, Logger: n.log.With("service", "directory"),
	}, n.db)
	if err != nil {
		return err
	}
	router.Handle(domain, signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { dir.HandleStanza(ctx, s, el) },
	})
	n.chat.AddItem(domain, "People directory")
	return nil
}

// startUpload runs HTTP file upload (XEP-0363) on upload.DOMAIN; the web
// server serves the files under /upload/.
func (n *node) startUpload(router *signaling.Router) (*upload.Service, error) {
	up, err := newUploadService(n.cfg, n.log, func() string {
		if n.cfg.UploadURL != "" {
			return n.cfg.UploadURL
		}
		_, port, _ := net.SplitHostPort(n.httpAddr.String())
		return "http://" + net.JoinHostPort(n.publicHost(), port) + "/upload"
	})
	if err != nil {
		return nil, err
	}
	domain := "upload." + n.cfg.Domain
	router.Handle(domain, signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { up.HandleStanza(ctx, s, el) },
	})
	n.chat.AddItem(domain, "File upload")
	n.uploads = up
	return up, nil
}

// newUploadService builds the upload service from the settings (also used
// by "user del" to remove a user's files).
func newUploadService(cfg config.Config, log *slog.Logger, baseURL func() string) (*upload.Service, error) {
	dir := cfg.UploadDir
	if dir == "" {
		dir = filepath.Join(cfg.DataDir, "uploads")
	}
	return upload.New(upload.Config{
		Domain: "upload." + cfg.Domain, ServerDomain: cfg.Domain, Dir: dir, BaseURL: baseURL,
		MaxFileBytes: int64(cfg.UploadMaxBytes), QuotaBytes: int64(cfg.UploadQuotaBytes),
		Logger: log.With("service", "upload"),
	})
}

// loopbackMedia: offer loopback ICE candidates when media listens on a
// loopback address or the server is the development default (localhost),
// where clients run on the same machine.
func loopbackMedia(cfg config.Config) bool {
	host, _, err := net.SplitHostPort(cfg.MediaUDPAddr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsLoopback() {
		return true
	}
	return cfg.Domain == "localhost"
}

// iceServers are the STUN/TURN servers handed to a joining participant,
// TURN with fresh credentials.
func (n *node) iceServers(user jid.JID) []sfu.ICEServer {
	if n.turn == nil {
		return nil
	}
	c := n.turn.Credentials(user.Bare().String())
	var stun, relay []string
	for _, u := range n.turn.URLs(n.publicHost()) {
		if strings.HasPrefix(u, "stun:") {
			stun = append(stun, u)
		} else {
			relay = append(relay, u)
		}
	}
	out := []sfu.ICEServer{}
	if len(stun) > 0 {
		out = append(out, sfu.ICEServer{URLs: stun})
	}
	if len(relay) > 0 {
		out = append(out, sfu.ICEServer{URLs: relay, Username: c.Username, Credential: c.Password})
	}
	return out
}

// publicHost is the name clients use to reach this node's relay and media.
func (n *node) publicHost() string {
	if n.cfg.PublicIP.IsValid() {
		return n.cfg.PublicIP.String()
	}
	return n.cfg.Domain
}

// turnAPIResponse is the JSON body of GET /api/turn.
func (n *node) turnAPIResponse(user string) any {
	c := n.turn.Credentials(user)
	return struct {
		Username string    `json:"username"`
		Password string    `json:"password"`
		TTL      int       `json:"ttl"`
		Expires  time.Time `json:"expires"`
		URIs     []string  `json:"uris"`
	}{c.Username, c.Password, int(n.cfg.TURNCredentialTTL.Seconds()), c.Expires, n.turn.URLs(n.publicHost())}
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
