// Package muc is poosms's group-chat service (XEP-0045) on
// conference.DOMAIN: rooms with occupants, roles and affiliations, room
// configuration, history on join and the room archive (XEP-0313). A room is
// also where a conference (voice, video) happens: MayConference tells the
// conference service who may take part (the room's occupants) and how the
// room shows them.
package muc

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Namespaces the service implements or reads.
const (
	NSMUC        = "http://jabber.org/protocol/muc"
	NSUser       = NSMUC + "#user"
	NSAdmin      = NSMUC + "#admin"
	NSOwner      = NSMUC + "#owner"
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	NSData       = "jabber:x:data"
	NSMAM        = "urn:xmpp:mam:2"
	NSRSM        = "http://jabber.org/protocol/rsm"
	NSForward    = "urn:xmpp:forward:0"
	NSStanzaID   = "urn:xmpp:sid:0"
	NSPing       = "urn:xmpp:ping"
	// NSSelfPing says the room answers pings to an occupant's own
	// nickname (XEP-0410); NSStableID that a groupchat message keeps the
	// id its sender gave it.
	NSSelfPing = NSMUC + "#self-ping-optimization"
	NSStableID = NSMUC + "#stable_id"
	// NSConference is the conference (SFU) namespace; the room advertises
	// it, the conference service answers it.
	NSConference = "urn:poosms:conference:0"
)

// Store is what the room service needs from persistence. *store.DB
// implements it.
type Store interface {
	Rooms(ctx context.Context) ([]store.Room, error)
	Room(ctx context.Context, name string) (store.Room, error)
	PutRoom(ctx context.Context, r store.Room) error
	DeleteRoom(ctx context.Context, name string) error
	DeleteRoomArchive(ctx context.Context, name string) error
	RoomAffiliations(ctx context.Context, name string) ([]store.RoomAffiliation, error)
	SetRoomAffiliation(ctx context.Context, name string, a store.RoomAffiliation) error
	AppendRoomMessage(ctx context.Context, m store.RoomMessage) error
	RoomMessages(ctx context.Context, q store.RoomQuery) (store.RoomPage, error)
	PruneRoomMessages(ctx context.Context, before time.Time) (int64, error)
}

var _ Store = (*store.DB)(nil)

// Config configures the room service.
type Config struct {
	// Domain is the service's domain, e.g. "conference.localhost". Required.
	Domain string
	// ServerDomain is the server's own domain, e.g. "localhost": its
	// users create rooms and, with SendRemote, users of other servers
	// enter them. Required.
	ServerDomain string
	// HistoryOnJoin is the most archived messages sent to an occupant on
	// joining (a client's <history/> may ask for fewer). Default 20.
	HistoryOnJoin int
	// HistoryBytes bounds the same history in bytes: the newest messages
	// that fit are sent. Joining sends history and presence at once, and a
	// session's write queue is bounded in bytes too. Default 512 KiB.
	HistoryBytes int
	// Retention is how long room messages are archived; 0 keeps them
	// forever. Older messages are pruned as new ones arrive.
	Retention time.Duration
	// NewRoomsPerHour is how many rooms one user may create within an
	// hour on this node; entering a room that does not exist yet past it
	// is refused with resource-constraint. Default 30.
	NewRoomsPerHour int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Deliver routes a stanza the service originates to an address that
	// is not an occupant (mediated invitations, declines). Nil drops them.
	Deliver func(ctx context.Context, el *stanza.Element)
	// AccessChanged runs after an owner or admin changed a room's
	// affiliations, roles or configuration, and after an occupant left
	// the room or changed its nickname, so the room's call can drop
	// whoever may no longer be in it and show the others as the room
	// does. May be nil.
	AccessChanged func(ctx context.Context, room jid.JID)
	// SendRemote carries the rooms' stanzas to their occupants of other
	// servers (federation); nil: only local users are served, and
	// HandleRemote refuses everything.
	SendRemote func(el *stanza.Element) error
}

