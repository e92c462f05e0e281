package chat

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

func (s *Service) handlePresence(ctx context.Context, sess Session, el *stanza.Element, to jid.JID, hasTo bool) {
	switch typ := el.Type(); typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		if !hasTo {
			s.replyError(sess, el, stanza.BadRequest, "a subscription request needs an address")
			return
		}
		s.subscription(ctx, sess, el, typ, to)
	case "probe":
		if hasTo {
			s.clientProbe(ctx, sess, to)
		}
	case "error":
		// Errors only make sense to a precise session (e.g. a refused
		// directed presence); anything else is dropped.
		if hasTo && s.isRemote(to) {
			s.sendRemote(el)
		} else if hasTo && s.isLocal(to) && to.Resourcepart() != "" {
			if dst := s.bound(to.Localpart(), to.Resourcepart()); dst != nil {
				s.send(dst, el)
			}
		}
	case "", "unavailable":
		switch {
		case !hasTo && typ == "":
			s.presenceAvailable(ctx, sess, el)
		case !hasTo:
			s.presenceUnavailable(ctx, sess, el)
		default:
			s.directedPresence(ctx, sess, el, to)
		}
	default:
		s.replyError(sess, el, stanza.BadRequest, "unknown presence type")
	}
}

// priority reads <priority/>: an integer from -128 to 127, 0 when absent
// or invalid (RFC 6121 §4.7.2.3).
func priority(el *stanza.Element) int {
	p, err := strconv.Atoi(strings.TrimSpace(el.ChildText("", "priority")))
	if err != nil {
		return 0
	}
	return max(-128, min(127, p))
}

// presenceAvailable handles available presence without 'to' (RFC 6121
// §4.2, §4.4): broadcast to subscribers and the user's own resources; on
// the first one also probes, pending subscription requests and offline
// messages.
func (s *Service) presenceAvailable(ctx context.Context, sess Session, el *stanza.Element) {
	me := sess.JID()
	owner := me.Localpart()
	p := el.Copy()
	p.SetAttr("to", "")
	p.SetAttr("from", me.String())
	prio := priority(el)
	var initial, wasNegative bool
	var others []*stanza.Element
	bound := s.update(sess, func(r *resource) {
		initial = !r.Available
		wasNegative = r.Priority < 0
		r.Available, r.Priority, r.Presence = true, prio, p
	})
	if !bound {
		// Its unavailable presence could never be sent: ignore it.
		s.log.Debug("chat: presence from an unbound session", "jid", me.String())
		return
	}
	if initial {
		s.mu.Lock()
		for _, r := range s.users[owner] {
			if r.sess != sess && r.Available && r.Presence != nil {
				others = append(others, r.Presence)
			}
		}
		s.mu.Unlock()
	}

	items, err := s.st.RosterItems(ctx, owner)
	if err != nil {
		s.log.Error("chat: load roster for presence", "jid", me.String(), "err", err)
	}
	for _, it := range items {
		if it.Subscription == store.SubFrom || it.Subscription == store.SubBoth {
			s.presenceToContact(p, it.Contact)
		}
	}
	s.presenceToOwn(p, owner, nil)

	if initial {
		for _, it := range items {
			if it.Subscription == store.SubTo || it.Subscription == store.SubBoth {
				s.answerProbe(sess, it.Contact)
			}
		}
		for _, o := range others {
			q := o.Copy()
			q.SetAttr("to", me.String())
			s.send(sess, q)
		}
		for _, it := range items {
			if it.PendingIn {
				if c, err := jid.Parse(it.Contact); err == nil {
					s.send(sess, subscriptionPresence("subscribe", c, me.Bare()))
				}
			}
		}
	}
	if prio >= 0 && (initial || wasNegative) {
		s.drainOffline(ctx, owner, sess)
	}
	s.presenceCaps(ctx, sess, el, initial)
}

