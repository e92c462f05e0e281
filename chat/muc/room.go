package muc

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// affiliation is a user's lasting standing in a room, in order of rank.
type affiliation int

const (
	affOutcast affiliation = iota
	affNone
	affMember
	affAdmin
	affOwner
)

var affNames = [...]string{affOutcast: "outcast", affNone: "none", affMember: "member", affAdmin: "admin", affOwner: "owner"}

func (a affiliation) String() string { return affNames[a] }

func parseAffiliation(s string) (affiliation, bool) {
	for i, n := range affNames {
		if n == s {
			return affiliation(i), true
		}
	}
	return 0, false
}

// role is an occupant's standing while in the room, in order of rank.
type role int

const (
	roleNone role = iota
	roleVisitor
	roleParticipant
	roleModerator
)

var roleNames = [...]string{roleNone: "none", roleVisitor: "visitor", roleParticipant: "participant", roleModerator: "moderator"}

func (r role) String() string { return roleNames[r] }

func parseRole(s string) (role, bool) {
	for i, n := range roleNames {
		if n == s {
			return role(i), true
		}
	}
	return 0, false
}

// Who may see occupants' real JIDs (muc#roomconfig_whois).
const (
	whoisModerators = "moderators"
	whoisAnyone     = "anyone"
)

// Who may take part in the room's conference (poosms#conference).
const (
	confAnyone     = "anyone"
	confMembers    = "members"
	confModerators = "moderators"
)

// roomConfig is a room's configuration; persistent rooms store it as JSON.
type roomConfig struct {
	Name              string `json:"name,omitempty"`
	Description       string `json:"description,omitempty"`
	Persistent        bool   `json:"persistent"`
	Public            bool   `json:"public"`
	MembersOnly       bool   `json:"members_only"`
	PasswordProtected bool   `json:"password_protected"`
	Password          string `json:"password,omitempty"`
	MaxUsers          int    `json:"max_users"` // 0: no limit
	Moderated         bool   `json:"moderated"`
	WhoIs             string `json:"whois"`
	ChangeSubject     bool   `json:"change_subject"`
	AllowInvites      bool   `json:"allow_invites"`
	Conference        string `json:"conference"`
	// ConferenceNonOccupants lets users who are not in the room take
	// part in its conference (poosms#conference_nonoccupants).
	ConferenceNonOccupants bool `json:"conference_nonoccupants,omitempty"`
}

// defaultConfig is the configuration of a new room.
func defaultConfig() roomConfig {
	return roomConfig{
		Public:     true,
		MaxUsers:   100,
		WhoIs:      whoisModerators,
		Conference: confAnyone,
	}
}

type affEntry struct {
	aff    affiliation
	reason string
	nick   string
}

// occupant is one nickname in a room: one user, with one or more of the
// user's sessions.
type occupant struct {
	nick     string
	bare     jid.JID
	sessions []Session
	role     role
	status   []*stanza.Element // the presence payload (show, status, caps…), without MUC elements
}

// histEntry is a message kept for history on join.
type histEntry struct {
	stamp time.Time
	el    *stanza.Element // as broadcast, without 'to'
	size  int             // serialised length, for maxchars
}

// room is one room's state, guarded by Service.mu.
type room struct {
	name        string
	jid         jid.JID // bare room JID
	cfg         roomConfig
	created     time.Time
	locked      bool // created, waiting for its owner's configuration
	subject     string
	subjectNick string
	affs        map[string]affEntry  // bare JID → affiliation (not none)
	occupants   map[string]*occupant // nick → occupant
	history     []histEntry
}

func (s *Service) newRoom(name string) *room {
	return &room{
		name:      name,
		jid:       jid.MustParse(name + "@" + s.domain),
		cfg:       defaultConfig(),
		created:   s.now(),
		affs:      make(map[string]affEntry),
		occupants: make(map[string]*occupant),
	}
}

