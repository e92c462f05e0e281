package chat

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// The extensions below are switched on when the Store given to New also
// has the methods they need (*store.DB has them all); a Store without them
// leaves the feature out of disco and answers its requests with
// service-unavailable.

// ArchiveStore keeps one-to-one message history (XEP-0313).
type ArchiveStore interface {
	ArchiveMessages(ctx context.Context, entries []store.ArchiveEntry) error
	QueryArchive(ctx context.Context, owner string, q store.ArchiveQuery) (store.ArchivePage, error)
	PruneArchive(ctx context.Context, cutoff time.Time) (int64, error)
}

// BlockStore keeps blocklists (XEP-0191).
type BlockStore interface {
	BlockList(ctx context.Context, owner string) ([]string, error)
	Block(ctx context.Context, owner string, jids []string) error
	Unblock(ctx context.Context, owner string, jids []string) error
}

// PEPStore keeps personal eventing nodes and items (XEP-0163).
type PEPStore interface {
	PEPNodes(ctx context.Context, owner string) ([]store.PEPNode, error)
	PEPNode(ctx context.Context, owner, node string) (store.PEPNode, error)
	PutPEPNode(ctx context.Context, owner string, n store.PEPNode) error
	CreatePEPNode(ctx context.Context, owner string, n store.PEPNode, maxNodes int) error
	DeletePEPNode(ctx context.Context, owner, node string) error
	PublishPEPItemWithin(ctx context.Context, owner, node string, it store.PEPItem, maxBytes int64) error
	PEPItems(ctx context.Context, owner, node string, ids []string, max int) ([]store.PEPItem, error)
	PEPItemsPage(ctx context.Context, owner, node string, q store.PEPItemQuery) (store.PEPItemPage, error)
	RetractPEPItem(ctx context.Context, owner, node, id string) error
}

// VCardStore keeps vCards (XEP-0054).
type VCardStore interface {
	VCard(ctx context.Context, owner string) ([]byte, error)
	SetVCard(ctx context.Context, owner string, vcard []byte) error
}

// PrivateStore keeps private XML (XEP-0049).
type PrivateStore interface {
	PrivateXML(ctx context.Context, owner, ns string) ([]byte, error)
	SetPrivateXML(ctx context.Context, owner, ns string, payload []byte) error
	SetPrivateXMLWithin(ctx context.Context, owner, ns string, payload []byte, maxBytes int64) error
}

// The real database implements every extension store.
var (
	_ ArchiveStore = (*store.DB)(nil)
	_ BlockStore   = (*store.DB)(nil)
	_ PEPStore     = (*store.DB)(nil)
	_ VCardStore   = (*store.DB)(nil)
	_ PrivateStore = (*store.DB)(nil)
)

// Namespaces of the extensions.
const (
	NSMAM          = "urn:xmpp:mam:2"
	NSMAMExtended  = "urn:xmpp:mam:2#extended"
	NSRSM          = "http://jabber.org/protocol/rsm"
	NSForward      = "urn:xmpp:forward:0"
	NSSID          = "urn:xmpp:sid:0"
	NSCarbons      = "urn:xmpp:carbons:2"
	NSHints        = "urn:xmpp:hints"
	NSBlocking     = "urn:xmpp:blocking"
	NSBlockingErrs = "urn:xmpp:blocking:errors"
	NSDataForms    = "jabber:x:data"
	NSPubSub       = "http://jabber.org/protocol/pubsub"
	NSPubSubEvent  = "http://jabber.org/protocol/pubsub#event"
	NSPubSubOwner  = "http://jabber.org/protocol/pubsub#owner"
	NSPubSubErrors = "http://jabber.org/protocol/pubsub#errors"
	NSCaps         = "http://jabber.org/protocol/caps"
	NSVCard        = "vcard-temp"
	NSPrivate      = "jabber:iq:private"
)

// accountHandler answers an IQ get/set addressed to a local user's bare
// JID, sent by that user (self) or by another local user.
type accountHandler func(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID, self bool)

