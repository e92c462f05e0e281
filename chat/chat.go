// Package chat is poosms's instant-messaging core (RFC 6121): rosters,
// presence subscriptions and broadcast, message routing between local
// users, the offline queue (XEP-0160) and service discovery on the server
// and on accounts. It sees clients only through the Session interface and
// never touches a socket.
package chat

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Namespaces chat implements or reads.
const (
	NSRoster     = "jabber:iq:roster"
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	NSPing       = "urn:xmpp:ping"
	NSVersion    = "jabber:iq:version"
	NSChatStates = "http://jabber.org/protocol/chatstates"
	// FeatureOffline is the XEP-0160 disco feature for offline storage.
	FeatureOffline = "msgoffline"
)

// Store is what chat needs from persistence. *store.DB implements it.
type Store interface {
	AccountExists(ctx context.Context, username string) (bool, error)
	RosterItems(ctx context.Context, owner string) ([]store.RosterItem, error)
	RosterItem(ctx context.Context, owner, contact string) (store.RosterItem, error)
	PutRosterItem(ctx context.Context, owner string, it store.RosterItem) error
	PutRosterItemWithin(ctx context.Context, owner string, it store.RosterItem, limit int) error
	DeleteRosterItem(ctx context.Context, owner, contact string) error
	PushOfflineWithin(ctx context.Context, owner, sender string, stamp time.Time, stanza []byte, limit, perSender int) error
	OfflineMessages(ctx context.Context, owner string) ([]store.OfflineMessage, error)
	DeleteOffline(ctx context.Context, owner string, upToID int64) error
}

// Config configures the chat service.
type Config struct {
	// Domain is the XMPP domain served, e.g. "localhost". Required.
	Domain string
	// OfflineLimit is the most messages kept for one offline user; a message
	// beyond it is refused with an error to its sender. Default 1000.
	OfflineLimit int
	// Limits bound what one user can make the server keep (limits.go).
	Limits Limits
	// Now is the clock used for offline stamps. Default time.Now.
	Now func() time.Time
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Version is the software version answered to XEP-0092 queries.
	// Default "dev".
	Version string
	// ArchiveRetention is how long one-to-one messages stay in the users'
	// archives (XEP-0313); 0 keeps them forever. Older messages are pruned
	// by a goroutine of the service: call Close to stop it.
	ArchiveRetention time.Duration
	// ArchivePruneInterval is how often the archive is pruned when
	// ArchiveRetention is set. Default one hour, or ArchiveRetention/10
	// when that is shorter.
	ArchivePruneInterval time.Duration
	// Federation carries stanzas for other servers' users and services;
	// nil: this server does not federate, and stanzas for other domains
	// are refused with remote-server-not-found.
	Federation Federation
	// RemotePresenceTimeout is how long presence seen from another server
	// waits, once the streams with that server are lost, for a fresh
	// presence to confirm it before it is reported unavailable.
	// Default 45s.
	RemotePresenceTimeout time.Duration
}

// IQHandler answers an IQ addressed to the server. It returns the reply to
// send to the requester; nil means the handler answers by itself.
type IQHandler func(ctx context.Context, sess Session, iq *stanza.Element) *stanza.Element