// DiscoItem is a public room as listed in service discovery.
type DiscoItem struct {
	JID  string
	Name string
}

// DeniedError says why a user may not do something in a room; Condition
// is the XMPP stanza error condition to answer with.
type DeniedError struct {
	Condition string
	Text      string
}

func (e *DeniedError) Error() string { return "muc: " + e.Condition + ": " + e.Text }

// pruneEvery is the least time between two prunes of the archive.
const pruneEvery = time.Minute

// Service is the group-chat service. It is safe for concurrent use; every
// method runs on the caller's goroutine and it starts none.
type Service struct {
	domain     string
	server     string
	history    int
	histBytes  int
	retention  time.Duration
	now        func() time.Time
	log        *slog.Logger
	deliver    func(ctx context.Context, el *stanza.Element)
	access     func(ctx context.Context, room jid.JID)
	federation func(el *stanza.Element) error
	st         Store

	// mu guards everything below and every room's state. It is never held
	// during a store call or a Send.
	mu        sync.Mutex
	rooms     map[string]*room
	joined    map[Session]map[string]bool // session → names of the rooms it is in
	lastPrune time.Time
	created   *creations
	// outbox holds deliveries in the order they were decided under mu;
	// whichever caller finds no one draining it sends them, so every
	// occupant sees a room's stanzas in one order without mu being held
	// during a Send.
	outbox   []delivery
	draining bool
	// relayed maps the ids of IQs relayed between occupants to their
	// requesters; relayOrder is their age order, for the bound.
	relayed    map[string]relayed
	relayOrder []string
	// removed holds the bare JIDs of accounts deleted in the last
	// removalGrace, with when (AccountRemoved).
	removed map[string]time.Time
	// remotes are the sessions of other servers' users in rooms, by full
	// JID (see track).
	remotes map[string]*remoteSession
}

