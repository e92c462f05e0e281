package muc

import (
	"context"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// handleMessage handles groupchat messages and subject changes to a room,
// mediated invitations and declines, and private messages to room/nick.
func (s *Service) handleMessage(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	typ := el.Type()
	if typ == "error" {
		return
	}
	if to.Localpart() == "" {
		if el.Child("", "body") != nil {
			s.replyError(sess, el, stanza.ServiceUnavailable, "")
		}
		return
	}
	var fx effects
	s.mu.Lock()
	r := s.rooms[to.Localpart()]
	switch {
	case r == nil || (r.locked && r.occupantOf(sess) == nil):
		errorFx(&fx, sess, el, stanza.ItemNotFound, "no such room")
	case to.Resourcepart() != "":
		s.private(&fx, r, sess, el, to.Resourcepart())
	case typ == "groupchat":
		s.groupchat(&fx, r, sess, el)
	default:
		if x := el.Child(NSUser, "x"); x != nil && (x.Child(NSUser, "invite") != nil || x.Child(NSUser, "decline") != nil) {
			s.invite(&fx, r, sess, el, x)
		} else if el.Child("", "body") != nil {
			errorFx(&fx, sess, el, stanza.BadRequest, "messages to a room are of type groupchat")
		}
	}
	s.unlockAndRun(ctx, &fx)
}

// groupchat broadcasts a message or a subject change. s.mu must be held.
func (s *Service) groupchat(fx *effects, r *room, sess Session, el *stanza.Element) {
	o := r.occupantOf(sess)
	if o == nil {
		errorFx(fx, sess, el, stanza.NotAcceptable, "only occupants may send messages to the room")
		return
	}
	subject := el.Child("", "subject")
	body := el.Child("", "body")
	if subject != nil && body == nil {
		if o.role != roleModerator && !(r.cfg.ChangeSubject && o.role >= roleParticipant) {
			errorFx(fx, sess, el, stanza.Forbidden, "you may not change the subject")
			return
		}
		r.subject, r.subjectNick = subject.Text(), o.nick
		if r.cfg.Persistent && !r.locked {
			fx.save = r.record()
		}
	} else if o.role < roleParticipant {
		errorFx(fx, sess, el, stanza.Forbidden, "you have no voice in this moderated room")
		return
	}

	m := el.Copy()
	m.SetAttr("from", r.occupantJID(o.nick))
	m.SetAttr("to", "")
	// Only the room stamps ids "by" itself.
	kept := m.Children[:0]
	for _, c := range m.Children {
		if ce, ok := c.(*stanza.Element); ok && ce.Space == NSStanzaID && ce.Local == "stanza-id" && ce.Attr("by") == r.jid.String() {
			continue
		}
		kept = append(kept, c)
	}
	m.Children = kept
	now := s.now()
	if body != nil {
		id := newID()
		m.Append(stanza.New(NSStanzaID, "stanza-id").SetAttr("id", id).SetAttr("by", r.jid.String()))
		raw := m.String()
		r.remember(histEntry{stamp: now, el: m, size: len(raw)}, s.history)
		fx.archive = &store.RoomMessage{
			Room: r.name, StanzaID: id, Stamp: now, Nick: o.nick,
			Sender: o.bare.String(), Stanza: []byte(raw),
		}
		if s.retention > 0 && now.Sub(s.lastPrune) >= pruneEvery {
			s.lastPrune = now
			fx.prune = now.Add(-s.retention)
		}
	}
	// One copy for everyone; m is not changed from here on (the history
	// keeps it too).
	sh := &shared{el: m}
	for _, v := range r.sorted() {
		for _, vs := range v.sessions {
			fx.share(vs, sh)
		}
	}
}

// private relays a message from an occupant to another by nickname.
// s.mu must be held.
func (s *Service) private(fx *effects, r *room, sess Session, el *stanza.Element, nick string) {
	o := r.occupantOf(sess)
	switch {
	case o == nil:
		errorFx(fx, sess, el, stanza.NotAcceptable, "only occupants may send private messages")
		return
	case el.MessageType() == stanza.GroupChatMessage:
		errorFx(fx, sess, el, stanza.BadRequest, "a private message is not of type groupchat")
		return
	}
	dst := r.occupants[nick]
	if dst == nil {
		errorFx(fx, sess, el, stanza.ItemNotFound, "no occupant has that nickname")
		return
	}
	m := el.Copy()
	m.SetAttr("from", r.occupantJID(o.nick))
	if m.Child(NSUser, "x") == nil {
		m.Append(stanza.New(NSUser, "x"))
	}
	for _, ds := range dst.sessions {
		c := m.Copy()
		c.SetAttr("to", ds.JID().String())
		fx.send(ds, c)
	}
}

// invite relays mediated invitations and declines (XEP-0045 §7.8.2).
// s.mu must be held.
func (s *Service) invite(fx *effects, r *room, sess Session, el, x *stanza.Element) {
	me := sess.JID().Bare()
	for _, d := range x.Elements() {
		if d.Space != NSUser || d.Local != "decline" {
			continue
		}
		to, err := jid.Parse(d.Attr("to"))
		if err != nil {
			errorFx(fx, sess, el, stanza.JIDMalformed, "")
			return
		}
		out := stanza.New(NSUser, "decline").SetAttr("from", me.String())
		if reason := d.Child(NSUser, "reason"); reason != nil {
			out.Append(reason.Copy())
		}
		fx.external = append(fx.external, stanza.New(stanza.NSClient, "message").
			SetAttr("from", r.jid.String()).SetAttr("to", to.Bare().String()).
			Append(stanza.New(NSUser, "x").Append(out)))
	}
	var invites []*stanza.Element
	for _, d := range x.Elements() {
		if d.Space == NSUser && d.Local == "invite" {
			invites = append(invites, d)
		}
	}
	if len(invites) == 0 {
		return
	}
	o := r.occupantOf(sess)
	aff := r.affiliation(me)
	switch {
	case o == nil:
		errorFx(fx, sess, el, stanza.NotAcceptable, "only occupants may invite")
		return
	case r.cfg.MembersOnly && !r.cfg.AllowInvites && aff < affAdmin:
		errorFx(fx, sess, el, stanza.Forbidden, "only admins may invite to this room")
		return
	}
	for _, d := range invites {
		to, err := jid.Parse(d.Attr("to"))
		if err != nil || to.Localpart() == "" {
			errorFx(fx, sess, el, stanza.JIDMalformed, "")
			return
		}
		to = to.Bare()
		if r.affiliation(to) == affOutcast {
			errorFx(fx, sess, el, stanza.Forbidden, "the invitee is banned from this room")
			return
		}
	}
	for _, d := range invites {
		to := jid.MustParse(d.Attr("to")).Bare()
		in := stanza.New(NSUser, "invite").SetAttr("from", me.String())
		if reason := d.Child(NSUser, "reason"); reason != nil {
			in.Append(reason.Copy())
		}
		ux := stanza.New(NSUser, "x").Append(in)
		if r.cfg.PasswordProtected {
			ux.Append(stanza.New(NSUser, "password").SetText(r.cfg.Password))
		}
		body := me.String() + " invites you to the room " + r.jid.String()
		fx.external = append(fx.external, stanza.New(stanza.NSClient, "message").
			SetAttr("from", r.jid.String()).SetAttr("to", to.String()).SetAttr("id", newID()).
			Append(ux, stanza.New(stanza.NSClient, "body").SetText(body)))
		if r.cfg.MembersOnly && r.affiliation(to) < affMember {
			r.affs[to.String()] = affEntry{aff: affMember}
			if r.cfg.Persistent {
				fx.affRoom = r.name
				fx.affs = append(fx.affs, store.RoomAffiliation{JID: to.String(), Affiliation: store.AffMember})
			}
		}
	}
}