// Service routes messages, presence and IQs between the local sessions of
// one domain. It is safe for concurrent use; every method runs on the
// caller's goroutine.
type Service struct {
	domain  string
	limit   int
	lim     Limits
	now     func() time.Time
	log     *slog.Logger
	st      Store
	version string

	// mu guards users, features, items and iqs. It is never held during a
	// store call or a Send.
	mu       sync.Mutex
	users    map[string]map[string]*resource // localpart → resourcepart → state
	features []string
	items    []discoItem
	iqs      map[iqKey]IQHandler

	// rosterLocks serialise read-modify-write of one owner's roster items;
	// offlineLocks serialise draining one owner's offline queue. Neither is
	// ever held together with another lock of the service.
	rosterLocks  [64]sync.Mutex
	offlineLocks [64]sync.Mutex
	pepLocks     [16]sync.Mutex // serialise changes to one owner's PEP nodes

	pushSeq atomic.Uint64

	// Extensions, switched on by what the store supports (ext.go).
	accountIQs map[iqKey]accountHandler
	archive    ArchiveStore
	blockSt    BlockStore
	pep        PEPStore
	vcardSt    VCardStore
	privSt     PrivateStore
	caps       *capsCache

	// blockMu guards blocks, the blocklists of users with sessions
	// (localpart → normalised JIDs); blockActive counts the non-empty ones
	// so that the send filter costs nothing while nobody blocks anyone.
	blockMu     sync.Mutex
	blocks      map[string][]string
	blockActive atomic.Int64

	pub Publisher // nil: nothing to publish (SetPublisher)

	fed   Federation     // nil: no federation
	watch *presenceWatch // presence of other servers' users shown here
	// remoteNotify: what other servers' clients +notify (federation_pep.go)
	remoteNotify *remoteNotify

	closeOnce sync.Once
	stopPrune context.CancelFunc
	pruneDone chan struct{}
}

type iqKey struct{ space, local string }

type discoItem struct{ jid, name string }

// resource is the state of one bound session: its routing state (what
// other nodes of a cluster mirror, see ResourceState) and what only the
// node serving it keeps.
type resource struct {
	ResourceState
	sess     Session
	directed []string        // addresses that got directed available presence
	capsVer  string          // entity capabilities announced in presence
	features map[string]bool // the session's disco features; nil: unknown
	remote   bool            // served by another node (SetRemote)
	told     ResourceState   // state last published (Publisher)
}

// New returns a chat service for cfg.Domain backed by st.
func New(cfg Config, st Store) (*Service, error) {
	if st == nil {
		return nil, errors.New("chat: nil store")
	}
	if cfg.Domain == "" {
		return nil, errors.New("chat: domain is required")
	}
	d, err := jid.Parse(cfg.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("chat: invalid domain %q", cfg.Domain)
	}
	if cfg.OfflineLimit < 0 {
		return nil, fmt.Errorf("chat: offline limit %d is negative", cfg.OfflineLimit)
	}
	lim, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{
		domain:  d.Domainpart(),
		limit:   cfg.OfflineLimit,
		lim:     lim,
		now:     cfg.Now,
		log:     cfg.Logger,
		st:      st,
		version: cfg.Version,
		users:   make(map[string]map[string]*resource),
		iqs:     make(map[iqKey]IQHandler),
		fed:     cfg.Federation,
	}
	if cfg.RemotePresenceTimeout <= 0 {
		cfg.RemotePresenceTimeout = 45 * time.Second
	}
	s.watch = newPresenceWatch(cfg.RemotePresenceTimeout)
	s.remoteNotify = newRemoteNotify()
	if s.limit == 0 {
		s.limit = 1000
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.version == "" {
		s.version = "dev"
	}
	if cfg.ArchiveRetention < 0 || cfg.ArchivePruneInterval < 0 {
		return nil, errors.New("chat: archive retention and prune interval must not be negative")
	}
	s.setupExtensions(cfg)
	return s, nil
}

// AddFeature adds a feature to the server's disco#info answer.
func (s *Service) AddFeature(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.features {
		if f == ns {
			return
		}
	}
	s.features = append(s.features, ns)
}

// AddItem adds an entry to the server's disco#items answer.
func (s *Service) AddItem(jid, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items = append(s.items, discoItem{jid: jid, name: name})
}

// HandleIQ registers fn for get/set IQs whose payload is the element
// {space}local, addressed to the server, to nobody, or to the sender's own
// bare JID (fn can tell them apart with iq.To()). Built-in payloads (roster,
// disco, ping, version) cannot be overridden.
func (s *Service) HandleIQ(space, local string, fn func(ctx context.Context, sess Session, iq *stanza.Element) *stanza.Element) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.iqs[iqKey{space, local}] = fn
}