// New returns the room service for cfg.Domain, with the persistent rooms
// found in st.
func New(cfg Config, st Store) (*Service, error) {
	if st == nil {
		return nil, errors.New("muc: nil store")
	}
	d, err := jid.Parse(cfg.Domain)
	if cfg.Domain == "" || err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("muc: invalid domain %q", cfg.Domain)
	}
	sd, err := jid.Parse(cfg.ServerDomain)
	if cfg.ServerDomain == "" || err != nil || sd.Localpart() != "" || sd.Resourcepart() != "" {
		return nil, fmt.Errorf("muc: invalid server domain %q", cfg.ServerDomain)
	}
	if cfg.HistoryOnJoin < 0 {
		return nil, fmt.Errorf("muc: history on join %d is negative", cfg.HistoryOnJoin)
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("muc: retention %v is negative", cfg.Retention)
	}
	if cfg.NewRoomsPerHour < 0 {
		return nil, fmt.Errorf("muc: rooms per hour %d is negative", cfg.NewRoomsPerHour)
	}
	if cfg.NewRoomsPerHour == 0 {
		cfg.NewRoomsPerHour = DefaultNewRoomsPerHour
	}
	s := &Service{
		domain:     d.Domainpart(),
		server:     sd.Domainpart(),
		history:    cfg.HistoryOnJoin,
		histBytes:  cfg.HistoryBytes,
		retention:  cfg.Retention,
		now:        cfg.Now,
		log:        cfg.Logger,
		deliver:    cfg.Deliver,
		access:     cfg.AccessChanged,
		st:         st,
		rooms:      make(map[string]*room),
		joined:     make(map[Session]map[string]bool),
		relayed:    make(map[string]relayed),
		removed:    make(map[string]time.Time),
		created:    newCreations(cfg.NewRoomsPerHour),
		federation: cfg.SendRemote,
		remotes:    make(map[string]*remoteSession),
	}
	if s.history == 0 {
		s.history = 20
	}
	if s.histBytes <= 0 {
		s.histBytes = 512 << 10
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.load(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the persistent rooms with their affiliations and recent
// history.
func (s *Service) load(ctx context.Context) error {
	stored, err := s.st.Rooms(ctx)
	if err != nil {
		return fmt.Errorf("muc: load rooms: %w", err)
	}
	for _, sr := range stored {
		r, err := s.loadRoom(ctx, sr)
		if err != nil {
			return err
		}
		if r != nil {
			s.rooms[r.name] = r
		}
	}
	return nil
}

// loadRoom reads one stored room with its affiliations and recent
// history. An unreadable configuration is logged and gives a nil room.
func (s *Service) loadRoom(ctx context.Context, sr store.Room) (*room, error) {
	r, err := s.roomFromStore(sr)
	if err != nil {
		s.log.Error("muc: unreadable room configuration; room skipped", "room", sr.Name, "err", err)
		return nil, nil
	}
	affs, err := s.st.RoomAffiliations(ctx, sr.Name)
	if err != nil {
		return nil, fmt.Errorf("muc: load room %q: %w", sr.Name, err)
	}
	for _, a := range affs {
		if aff, ok := parseAffiliation(a.Affiliation); ok && aff != affNone {
			r.affs[a.JID] = affEntry{aff: aff, reason: a.Reason, nick: a.Nick}
		}
	}
	page, err := s.st.RoomMessages(ctx, store.RoomQuery{Room: sr.Name, Last: true, Max: s.history})
	if err != nil {
		return nil, fmt.Errorf("muc: load room %q history: %w", sr.Name, err)
	}
	for _, m := range page.Messages {
		el, err := stanza.Parse(m.Stanza)
		if err != nil {
			continue
		}
		r.remember(histEntry{stamp: m.Stamp, el: el, size: len(m.Stanza)}, s.history)
	}
	return r, nil
}

// Items returns the public rooms, for the server's disco#items.
func (s *Service) Items() []DiscoItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DiscoItem
	for _, r := range s.sortedRooms() {
		if r.cfg.Public && !r.locked {
			out = append(out, DiscoItem{JID: r.jid.String(), Name: r.title()})
		}
	}
	return out
}

// MayConference reports whether the session sess may take part in the
// conference of room: nil and its occupant JID (room@service/nick, by
// which the call shows it) if so, a *DeniedError if not. The session must
// be an occupant of the room (so it gave the password of a protected
// room), unless the room lets others call (poosms#conference_nonoccupants,
// and then "" is its occupant JID); even then, a password-protected room
// admits only its occupants and its admins and owners.
func (s *Service) MayConference(_ context.Context, room jid.JID, sess Session) (string, error) {
	bare := sess.JID().Bare()
	remote := isRemote(sess)
	if bare.Domainpart() != s.server && !remote {
		return "", &DeniedError{Condition: "forbidden", Text: "only local users take part in conferences"}
	}
	if room.Domainpart() != s.domain || room.Localpart() == "" {
		return "", &DeniedError{Condition: "item-not-found", Text: "no such room"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room.Localpart()]
	if r == nil {
		return "", &DeniedError{Condition: "not-acceptable", Text: "enter the room before joining its call"}
	}
	aff := r.affiliation(bare)
	switch {
	case aff == affOutcast:
		return "", &DeniedError{Condition: "forbidden", Text: "you are banned from this room"}
	case r.cfg.MembersOnly && aff < affMember:
		return "", &DeniedError{Condition: "registration-required", Text: "this room is for members only"}
	case r.locked && aff != affOwner:
		return "", &DeniedError{Condition: "item-not-found", Text: "the room is not configured yet"}
	}
	o := r.occupantOf(sess)
	switch {
	case o != nil:
	case remote:
		// A user of another server calls as an occupant, always.
		return "", &DeniedError{Condition: "not-acceptable", Text: "enter the room before joining its call"}
	case r.cfg.PasswordProtected && aff < affAdmin:
		return "", &DeniedError{Condition: "not-authorized", Text: "this room has a password: enter the room with it before joining its call"}
	case !r.cfg.ConferenceNonOccupants:
		return "", &DeniedError{Condition: "not-acceptable", Text: "enter the room before joining its call"}
	}
	switch r.cfg.Conference {
	case confMembers:
		if aff < affMember {
			return "", &DeniedError{Condition: "forbidden", Text: "only members may take part in this room's conference"}
		}
	case confModerators:
		if aff < affAdmin && !slices.ContainsFunc(r.occupantsOf(bare), func(o *occupant) bool { return o.role == roleModerator }) {
			return "", &DeniedError{Condition: "forbidden", Text: "only moderators may take part in this room's conference"}
		}
	}
	if o == nil {
		return "", nil
	}
	return r.occupantJID(o.nick), nil
}

// SeesRealJIDs reports whether the session sess may see the real JIDs of
// those in the conference of room, as the room's presence would show
// them: in a non-anonymous room everyone, in a semi-anonymous one its
// moderators. A caller who is not in the room counts with the role it
// would have on entering.
func (s *Service) SeesRealJIDs(room jid.JID, sess Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room.Localpart()]
	if r == nil || room.Domainpart() != s.domain {
		return false
	}
	if o := r.occupantOf(sess); o != nil {
		return r.seesJIDs(o.role)
	}
	return r.seesJIDs(r.defaultRole(r.affiliation(sess.JID().Bare())))
}

// SessionClosed makes sess leave every room it is in.
func (s *Service) SessionClosed(ctx context.Context, sess Session) {
	s.mu.Lock()
	var fx effects
	// Rooms in name order, so everyone sees the departures in one order.
	for _, name := range slices.Sorted(maps.Keys(s.joined[sess])) {
		r := s.rooms[name]
		if r == nil {
			continue
		}
		if o := r.occupantOf(sess); o != nil {
			s.leave(&fx, r, o, sess, nil, nil, "")
		}
	}
	delete(s.joined, sess)
	s.unlockAndRun(ctx, &fx)
}

// HandleStanza processes one stanza sess sent to the service's domain or
// to a room or occupant on it.
func (s *Service) HandleStanza(ctx context.Context, sess Session, el *stanza.Element) {
	el.SetAttr("from", sess.JID().String())
	to, err := el.ToJID()
	if err != nil || to.Domainpart() != s.domain {
		s.replyError(sess, el, stanza.JIDMalformed, "")
		return
	}
	if sess.JID().Domainpart() != s.server {
		s.replyError(sess, el, stanza.NotAllowed, "only local users are served")
		return
	}
	s.dispatch(ctx, sess, el, to)
}

// dispatch hands a stanza of sess to its handler.
func (s *Service) dispatch(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	switch el.Local {
	case "presence":
		s.handlePresence(ctx, sess, el, to)
	case "message":
		s.handleMessage(ctx, sess, el, to)
	case "iq":
		s.handleIQ(ctx, sess, el, to)
	}
}

// delivery is one stanza for one session: el, or a stanza shared with
// other sessions (see fanout.go).
type delivery struct {
	to Session
	el *stanza.Element
	sh *shared
}

// effects collects what a change decided under s.mu must do once the lock
// is released: store writes first, then sends.
type effects struct {
	out      []delivery
	external []*stanza.Element // for cfg.Deliver
	drop     string            // room whose stored record goes
	dropLog  string            // room whose archive goes
	save     *store.Room
	affRoom  string
	affs     []store.RoomAffiliation
	archive  *store.RoomMessage
	prune    time.Time
}

func (fx *effects) send(to Session, el *stanza.Element) {
	fx.out = append(fx.out, delivery{to: to, el: el})
}

// unlockAndRun queues fx's deliveries in decision order, releases s.mu
// and carries out the rest of fx. s.mu must be held.
func (s *Service) unlockAndRun(ctx context.Context, fx *effects) {
	s.outbox = append(s.outbox, fx.out...)
	fx.out = nil
	s.mu.Unlock()
	s.run(ctx, fx)
}

// drain sends the queued deliveries unless another caller is already
// doing so. s.mu must not be held.
func (s *Service) drain() {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return
	}
	s.draining = true
	for len(s.outbox) > 0 {
		batch := s.outbox
		s.outbox = nil
		s.mu.Unlock()
		for _, d := range batch {
			if err := d.send(); err != nil {
				s.log.Debug("muc: send failed", "jid", d.to.JID().String(), "err", err)
			}
		}
		s.mu.Lock()
	}
	s.draining = false
	s.mu.Unlock()
}

