package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

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
func (n *node) newS2S(router *signaling.Router, tlsConfig *tls.Config) error {
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
		Availability:   n.chat.RemoteAvailability,
		MaxStanzaBytes: int64(cfg.MaxStanzaBytes),
		StanzaLimits:   stanzaLimits(cfg),
		Timeout:        cfg.S2STimeout,
		AuthTimeout:    cfg.AuthTimeout,
		Logger:         n.log.With("service", "s2s"),
	})
	if err != nil {
		return err
	}
	n.s2s = srv
	n.closers = append(n.closers, srv.Close)
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
// ours that takes none from other servers: requests, messages and
// available presence (a room join) get service-unavailable.
func (n *node) refuseRemote(ctx context.Context, el *stanza.Element) {
	switch typ := el.Type(); {
	case typ == "error", el.Local == "iq" && typ == "result", el.Local == "presence" && typ != "":
		return
	}
	if err := n.s2s.Send(ctx, stanza.ErrorReply(el, "service-unavailable", "")); err != nil {
		n.log.Debug("s2s: refusal not sent", "to", el.From(), "err", err)
	}
}