// Online returns the available sessions of the user with this bare JID.
func (s *Service) Online(bare jid.JID) []Session {
	if bare.Domainpart() != s.domain {
		return nil
	}
	var out []Session
	for _, t := range s.available(bare.Localpart()) {
		out = append(out, t.sess)
	}
	return out
}

// SessionBound records a newly bound session. It is not available until it
// sends presence. A session bound with the full JID of an existing one
// replaces it; the old one's presence ends as if it had closed. The
// Publisher hears of it first (Bound), and last of its zero state.
func (s *Service) SessionBound(ctx context.Context, sess Session) {
	if s.pub != nil {
		s.pub.Bound(ctx, sess)
	}
	me := sess.JID()
	s.mu.Lock()
	m := s.resourcesLocked(me.Localpart())
	old := m[me.Resourcepart()]
	m[me.Resourcepart()] = &resource{sess: sess}
	var snap resource
	if old != nil && old.sess != sess {
		snap = old.snapshot()
	}
	s.mu.Unlock()
	s.loadBlocklist(ctx, me.Localpart())
	if old != nil && old.sess != sess && !old.remote {
		s.endPresence(ctx, me, snap.Available, snap.directed, nil, nil)
	}
	if s.pub != nil {
		s.pub.SessionChanged(me, ResourceState{})
	}
}

// resourcesLocked returns local's sessions, creating the map. s.mu must
// be held.
func (s *Service) resourcesLocked(local string) map[string]*resource {
	m := s.users[local]
	if m == nil {
		m = make(map[string]*resource)
		s.users[local] = m
	}
	return m
}

// SessionClosed forgets a session whose stream ended and sends unavailable
// presence for it where its presence was seen. It does nothing if another
// session has taken the same full JID since, but tell the Publisher,
// which hears last that the session closed (Closed).
func (s *Service) SessionClosed(ctx context.Context, sess Session) {
	if s.pub != nil {
		defer s.pub.Closed(ctx, sess)
	}
	me := sess.JID()
	s.mu.Lock()
	r, last := s.detachLocked(sess)
	if r == nil {
		s.mu.Unlock()
		return
	}
	snap := r.snapshot()
	s.mu.Unlock()
	if last {
		s.forgetBlocklist(me.Localpart())
		s.watch.forget(me.Localpart())
	}
	s.caps.forget(sess)
	if s.pub != nil {
		s.pub.SessionEnded(me)
	}
	s.endPresence(ctx, me, snap.Available, snap.directed, nil, nil)
}

// detachLocked removes sess from the users map and returns its state, and
// whether it was its user's last session; nil if another session has
// taken its full JID (or it was never there). s.mu must be held.
func (s *Service) detachLocked(sess Session) (r *resource, last bool) {
	me := sess.JID()
	m := s.users[me.Localpart()]
	r = m[me.Resourcepart()]
	if r == nil || r.sess != sess {
		return nil, false
	}
	delete(m, me.Resourcepart())
	if len(m) == 0 {
		delete(s.users, me.Localpart())
		return r, true
	}
	return r, false
}

// snapshot copies r's fields. s.mu must be held.
func (r *resource) snapshot() resource {
	c := *r
	c.directed = append([]string(nil), r.directed...)
	return c
}

// target is a copy of a session's routing state taken under s.mu.
type target struct {
	ResourceState
	sess   Session
	remote bool // served by another node
}

// available returns the available sessions of local.
func (s *Service) available(local string) []target {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []target
	for _, r := range s.users[local] {
		if r.Available {
			out = append(out, target{ResourceState: r.ResourceState, sess: r.sess, remote: r.remote})
		}
	}
	return out
}

// bound returns the session bound to local/res, if any.
func (s *Service) bound(local, res string) Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.users[local][res]; r != nil {
		return r.sess
	}
	return nil
}

// interested returns the sessions of local that requested the roster.
func (s *Service) interested(local string) []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Session
	for _, r := range s.users[local] {
		if r.Interested {
			out = append(out, r.sess)
		}
	}
	return out
}