func (s *Service) roomFromStore(sr store.Room) (*room, error) {
	r := s.newRoom(sr.Name)
	r.created = sr.Created
	if err := json.Unmarshal(sr.Config, &r.cfg); err != nil {
		return nil, fmt.Errorf("decode configuration: %w", err)
	}
	r.cfg.Persistent = true
	if r.cfg.WhoIs != whoisAnyone {
		r.cfg.WhoIs = whoisModerators
	}
	switch r.cfg.Conference {
	case confMembers, confModerators:
	default:
		r.cfg.Conference = confAnyone
	}
	r.subject, r.subjectNick = sr.Subject, sr.SubjectNick
	return r, nil
}

// record is r as the store keeps it.
func (r *room) record() *store.Room {
	cfg, _ := json.Marshal(r.cfg)
	return &store.Room{Name: r.name, Config: cfg, Subject: r.subject, SubjectNick: r.subjectNick, Created: r.created}
}

// affRecords lists r's affiliations as the store keeps them.
func (r *room) affRecords() []store.RoomAffiliation {
	var out []store.RoomAffiliation
	for _, k := range sortedKeys(r.affs) {
		a := r.affs[k]
		out = append(out, store.RoomAffiliation{JID: k, Affiliation: a.aff.String(), Reason: a.reason, Nick: a.nick})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// title is the room's human name.
func (r *room) title() string {
	if r.cfg.Name != "" {
		return r.cfg.Name
	}
	return r.name
}

func (r *room) affiliation(bare jid.JID) affiliation {
	if a, ok := r.affs[bare.String()]; ok {
		return a.aff
	}
	return affNone
}

// defaultRole is the role an occupant with aff gets on entering.
func (r *room) defaultRole(aff affiliation) role {
	switch {
	case aff >= affAdmin:
		return roleModerator
	case aff == affMember || !r.cfg.Moderated:
		return roleParticipant
	}
	return roleVisitor
}

// occupantOf returns the occupant sess is, or nil.
func (r *room) occupantOf(sess Session) *occupant {
	for _, o := range r.occupants {
		if slices.Contains(o.sessions, sess) {
			return o
		}
	}
	return nil
}

// occupantsOf returns the occupants of user bare.
func (r *room) occupantsOf(bare jid.JID) []*occupant {
	var out []*occupant
	for _, n := range sortedKeys(r.occupants) {
		if o := r.occupants[n]; o.bare.Equal(bare) {
			out = append(out, o)
		}
	}
	return out
}

// sorted returns the occupants in nickname order.
func (r *room) sorted() []*occupant {
	out := make([]*occupant, 0, len(r.occupants))
	for _, n := range sortedKeys(r.occupants) {
		out = append(out, r.occupants[n])
	}
	return out
}

// occupantJID is room/nick.
func (r *room) occupantJID(nick string) string { return r.jid.String() + "/" + nick }

// remember adds e to the history kept for joins, keeping at most max.
func (r *room) remember(e histEntry, max int) {
	r.history = append(r.history, e)
	if n := len(r.history) - max; n > 0 {
		r.history = slices.Delete(r.history, 0, n)
	}
}

// passwordMatches reports whether given is the room password want, in
// time that depends on neither where they differ nor want's length: both
// are hashed to one size first, then compared in constant time.
func passwordMatches(given, want string) bool {
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// seesJIDs reports whether an occupant with role viewer sees real JIDs.
func (r *room) seesJIDs(viewer role) bool {
	return r.cfg.WhoIs == whoisAnyone || viewer == roleModerator
}

// userX builds <x xmlns='muc#user'> with one item describing o, as seen by
// someone who may (showJID) or may not see real JIDs, and status codes.
func (r *room) userX(o *occupant, showJID bool, codes ...int) (*stanza.Element, *stanza.Element) {
	x := stanza.New(NSUser, "x")
	item := stanza.New(NSUser, "item").
		SetAttr("affiliation", r.affiliation(o.bare).String()).
		SetAttr("role", o.role.String())
	if showJID && len(o.sessions) > 0 {
		item.SetAttr("jid", o.sessions[0].JID().String())
	}
	x.Append(item)
	for _, c := range codes {
		x.Append(statusCode(c))
	}
	return x, item
}

func statusCode(c int) *stanza.Element {
	return stanza.New(NSUser, "status").SetAttr("code", strconv.Itoa(c))
}

// presenceFor builds o's available presence for viewer (a session of
// occupant v, which may be o itself).
func (r *room) presenceFor(o *occupant, v *occupant, to Session, codes ...int) *stanza.Element {
	p := stanza.New(stanza.NSClient, "presence").
		SetAttr("from", r.occupantJID(o.nick)).
		SetAttr("to", to.JID().String())
	for _, c := range o.status {
		p.Append(c.Copy())
	}
	self := o == v
	if self {
		codes = append([]int{110}, codes...)
	}
	x, _ := r.userX(o, self || r.seesJIDs(v.role), codes...)
	return p.Append(x)
}

// broadcastPresence queues o's current presence to every occupant of r.
// selfCodes go to o's own sessions only, codes to everyone.
func (r *room) broadcastPresence(fx *effects, o *occupant, selfCodes []int, codes ...int) {
	r.fanOut(fx, o, func(v *occupant, sess Session) *stanza.Element {
		c := codes
		if v == o {
			c = append(slices.Clone(selfCodes), codes...)
		}
		return r.presenceFor(o, v, sess, c...)
	})
}

// unavailableFor builds o's unavailable presence for viewer v. extra is
// appended to the item (actor, reason) or to x (destroy).
func (r *room) unavailableFor(o, v *occupant, to Session, aff affiliation, itemExtra []*stanza.Element, xExtra []*stanza.Element, nick string, status string, codes ...int) *stanza.Element {
	p := stanza.New(stanza.NSClient, "presence").
		SetAttr("from", r.occupantJID(o.nick)).
		SetAttr("to", to.JID().String()).
		SetType(stanza.UnavailablePresence)
	if status != "" {
		p.Append(stanza.New(stanza.NSClient, "status").SetText(status))
	}
	self := o == v
	if self {
		codes = append([]int{110}, codes...)
	}
	x := stanza.New(NSUser, "x")
	item := stanza.New(NSUser, "item").SetAttr("affiliation", aff.String()).SetAttr("role", o.role.String())
	if nick != "" {
		item.SetAttr("nick", nick)
	}
	if (self || r.seesJIDs(v.role)) && len(o.sessions) > 0 {
		item.SetAttr("jid", o.sessions[0].JID().String())
	}
	for _, e := range itemExtra {
		item.Append(e.Copy())
	}
	x.Append(item)
	for _, c := range codes {
		x.Append(statusCode(c))
	}
	for _, e := range xExtra {
		x.Append(e.Copy())
	}
	return p.Append(x)
}

// sortedRooms returns the rooms in name order. s.mu must be held.
func (s *Service) sortedRooms() []*room {
	out := make([]*room, 0, len(s.rooms))
	for _, n := range sortedKeys(s.rooms) {
		out = append(out, s.rooms[n])
	}
	return out
}

// track records that sess is (in) or is no longer (!in) in room name.
// s.mu must be held.
// A session of another server is kept in s.remotes while it is in a room.
func (s *Service) track(sess Session, name string, in bool) {
	rs, remote := sess.(*remoteSession)
	m := s.joined[sess]
	if in {
		if m == nil {
			m = make(map[string]bool)
			s.joined[sess] = m
		}
		m[name] = true
		if remote {
			s.remotes[rs.jid.String()] = rs
		}
		return
	}
	delete(m, name)
	if len(m) == 0 {
		delete(s.joined, sess)
		if remote && s.remotes[rs.jid.String()] == rs {
			delete(s.remotes, rs.jid.String())
		}
	}
}

// vanish forgets r if it is temporary and empty, dropping its archive.
// s.mu must be held.
func (s *Service) vanish(fx *effects, r *room) {
	if len(r.occupants) > 0 || r.cfg.Persistent {
		return
	}
	if s.rooms[r.name] == r {
		delete(s.rooms, r.name)
	}
	fx.drop, fx.dropLog = r.name, r.name
}
