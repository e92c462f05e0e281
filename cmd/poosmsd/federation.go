package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/s2s"
	"poosms.org/poosms/signaling"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/turn"
)

// dialbackSecretFile keeps the generated dialback secret in the data
// directory.
const dialbackSecretFile = "s2s-dialback-secret"

// federation is chat's way out to other servers: the node's s2s server,
// set before any stanza flows.
type federation struct{ n *node }

func (f federation) Send(ctx context.Context, el *stanza.Element) error { return f.n.s2s.Send(ctx, el) }

// chatFederation is what chat is given: nil when federation is off.
func (n *node) chatFederation() chat.Federation {
	if n.cfg.S2SAddr == "" {
		return nil
	}
	return federation{n}
}

// newS2S prepares federation when --s2s-addr is set: stanzas from other
// servers go through the router to the service of their domain (chat for
// the domain itself), and the services reach other servers through it.
// Its listeners open with startS2S, once every service is registered.
func (n *node) newS2S(router *signaling.Router, tlsConfig *tls.Config, reg prometheus.Registerer) error {
	cfg := n.cfg
	if cfg.S2SAddr == "" {
		return nil
	}
	secret := []byte(cfg.S2SDialbackSecret)
	if len(secret) == 0 {
		var err error
		if secret, err = turn.LoadOrCreateSecretFile(filepath.Join(cfg.DataDir, dialbackSecretFile)); err != nil {
			return fmt.Errorf("s2s dialback secret: %w", err)
		}
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if cfg.S2SCAFile != "" {
		pem, err := os.ReadFile(cfg.S2SCAFile)
		if err != nil {
			return fmt.Errorf("s2s: read --s2s-ca-file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("s2s: no certificate in --s2s-ca-file %s", cfg.S2SCAFile)
		}
	}
	srv, err := s2s.New(s2s.Config{
		Domain:         cfg.Domain,
		Hosted:         func(d string) bool { return d == cfg.Domain || router.Has(d) },
		TLS:            tlsConfig,
		Addr:           cfg.S2SAddr,
		TLSAddr:        cfg.S2STLSAddr,
		Allow:          cfg.S2SAllow,
		Deny:           cfg.S2SDeny,
		Routes:         cfg.S2SRoutes,
		SecureAuth:     cfg.S2SSecureAuth,
		Roots:          roots,
		DialbackSecret: secret,
		Deliver: func(ctx context.Context, el *stanza.Element) {
			if !router.RouteRemote(ctx, el) {
				n.refuseRemote(ctx, el)
			}
		},
		Availability:   n.remoteAvailability,
		MaxStanzaBytes: int64(cfg.MaxStanzaBytes),
		StanzaLimits:   stanzaLimits(cfg),
		Timeout:        cfg.S2STimeout,
		StanzaRate:     float64(cfg.S2SStanzaRate),
		StanzaBurst:    2 * cfg.S2SStanzaRate,
		AuthTimeout:    cfg.AuthTimeout,
		Logger:         n.log.With("service", "s2s"),
	})
	if err != nil {
		return err
	}
	n.s2s = srv
	n.closers = append(n.closers, srv.Close)
	reg.MustRegister(srv.Collectors()...)
	return nil
}

// startS2S opens the federation listeners.
func (n *node) startS2S() error {
	if n.s2s == nil {
		return nil
	}
	if err := n.s2s.Start(); err != nil {
		return err
	}
	n.log.Info("federation is listening", "s2s", addrString(n.s2s.Addrs()))
	return nil
}

// refuseRemote answers a stanza from another server for a service of
// ours that takes none from other servers (every built-in service takes
// some now; this guards any that would not): requests, messages and
// available presence get service-unavailable.
func (n *node) refuseRemote(ctx context.Context, el *stanza.Element) {
	switch typ := el.Type(); {
	case typ == "error", el.Local == "iq" && typ == "result", el.Local == "presence" && typ != "":
		return
	}
	n.sendRemote(ctx, stanza.ErrorReply(el, stanza.ServiceUnavailable, ""))
}

// remoteAvailability is told when this node gains its first stream with
// another server or loses its last: the presence seen from it is checked
// again, and so are the occupants it had in the rooms.
func (n *node) remoteAvailability(domain string, up bool) {
	n.chat.RemoteAvailability(domain, up)
	if !up {
		n.conference.CheckRemoteDomain(domain)
	}
}

// hosted reports whether this server serves domain: its own, or one of
// its services'.
func (n *node) hosted(domain string) bool {
	return domain == n.cfg.Domain || n.router != nil && n.router.Has(domain)
}

// federationSend is how a service reaches users of other servers: nil
// when federation is off.
func (n *node) federationSend() func(el *stanza.Element) error {
	if n.cfg.S2SAddr == "" {
		return nil
	}
	return func(el *stanza.Element) error { return n.s2s.Send(context.Background(), el) }
}

// remoteToRoom takes a stanza from a user of another server for
// conference.DOMAIN to the node hosting its room; when that node cannot
// be reached, the sender is told so.
func (n *node) remoteToRoom(ctx context.Context, el *stanza.Element) {
	if err := n.link.RemoteRoom(ctx, el); err != nil {
		if t := el.Type(); t != "error" && t != "result" {
			n.sendRemote(ctx, stanza.ErrorReply(el, stanza.RecipientUnavailable, "the server hosting this room cannot be reached; try again shortly"))
		}
	}
}

// remotePeer is the sender of a stanza from another server, as a service
// of ours sees it: what it is sent goes back through federation.
func (n *node) remotePeer(el *stanza.Element) remotePeer {
	j, _ := jid.Parse(el.From())
	return remotePeer{jid: j, n: n}
}

type remotePeer struct {
	jid jid.JID
	n   *node
}

func (p remotePeer) JID() jid.JID { return p.jid }

func (p remotePeer) Send(el *stanza.Element) error {
	p.n.sendRemote(context.Background(), el)
	return nil
}

func (n *node) sendRemote(ctx context.Context, el *stanza.Element) {
	if err := n.s2s.Send(ctx, el); err != nil {
		n.log.Debug("s2s: answer not sent", "to", el.To(), "err", err)
	}
}
