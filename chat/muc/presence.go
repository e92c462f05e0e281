package muc

import (
	"context"
	"slices"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// handlePresence handles presence to room/nick: joining, changing status
// or nickname, leaving.
func (s *Service) handlePresence(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	typ := el.Type()
	switch typ {
	case "", "unavailable", "error":
	default:
		return // subscriptions and probes mean nothing to a room
	}
	if to.Localpart() == "" {
		return
	}
	nick := to.Resourcepart()
	var fx effects
	s.mu.Lock()
	r := s.rooms[to.Localpart()]
	var o *occupant
	if r != nil {
		o = r.occupantOf(sess)
	}
	// Leaving the room or changing one's nickname changes who may be in
	// its call, and how the call shows them.
	callChanges := o != nil && (typ != "" || o.nick != nick)
	switch {
	case typ != "":
		if o != nil {
			status := ""
			if typ == "unavailable" {
				status = el.ChildText("", "status")
			}
			s.leave(&fx, r, o, sess, nil, nil, status)
		}
	case nick == "":
		errorFx(&fx, sess, el, stanza.JIDMalformed, "a nickname is required to enter a room")
	case o != nil && o.nick == nick && el.Child(NSMUC, "x") != nil:
		// Entering again from where one already is (a client that lost
		// track): everything entering gives, again; the others see the
		// presence as an update.
		o.status = statusOf(el)
		r.fanOut(&fx, o, func(v *occupant, vs Session) *stanza.Element {
			if v == o {
				return nil
			}
			return r.presenceFor(o, v, vs)
		})
		s.enterState(&fx, r, o, sess, el.Child(NSMUC, "x"), false, false)
	case o != nil && o.nick == nick:
		o.status = statusOf(el)
		r.broadcastPresence(&fx, o, nil)
	case o != nil:
		s.changeNick(&fx, r, o, sess, el, nick)
	default:
		s.join(&fx, r, sess, el, to)
	}
	s.unlockAndRun(ctx, &fx)
	if callChanges {
		s.accessChanged(ctx, to.Localpart())
	}
}

// statusOf returns the presence payload worth repeating to occupants.
func statusOf(el *stanza.Element) []*stanza.Element {
	var out []*stanza.Element
	for _, c := range el.Elements() {
		switch {
		case c.Space == NSMUC, c.Space == NSUser, c.Local == "error":
		default:
			out = append(out, c.Copy())
		}
	}
	return out
}

// join enters sess into room to.Localpart() (creating it when r is nil)
// with nickname to.Resourcepart(). s.mu must be held.
func (s *Service) join(fx *effects, r *room, sess Session, el *stanza.Element, to jid.JID) {
	me := sess.JID()
	bare := me.Bare()
	nick := to.Resourcepart()
	created := false
	if r == nil && isRemote(sess) {
		// Rooms are made by this server's users; others come as guests.
		errorFx(fx, sess, el, stanza.NotAllowed, "only users of this server create rooms")
		return
	}
	if r == nil && s.justRemovedLocked(bare) {
		// A session of a deleted account that has not ended yet must
		// not become the owner of a new room.
		errorFx(fx, sess, el, stanza.NotAllowed, "this account was deleted")
		return
	}
	if r == nil {
		if ok, why := s.created.allow(bare.String(), s.now()); !ok {
			errorFx(fx, sess, el, stanza.ResourceConstraint, why)
			return
		}
		r = s.newRoom(to.Localpart())
		r.locked = true
		r.affs[bare.String()] = affEntry{aff: affOwner}
		created = true
	}
	aff := r.affiliation(bare)
	mx := el.Child(NSMUC, "x")
	password := ""
	if mx != nil {
		password = mx.ChildText(NSMUC, "password")
	}
	fail := func(cond stanza.Condition, text string) {
		errorFx(fx, sess, el, cond, text)
	}
	existing := r.occupants[nick]
	switch {
	case r.locked && aff != affOwner:
		fail(stanza.ItemNotFound, "the room is being set up by its owner")
		return
	case aff == affOutcast:
		fail(stanza.Forbidden, "you are banned from this room")
		return
	case r.cfg.MembersOnly && aff < affMember:
		fail(stanza.RegistrationRequired, "this room is for members only")
		return
	case r.cfg.PasswordProtected && aff < affAdmin && !passwordMatches(password, r.cfg.Password):
		fail(stanza.NotAuthorized, "a password is required to enter this room")
		return
	case existing != nil && !existing.bare.Equal(bare):
		fail(stanza.Conflict, "that nickname is in use")
		return
	case s.reservedBy(r, nick, bare):
		fail(stanza.Conflict, "that nickname is reserved")
		return
	case existing == nil && r.cfg.MaxUsers > 0 && len(r.occupants) >= r.cfg.MaxUsers && aff < affAdmin:
		fail(stanza.ServiceUnavailable, "the room is full")
		return
	case isRemote(sess) && s.remotes[me.String()] == nil && len(s.remotes) >= maxRemoteSessions:
		fail(stanza.ResourceConstraint, "too many users of other servers are in rooms here")
		return
	}
	if created {
		s.rooms[r.name] = r
		s.created.record(bare.String(), s.now())
	}
	o := existing
	if o == nil {
		o = &occupant{nick: nick, bare: bare, role: r.defaultRole(aff)}
		r.occupants[nick] = o
	}
	o.sessions = append(o.sessions, sess)
	o.status = statusOf(el)
	s.track(sess, r.name, true)

	s.enterState(fx, r, o, sess, mx, created, existing == nil)
}

// enterState sends sess what entering the room gives, in order: the other
// occupants' presence, its own (to everyone too when announce), the
// history its <x/> asks for, and the subject. s.mu must be held.
func (s *Service) enterState(fx *effects, r *room, o *occupant, sess Session, mx *stanza.Element, created, announce bool) {
	for _, other := range r.sorted() {
		if other != o {
			fx.send(sess, r.presenceFor(other, o, sess))
		}
	}
	var selfCodes []int
	if r.cfg.WhoIs == whoisAnyone {
		selfCodes = append(selfCodes, 100)
	}
	selfCodes = append(selfCodes, 170) // every room is archived
	if created {
		selfCodes = append(selfCodes, 201)
	}
	if announce {
		r.broadcastPresence(fx, o, selfCodes)
	} else {
		fx.send(sess, r.presenceFor(o, o, sess, selfCodes...))
	}
	for _, h := range s.historyFor(r, mx) {
		m := h.el.Copy()
		m.SetAttr("to", sess.JID().String())
		m.Append(delay(r.jid.String(), h.stamp))
		fx.send(sess, m)
	}
	fx.send(sess, r.subjectMessage(sess))
}

// reservedBy reports whether nick is reserved in r by someone other than bare.
func (s *Service) reservedBy(r *room, nick string, bare jid.JID) bool {
	for k, a := range r.affs {
		if a.nick == nick && k != bare.String() {
			return true
		}
	}
	return false
}

// historyFor picks the history sent on joining, honouring the client's
// <history maxstanzas maxchars seconds since/>. s.mu must be held.
func (s *Service) historyFor(r *room, mx *stanza.Element) []histEntry {
	maxStanzas, maxChars := s.history, s.histBytes
	var since time.Time
	if s.retention > 0 {
		since = s.now().Add(-s.retention)
	}
	if mx != nil {
		if h := mx.Child(NSMUC, "history"); h != nil {
			if v, err := strconv.Atoi(h.Attr("maxstanzas")); err == nil && v >= 0 && v < maxStanzas {
				maxStanzas = v
			}
			if v, err := strconv.Atoi(h.Attr("maxchars")); err == nil && v >= 0 && v < maxChars {
				maxChars = v
			}
			if v, err := strconv.Atoi(h.Attr("seconds")); err == nil && v >= 0 {
				if t := s.now().Add(-time.Duration(v) * time.Second); t.After(since) {
					since = t
				}
			}
			if v := h.Attr("since"); v != "" {
				if t, err := time.Parse(time.RFC3339, v); err == nil && t.After(since) {
					since = t
				}
			}
		}
	}
	var out []histEntry
	chars := 0
	for i := len(r.history) - 1; i >= 0 && len(out) < maxStanzas; i-- {
		h := r.history[i]
		if h.stamp.Before(since) {
			break
		}
		if chars+h.size > maxChars {
			break
		}
		chars += h.size
		out = append(out, h)
	}
	slices.Reverse(out)
	return out
}

// subjectMessage is the subject as sent on joining (empty if none set).
func (r *room) subjectMessage(to Session) *stanza.Element {
	from := r.jid.String()
	if r.subjectNick != "" {
		from = r.occupantJID(r.subjectNick)
	}
	m := stanza.New(stanza.NSClient, "message").
		SetAttr("from", from).
		SetAttr("to", to.JID().String()).
		SetType(stanza.GroupChatMessage).
		SetAttr("id", newID())
	return m.Append(stanza.New(stanza.NSClient, "subject").SetText(r.subject))
}

// leave takes sess (or, when sess is nil, every session of o) out of r
// and tells the others. codes and extra (item children: actor, reason)
// say why: a kick, a ban; status is the leaver's own. s.mu must be held.
func (s *Service) leave(fx *effects, r *room, o *occupant, sess Session, codes []int, extra []*stanza.Element, status string) {
	aff := r.affiliation(o.bare)
	going := []Session{sess}
	if sess == nil {
		going = slices.Clone(o.sessions)
	}
	o.sessions = slices.DeleteFunc(o.sessions, func(x Session) bool { return slices.Contains(going, x) })
	for _, g := range going {
		s.track(g, r.name, false)
	}
	if len(o.sessions) > 0 {
		// The user stays through another session: only the one leaving hears.
		stay := o.sessions
		for _, g := range going {
			o.sessions = []Session{g}
			fx.send(g, r.unavailableFor(o, o, g, aff, extra, nil, "", status, codes...))
		}
		o.sessions = stay
		return
	}
	o.role = roleNone
	for _, g := range going {
		o.sessions = []Session{g} // so the leaver's own copy shows its JID
		fx.send(g, r.unavailableFor(o, o, g, aff, extra, nil, "", status, codes...))
	}
	o.sessions = going
	delete(r.occupants, o.nick)
	r.fanOut(fx, o, func(v *occupant, vs Session) *stanza.Element {
		return r.unavailableFor(o, v, vs, aff, extra, nil, "", status, codes...)
	})
	o.sessions = nil
	s.vanish(fx, r)
}

// changeNick moves occupant o to a new nickname (XEP-0045 §7.6).
// s.mu must be held.
func (s *Service) changeNick(fx *effects, r *room, o *occupant, sess Session, el *stanza.Element, nick string) {
	if other := r.occupants[nick]; other != nil || s.reservedBy(r, nick, o.bare) {
		errorFx(fx, sess, el, stanza.Conflict, "that nickname is in use")
		return
	}
	aff := r.affiliation(o.bare)
	for _, v := range r.sorted() {
		for _, vs := range v.sessions {
			fx.send(vs, r.unavailableFor(o, v, vs, aff, nil, nil, nick, "", 303))
		}
	}
	delete(r.occupants, o.nick)
	o.nick = nick
	o.status = statusOf(el)
	r.occupants[nick] = o
	r.broadcastPresence(fx, o, nil)
}