// run carries out fx: store writes first, then the queued sends. s.mu
// must not be held.
func (s *Service) run(ctx context.Context, fx *effects) {
	if fx.drop != "" {
		if err := s.st.DeleteRoom(ctx, fx.drop); err != nil {
			s.log.Error("muc: delete room", "room", fx.drop, "err", err)
		}
	}
	if fx.dropLog != "" {
		if err := s.st.DeleteRoomArchive(ctx, fx.dropLog); err != nil {
			s.log.Error("muc: delete room archive", "room", fx.dropLog, "err", err)
		}
	}
	if fx.save != nil {
		if err := s.st.PutRoom(ctx, *fx.save); err != nil {
			s.log.Error("muc: save room", "room", fx.save.Name, "err", err)
		}
	}
	for _, a := range fx.affs {
		if err := s.st.SetRoomAffiliation(ctx, fx.affRoom, a); err != nil {
			s.log.Error("muc: save affiliation", "room", fx.affRoom, "jid", a.JID, "err", err)
		}
	}
	if fx.archive != nil {
		if err := s.st.AppendRoomMessage(ctx, *fx.archive); err != nil {
			s.log.Error("muc: archive message", "room", fx.archive.Room, "err", err)
		}
	}
	if !fx.prune.IsZero() {
		if n, err := s.st.PruneRoomMessages(ctx, fx.prune); err != nil {
			s.log.Error("muc: prune archive", "err", err)
		} else if n > 0 {
			s.log.Debug("muc: pruned archive", "messages", n)
		}
	}
	s.drain()
	for _, el := range fx.external {
		if s.deliver != nil {
			s.deliver(ctx, el)
		}
	}
}