// update runs fn on the state of sess under s.mu. A session that is not
// (or no longer) in the map gets a detached state, so a late stanza cannot
// bring a closed session back; update then reports false.
func (s *Service) update(sess Session, fn func(r *resource)) bool {
	me := sess.JID()
	s.mu.Lock()
	r := s.users[me.Localpart()][me.Resourcepart()]
	bound := r != nil && r.sess == sess
	if !bound {
		r = &resource{sess: sess}
	}
	fn(r)
	changed := false
	var st ResourceState
	if bound && !r.remote && s.pub != nil {
		st = r.ResourceState
		changed = !st.equal(r.told)
		r.told = st
	}
	s.mu.Unlock()
	if changed {
		s.pub.SessionChanged(me, st)
	}
	return bound
}

// exists reports whether local is an account: it has a session, or the
// store knows it.
func (s *Service) exists(ctx context.Context, local string) (bool, error) {
	s.mu.Lock()
	n := len(s.users[local])
	s.mu.Unlock()
	if n > 0 {
		return true, nil
	}
	ok, err := s.st.AccountExists(ctx, local)
	if err != nil {
		return false, fmt.Errorf("chat: check account %q: %w", local, err)
	}
	return ok, nil
}

func (s *Service) rosterLock(owner string) *sync.Mutex {
	return &s.rosterLocks[hash(owner)%uint32(len(s.rosterLocks))]
}

func (s *Service) offlineLock(owner string) *sync.Mutex {
	return &s.offlineLocks[hash(owner)%uint32(len(s.offlineLocks))]
}

func hash(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// send delivers el to sess, logging a session that is gone. A stanza
// between a user and someone either of them blocked is dropped here
// (XEP-0191) and counts as delivered.
func (s *Service) send(sess Session, el *stanza.Element) bool {
	if s.blockActive.Load() > 0 && s.blockedBetween(sess.JID(), el.From()) {
		s.log.Debug("chat: blocked stanza dropped", "jid", sess.JID().String(), "from", el.From())
		return true
	}
	if err := sess.Send(el); err != nil {
		s.log.Debug("chat: send failed", "jid", sess.JID().String(), "err", err)
		return false
	}
	return true
}

// replyError answers el (sent by sess) with a stanza error, unless el is
// itself an error.
func (s *Service) replyError(sess Session, el *stanza.Element, condition stanza.Condition, text string) {
	if el.IsError() {
		return
	}
	r := stanza.ErrorReply(el, condition, text)
	r.SetAttr("to", sess.JID().String())
	s.sendDirect(sess, r)
}

// isLocal reports whether j is on the served domain.
func (s *Service) isLocal(j jid.JID) bool { return j.Domainpart() == s.domain }

// HandleStanza processes one message, presence or IQ sent by sess. The
// stanza's from is the session's full JID.
func (s *Service) HandleStanza(ctx context.Context, sess Session, el *stanza.Element) {
	// A session's reader has stamped both already (FromIs and ToIs say
	// so without printing the addresses again); other callers have not.
	if me := sess.JID(); !el.FromIs(me) {
		el.SetFrom(me, me.String())
	}
	var to jid.JID
	hasTo := false
	if el.To() != "" {
		j, err := el.ToJID()
		if err != nil {
			el.SetAttr("to", "") // the error comes from the server
			s.replyError(sess, el, stanza.JIDMalformed, "")
			return
		}
		to, hasTo = j, true
		if !el.ToIs(j) {
			el.SetTo(j, j.String())
		}
	}
	switch el.Local {
	case "message":
		s.handleMessage(ctx, sess, el, to, hasTo)
	case "presence":
		s.handlePresence(ctx, sess, el, to, hasTo)
	case "iq":
		s.handleIQ(ctx, sess, el, to, hasTo)
	default:
		s.log.Debug("chat: not a stanza", "name", el.Local)
	}
}