// presenceUnavailable handles unavailable presence without 'to'.
func (s *Service) presenceUnavailable(ctx context.Context, sess Session, el *stanza.Element) {
	var snap resource
	s.update(sess, func(r *resource) {
		snap = r.snapshot()
		r.Available, r.Priority, r.Presence, r.directed = false, 0, nil, nil
	})
	s.endPresence(ctx, sess.JID(), snap.Available, snap.directed, el, sess)
}

// endPresence sends unavailable presence from me to its subscribers and its
// own resources (when it was available) and to the addresses that got
// directed presence. el is the client's unavailable presence, or nil when
// the session ended; self, when not nil, also receives it.
func (s *Service) endPresence(ctx context.Context, me jid.JID, wasAvailable bool, directed []string, el *stanza.Element, self Session) {
	if !wasAvailable && len(directed) == 0 {
		return
	}
	var p *stanza.Element
	if el != nil {
		p = el.Copy()
		p.SetAttr("to", "")
	} else {
		p = stanza.New(stanza.NSClient, "presence")
	}
	p.SetType(stanza.UnavailablePresence)
	p.SetAttr("from", me.String())
	covered := map[string]bool{}
	if wasAvailable {
		items, err := s.st.RosterItems(ctx, me.Localpart())
		if err != nil {
			s.log.Error("chat: load roster for presence", "jid", me.String(), "err", err)
		}
		for _, it := range items {
			if it.Subscription == store.SubFrom || it.Subscription == store.SubBoth {
				s.presenceToContact(p, it.Contact)
				covered[it.Contact] = true
			}
		}
		s.presenceToOwn(p, me.Localpart(), self)
	}
	for _, d := range directed {
		j, err := jid.Parse(d)
		if err != nil || covered[j.Bare().String()] {
			continue
		}
		q := p.Copy()
		q.SetAttr("to", j.String())
		s.deliverPresence(q, j)
	}
}

// presenceToContact sends a copy of p, addressed to contact's bare JID, to
// contact's available sessions, or to contact's server. Contacts of other
// domains are skipped without federation.
func (s *Service) presenceToContact(p *stanza.Element, contact string) {
	j, err := jid.Parse(contact)
	if err == nil && s.isRemote(j) {
		q := p.Copy()
		q.SetAttr("to", j.Bare().String())
		s.sendOut(q, j)
		return
	}
	if err != nil || !s.isLocal(j) || j.Localpart() == "" {
		return
	}
	q := p.Copy()
	q.SetAttr("to", j.Bare().String())
	for _, t := range s.available(j.Localpart()) {
		s.send(t.sess, q)
	}
}

// presenceToOwn sends p, addressed to the user's bare JID, to every
// available session of owner, and to extra when it is not nil and not
// available any more (a session reporting its own unavailability).
func (s *Service) presenceToOwn(p *stanza.Element, owner string, extra Session) {
	q := p.Copy()
	q.SetAttr("to", p.From())
	if j, err := p.FromJID(); err == nil {
		q.SetAttr("to", j.Bare().String())
	}
	sent := false
	for _, t := range s.available(owner) {
		s.send(t.sess, q)
		sent = sent || t.sess == extra
	}
	if extra != nil && !sent {
		s.send(extra, q)
	}
}

// deliverPresence delivers presence p to a local address: a full JID's
// session, or a bare JID's available sessions (RFC 6121 §8.5.2, §8.5.3);
// or to another server. Without federation other domains, and the server
// itself, receive nothing.
func (s *Service) deliverPresence(p *stanza.Element, to jid.JID) {
	if s.isRemote(to) {
		s.sendOut(p, to)
		return
	}
	if !s.isLocal(to) || to.Localpart() == "" {
		return
	}
	if res := to.Resourcepart(); res != "" {
		if dst := s.bound(to.Localpart(), res); dst != nil {
			s.send(dst, p)
		}
		return
	}
	for _, t := range s.available(to.Localpart()) {
		s.send(t.sess, p)
	}
}