// setupExtensions switches on what the store supports. It runs in New.
func (s *Service) setupExtensions(cfg Config) {
	s.accountIQs = make(map[iqKey]accountHandler)
	s.caps = newCapsCache()

	s.addOwn(NSCarbons, "enable", s.carbonsIQ)
	s.addOwn(NSCarbons, "disable", s.carbonsIQ)
	s.AddFeature(NSCarbons)

	if bs, ok := s.st.(BlockStore); ok {
		s.blockSt = bs
		s.blocks = make(map[string][]string)
		for _, l := range []string{"blocklist", "block", "unblock"} {
			s.addOwn(NSBlocking, l, s.blockingIQ)
		}
		s.AddFeature(NSBlocking)
	}
	if vs, ok := s.st.(VCardStore); ok {
		s.vcardSt = vs
		s.accountIQs[iqKey{NSVCard, "vCard"}] = s.vcardIQ
		s.AddFeature(NSVCard)
	}
	if ps, ok := s.st.(PrivateStore); ok {
		s.privSt = ps
		s.addOwn(NSPrivate, "query", s.privateIQ)
		s.AddFeature(NSPrivate)
	}
	if ps, ok := s.st.(PEPStore); ok {
		s.pep = ps
		s.accountIQs[iqKey{NSPubSub, "pubsub"}] = s.pubsubIQ
		s.accountIQs[iqKey{NSPubSubOwner, "pubsub"}] = s.pubsubOwnerIQ
	}
	if as, ok := s.st.(ArchiveStore); ok {
		s.archive = as
		s.accountIQs[iqKey{NSMAM, "query"}] = s.mamQueryIQ
		s.accountIQs[iqKey{NSMAM, "prefs"}] = s.mamPrefsIQ
		if cfg.ArchiveRetention > 0 {
			s.startPruning(cfg.ArchiveRetention, cfg.ArchivePruneInterval)
		}
	}
}

// addOwn registers an accountHandler for requests a user sends about
// itself: to its bare JID, to nobody or to the server.
func (s *Service) addOwn(space, local string, fn accountHandler) {
	s.iqs[iqKey{space, local}] = func(ctx context.Context, sess Session, iq *stanza.Element) *stanza.Element {
		fn(ctx, sess, iq, payload(iq), sess.JID().Bare(), true)
		return nil
	}
}

// accountInfo is the account's disco#info (XEP-0030 on a bare JID):
// its identities and features, given what is switched on.
func (s *Service) accountInfo() *stanza.Element {
	info := stanza.New(NSDiscoInfo, "query").Append(
		stanza.New(NSDiscoInfo, "identity").SetAttr("category", "account").SetAttr("type", "registered"),
	)
	if s.pep != nil {
		info.Append(stanza.New(NSDiscoInfo, "identity").SetAttr("category", "pubsub").SetAttr("type", "pep"))
	}
	features := []string{NSDiscoInfo, NSDiscoItems}
	if s.archive != nil {
		features = append(features, NSMAM, NSMAMExtended, NSSID)
	}
	if s.pep != nil {
		for _, f := range pepFeatures {
			features = append(features, NSPubSub+"#"+f)
		}
	}
	if s.bookmarksCompat() {
		features = append(features, FeatureBookmarksCompat)
	}
	for _, f := range features {
		info.Append(stanza.New(NSDiscoInfo, "feature").SetAttr("var", f))
	}
	return info
}

// Close stops the service's background work (archive pruning, the
// presence watch's timers). It is safe to call more than once.
func (s *Service) Close() {
	s.closeOnce.Do(func() {
		s.watch.close()
		if s.stopPrune != nil {
			s.stopPrune()
			<-s.pruneDone
		}
	})
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns a random identifier of 16 characters (80 bits).
func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// jidParts splits a normalised JID string into its parts. Domainparts and
// localparts hold no '/', and localparts no '@'.
func jidParts(s string) (local, domain, res string) {
	rest := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		rest, res = s[:i], s[i+1:]
	}
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		return rest[:i], rest[i+1:], res
	}
	return "", rest, res
}

// sendDirect delivers el to sess without the blocking filter: for the
// server's own answers to a user's stanza.
func (s *Service) sendDirect(sess Session, el *stanza.Element) bool {
	if err := sess.Send(el); err != nil {
		s.log.Debug("chat: send failed", "jid", sess.JID().String(), "err", err)
		return false
	}
	return true
}
