package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/chat/directory"
	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/chat/upload"
	"poosms.org/poosms/conference"
	"poosms.org/poosms/config"
	"poosms.org/poosms/sfu"
	"poosms.org/poosms/signaling"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
	"poosms.org/poosms/turn"
)

// The services a node runs beside chat, each started by startNode.

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
		Realm:                 cfg.Domain,
		UDPAddr:               cfg.TURNAddr,
		TCPAddr:               cfg.TURNAddr,
		TLSAddr:               cfg.TURNTLSAddr,
		TLSConfig:             tlsConfig,
		RelayIP:               relayIP,
		Secret:                secret,
		CredentialTTL:         cfg.TURNCredentialTTL,
		AllowPeers:            cfg.TURNAllowPeers,
		AllowSelf:             cfg.TURNAllowSelf,
		SelfAddrs:             n.selfAddrs(),
		MaxAllocationsPerUser: cfg.TURNMaxAllocations,
		AuthTimeout:           cfg.TURNAuthTimeout,
		MaxConnsPerAddress:    cfg.TURNMaxConnsPerAddress,
		LimitExempt:           cfg.ConnLimitExempt,
		Logger:                n.log.With("service", "turn"),
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
			return stanza.ErrorReply(iq, stanza.BadRequest, "services are read with type='get'")
		}
		return stanza.Result(iq, t.ExternalServices(n.publicHost(), sess.JID().Bare().String()))
	})
	return nil
}

// selfAddrs are the node's addresses the relay must not reach besides its
// own: where the other services listen, and the public address.
func (n *node) selfAddrs() []netip.Addr {
	cfg := n.cfg
	own := turn.ListenAddrs(cfg.C2SAddr, cfg.C2STLSAddr, cfg.HTTPAddr, cfg.MediaUDPAddr, cfg.MediaTCPAddr, cfg.DebugAddr)
	if cfg.PublicIP.IsValid() {
		own = append(own, cfg.PublicIP)
	}
	return own
}

// newConference configures conference.DOMAIN: group rooms (XEP-0045)
// and, in the same rooms, voice and video conferences through the SFU,
// which admits only the room's occupants (as far as the room's rules
// allow) and shows them as the room does; package conference wires the
// two. The link is given it at once; it runs from startRooms on, and
// drops what reaches it before.
func (n *node) newConference() error {
	cfg := n.cfg
	var public string
	if cfg.PublicIP.IsValid() {
		public = cfg.PublicIP.String()
	}
	c, err := conference.New(conference.Config{
		Domain: "conference." + cfg.Domain,
		Rooms: muc.Config{
			ServerDomain: cfg.Domain,
			Retention:    cfg.ArchiveRetention,
			HistoryBytes: cfg.WriteQueueBytes / 2,
			Deliver:      n.chat.Deliver,

			NewRoomsPerHour: cfg.MaxNewRoomsPerHour, // counted on the node hosting the new room

			SendRemote: n.federationSend(),
			Logger:     n.log.With("service", "muc"),
		},
		Calls: sfu.Config{
			UDPAddr:               cfg.MediaUDPAddr,
			TCPAddr:               cfg.MediaTCPAddr,
			PublicIP:              public,
			ICEServers:            n.iceServers,
			MaxParticipants:       cfg.MaxParticipants,
			MaxConferences:        cfg.MaxConferences,
			MaxConferencesPerUser: cfg.MaxConferencesPerUser,
			IncludeLoopback:       loopbackMedia(cfg),

			MaxTracksPerParticipant: cfg.MaxTracksPerParticipant,
			MaxMediaSections:        cfg.MaxMediaSections,
			Logger:                  n.log.With("service", "sfu"),
		},
		// Users of other servers reach the rooms through federation,
		// never with an address of this server.
		Hosted: n.hosted,
		Logger: n.log,
	}, n.db)
	if err != nil {
		return err
	}
	n.conference = c
	return nil
}

// startRooms opens the rooms and the SFU's media ports and routes
// conference.DOMAIN to them.
func (n *node) startRooms(router *signaling.Router) error {
	if err := n.conference.Start(); err != nil {
		return err
	}
	c := n.conference
	n.closers = append(n.closers, func(context.Context) error { return c.Close() })
	domain := "conference." + n.cfg.Domain
	router.Handle(domain, signaling.Service{
		// Each room and its conference run on one node of a cluster: the
		// link hands the stanza to this node's conference service or to
		// the host's.
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { n.link.Room(ctx, s, el) },
		// Rooms on other nodes learn of the end from the chat service's
		// report to the cluster.
		Closed: func(ctx context.Context, s *signaling.Session) { c.SessionClosed(ctx, s) },
		// Users of other servers reach the rooms wherever the stream
		// from their server arrives.
		Remote: n.remoteToRoom,
	})
	n.chat.AddItem(domain, "Group rooms")
	return nil
}

// registrar is the store's account changes; deletion goes through the
// node (deleteAccount), which ends the account's sessions everywhere.
type registrar struct{ n *node }

func (r registrar) CreateAccount(ctx context.Context, user string, c store.Credentials) error {
	return r.n.db.CreateAccount(ctx, user, c)
}

func (r registrar) SetCredentials(ctx context.Context, user string, c store.Credentials) error {
	return r.n.db.SetCredentials(ctx, user, c)
}

func (r registrar) UpgradeCredentials(ctx context.Context, user string, old, c store.Credentials) error {
	return r.n.db.UpgradeCredentials(ctx, user, old, c)
}

func (r registrar) DeleteAccount(ctx context.Context, user string) error {
	return r.n.deleteAccount(ctx, user)
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
		// Users of other servers may only ask what it is.
		Remote: func(ctx context.Context, el *stanza.Element) { dir.HandleStanza(ctx, n.remotePeer(el), el) },
	})
	n.chat.AddItem(domain, "People directory")
	return nil
}

// startUpload runs HTTP file upload (XEP-0363) on upload.DOMAIN; the web
// server serves the files under /upload/.
func (n *node) startUpload(router *signaling.Router) (*upload.Service, error) {
	up, err := newUploadService(n.cfg, n.log, n.uploadURL)
	if err != nil {
		return nil, err
	}
	domain := "upload." + n.cfg.Domain
	router.Handle(domain, signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { up.HandleStanza(ctx, s, el) },
		// Users of other servers may only ask what it is.
		Remote: func(ctx context.Context, el *stanza.Element) { up.HandleStanza(ctx, n.remotePeer(el), el) },
	})
	n.chat.AddItem(domain, "File upload")
	n.uploads = up
	return up, nil
}

// uploadURL is the public base URL of the upload handler: --upload-url,
// or the HTTP listener's port on the public host.
func (n *node) uploadURL() string {
	if n.cfg.UploadURL != "" {
		return n.cfg.UploadURL
	}
	_, port, _ := net.SplitHostPort(n.httpAddr.String())
	return "http://" + net.JoinHostPort(n.publicHost(), port) + "/upload"
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
		MaxFileBytes: int64(cfg.UploadMaxBytes), QuotaBytes: int64(cfg.UploadQuotaBytes), MaxFiles: cfg.UploadMaxFiles,
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