// replyError answers el (sent by sess) with a stanza error, unless el is
// itself an error.
func (s *Service) replyError(sess Session, el *stanza.Element, condition stanza.Condition, text string) {
	if el.IsError() {
		return
	}
	r := stanza.ErrorReply(el, condition, text)
	r.SetAttr("to", sess.JID().String())
	if err := sess.Send(r); err != nil {
		s.log.Debug("muc: send failed", "jid", sess.JID().String(), "err", err)
	}
}

// errorFx queues an error reply to el in fx.
func errorFx(fx *effects, sess Session, el *stanza.Element, condition stanza.Condition, text string) {
	if el.IsError() {
		return
	}
	r := stanza.ErrorReply(el, condition, text)
	r.SetAttr("to", sess.JID().String())
	fx.send(sess, r)
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns a fresh random identifier for a stanza-id.
func newID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)
}

// delay builds an XEP-0203 delay stamp from the room.
func delay(from string, stamp time.Time) *stanza.Element {
	return stanza.New(stanza.NSDelay, "delay").
		SetAttr("from", from).
		SetAttr("stamp", stamp.UTC().Format("2006-01-02T15:04:05.000000Z"))
}

// Session is one client stream as the room service sees it; chat.Session
// and *signaling.Session satisfy it. Sessions are told apart with ==, so
// an implementation must be comparable (a pointer type).
type Session interface {
	// JID is the session's full JID.
	JID() jid.JID
	// Send queues a stanza for the client without blocking.
	Send(el *stanza.Element) error
}
