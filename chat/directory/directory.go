// Package directory is poosms's people directory on directory.DOMAIN:
// users who opt in are listed with a nickname, a country, the languages
// they speak and their interests, and anyone on the server can find them
// by those through Jabber Search (XEP-0055). Nobody is listed without
// opting in; a user lists, edits and removes their own listing with the
// registration protocol (XEP-0077) addressed to the directory.
package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat/component"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Namespaces the directory implements or reads.
const (
	NSSearch     = "jabber:iq:search"
	NSRegister   = "jabber:iq:register"
	NSData       = "jabber:x:data"
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	NSPing       = "urn:xmpp:ping"
)

// Limits on a listing.
const (
	MaxNickRunes     = 64
	MaxInterestRunes = 64
	MaxLanguages     = 10
	MaxInterests     = 20
)

// Store is what the directory needs from persistence. *store.DB
// implements it.
type Store interface {
	DirectoryEntry(ctx context.Context, username string) (store.DirectoryEntry, error)
	PutDirectoryEntry(ctx context.Context, e store.DirectoryEntry) error
	DeleteDirectoryEntry(ctx context.Context, username string) error
	SearchDirectory(ctx context.Context, q store.DirectoryQuery) ([]store.DirectoryEntry, error)
}

var _ Store = (*store.DB)(nil)

// Session is one bound client stream. chat.Session and *signaling.Session
// satisfy it.
type Session interface {
	// JID is the session's full JID.
	JID() jid.JID
	// Send queues a stanza for the client without blocking.
	Send(el *stanza.Element) error
}

// Config configures the directory.
type Config struct {
	// Domain is the directory's domain, e.g. "directory.localhost". Required.
	Domain string
	// ServerDomain is the server's own domain, e.g. "localhost". Only its
	// users may search or be listed. Required.
	ServerDomain string
	// MaxResults is the most listings one search returns. Default 50.
	MaxResults int
	// Now is the clock stamping listings. Default time.Now.
	Now func() time.Time
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
}

// Service answers searches and listing changes on the directory's domain.
// It is safe for concurrent use, keeps no state of its own besides its
// configuration, and starts no goroutine.
type Service struct {
	domain string
	server string
	max    int
	now    func() time.Time
	log    *slog.Logger
	st     Store
}

// New returns the directory for cfg.Domain backed by st.
func New(cfg Config, st Store) (*Service, error) {
	if st == nil {
		return nil, errors.New("directory: nil store")
	}
	d, err := jid.Parse(cfg.Domain)
	if cfg.Domain == "" || err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("directory: invalid domain %q", cfg.Domain)
	}
	sd, err := jid.Parse(cfg.ServerDomain)
	if cfg.ServerDomain == "" || err != nil || sd.Localpart() != "" || sd.Resourcepart() != "" {
		return nil, fmt.Errorf("directory: invalid server domain %q", cfg.ServerDomain)
	}
	if cfg.MaxResults < 0 {
		return nil, fmt.Errorf("directory: max results %d is negative", cfg.MaxResults)
	}
	s := &Service{
		domain: d.Domainpart(),
		server: sd.Domainpart(),
		max:    cfg.MaxResults,
		now:    cfg.Now,
		log:    cfg.Logger,
		st:     st,
	}
	if s.max == 0 {
		s.max = 50
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// Domain is the directory's domain.
func (s *Service) Domain() string { return s.domain }

// HandleStanza answers one stanza sess sent to the directory's domain.
// Presence is ignored; messages are refused.
func (s *Service) HandleStanza(ctx context.Context, sess Session, el *stanza.Element) {
	el.SetAttr("from", sess.JID().String())
	typ := el.Type()
	q, reply := component.Request(el, sess.JID(), s.domain, s.server, component.Refusals{
		Message:  "the directory takes searches, not messages",
		Stranger: "the directory serves this server's users only",
	})
	if reply != nil {
		s.reply(sess, reply)
	}
	if q == nil {
		return
	}
	get := typ == "get"
	var r *stanza.Element
	switch {
	case q.Space == NSDiscoInfo && q.Local == "query" && get:
		r = s.discoInfo(el, q)
	case q.Space == NSDiscoItems && q.Local == "query" && get:
		if q.Attr("node") != "" {
			r = stanza.ErrorReply(el, stanza.ItemNotFound, "")
		} else {
			r = stanza.Result(el, stanza.New(NSDiscoItems, "query"))
		}
	case q.Space == NSPing && q.Local == "ping" && get:
		r = stanza.Result(el)
	case q.Space == NSSearch && q.Local == "query" && get:
		r = stanza.Result(el, searchForm())
	case q.Space == NSSearch && q.Local == "query":
		r = s.search(ctx, el, q)
	case q.Space == NSRegister && q.Local == "query" && get:
		r = s.listingForm(ctx, sess, el)
	case q.Space == NSRegister && q.Local == "query":
		r = s.changeListing(ctx, sess, el, q)
	case (q.Space == NSDiscoInfo || q.Space == NSDiscoItems || q.Space == NSPing) && !get:
		r = stanza.ErrorReply(el, stanza.BadRequest, "")
	default:
		r = stanza.ErrorReply(el, stanza.ServiceUnavailable, "")
	}
	s.reply(sess, r)
}

// discoInfo is the directory's disco#info (XEP-0030): exactly what it
// implements.
func (s *Service) discoInfo(iq, q *stanza.Element) *stanza.Element {
	if q.Attr("node") != "" {
		return stanza.ErrorReply(iq, stanza.ItemNotFound, "")
	}
	info := stanza.New(NSDiscoInfo, "query")
	info.Append(stanza.New(NSDiscoInfo, "identity").
		SetAttr("category", "directory").
		SetAttr("type", "user").
		SetAttr("name", "People directory"))
	for _, f := range []string{NSDiscoInfo, NSDiscoItems, NSRegister, NSSearch, NSPing} {
		info.Append(stanza.New(NSDiscoInfo, "feature").SetAttr("var", f))
	}
	return stanza.Result(iq, info)
}

func (s *Service) reply(sess Session, el *stanza.Element) {
	if err := sess.Send(el); err != nil {
		s.log.Debug("directory: reply not sent", "jid", sess.JID().String(), "err", err)
	}
}

// internalError logs err and returns the error reply to iq.
func (s *Service) internalError(sess Session, iq *stanza.Element, op string, err error) *stanza.Element {
	s.log.Error("directory: "+op, "jid", sess.JID().String(), "err", err)
	return stanza.ErrorReply(iq, stanza.InternalServerError, "")
}