// directedPresence handles available or unavailable presence with a 'to'
// (RFC 6121 §4.6): delivered as is, and remembered so the recipient learns
// when the session goes away.
func (s *Service) directedPresence(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	remote := s.isRemote(to)
	switch {
	case !remote && !s.isLocal(to):
		s.replyError(sess, el, stanza.RemoteServerNotFound, "this server does not federate")
		return
	case !remote && to.Localpart() == "":
		return
	case !remote:
		ok, err := s.exists(ctx, to.Localpart())
		if err != nil {
			s.log.Error("chat: directed presence", "to", to.String(), "err", err)
			return
		}
		if !ok {
			return // RFC 6121 §8.5.1: silently ignored
		}
	}
	addr := to.String()
	unavailable := el.PresenceType() == stanza.UnavailablePresence
	full := false
	s.update(sess, func(r *resource) {
		known := slices.Contains(r.directed, addr)
		if !unavailable && !known && len(r.directed) >= s.lim.DirectedPresences {
			full = true
			return
		}
		r.directed = slices.DeleteFunc(r.directed, func(d string) bool { return d == addr })
		if !unavailable {
			r.directed = append(r.directed, addr)
		}
	})
	if full {
		s.replyError(sess, el, stanza.ResourceConstraint,
			fmt.Sprintf("a session may send directed presence to at most %d addresses at once: send unavailable to some first", s.lim.DirectedPresences))
		return
	}
	s.deliverPresence(el, to)
}

// answerProbe sends contact's presence to sess, the user's newly available
// session (RFC 6121 §4.3.2): the last presence of each available resource,
// or unavailable from the bare JID when there is none. A contact of
// another server is probed there, from the session's full JID so that
// the answers go to it alone.
func (s *Service) answerProbe(sess Session, contact string) {
	j, err := jid.Parse(contact)
	if err == nil && s.isRemote(j) {
		s.probe(sess.JID(), j)
		return
	}
	if err != nil || !s.isLocal(j) || j.Localpart() == "" {
		return
	}
	me := sess.JID().String()
	avail := s.available(j.Localpart())
	if len(avail) == 0 {
		p := stanza.New(stanza.NSClient, "presence").
			SetAttr("from", j.Bare().String()).
			SetAttr("to", me).
			SetType(stanza.UnavailablePresence)
		s.send(sess, p)
		return
	}
	for _, t := range avail {
		q := t.Presence.Copy()
		q.SetAttr("to", me)
		s.send(sess, q)
	}
}

// clientProbe answers a probe a client sent itself, if the user is
// subscribed to the contact's presence.
func (s *Service) clientProbe(ctx context.Context, sess Session, to jid.JID) {
	if !s.isRemote(to) && (!s.isLocal(to) || to.Localpart() == "") {
		return
	}
	contact := to.Bare().String()
	if to.Bare().Equal(sess.JID().Bare()) {
		s.answerProbe(sess, contact)
		return
	}
	it, err := s.st.RosterItem(ctx, sess.JID().Localpart(), contact)
	if err != nil {
		return
	}
	if it.Subscription == store.SubTo || it.Subscription == store.SubBoth {
		s.answerProbe(sess, contact)
	}
}

// sendPresenceFrom sends the current presence of owner's available sessions
// to contact's available sessions (after contact's subscription is
// approved, RFC 6121 §3.1.5).
func (s *Service) sendPresenceFrom(owner string, contact jid.JID) {
	for _, t := range s.available(owner) {
		if t.Presence != nil {
			s.presenceToContact(t.Presence, contact.String())
		}
	}
}

// sendUnavailableFrom tells contact's available sessions that every
// available session of owner is gone for them (a subscription ended).
func (s *Service) sendUnavailableFrom(owner string, contact jid.JID) {
	for _, t := range s.available(owner) {
		p := stanza.New(stanza.NSClient, "presence").
			SetAttr("from", t.sess.JID().String()).
			SetType(stanza.UnavailablePresence)
		s.presenceToContact(p, contact.String())
	}
}
