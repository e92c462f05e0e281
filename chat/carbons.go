package chat

import (
	"context"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// carbonsIQ enables or disables message carbons for the session
// (XEP-0280).
func (s *Service) carbonsIQ(_ context.Context, sess Session, iq, q *stanza.Element, _ jid.JID, _ bool) {
	if iq.IQType() != stanza.SetIQ {
		s.replyError(sess, iq, stanza.BadRequest, "")
		return
	}
	on := q.Local == "enable"
	s.update(sess, func(r *resource) { r.Carbons = on })
	s.send(sess, stanza.Result(iq))
}

// carbonEligible reports whether copies of el go to the user's other
// resources: chat messages, and normal messages with a body, unless marked
// private or no-copy, and never copies themselves.
func carbonEligible(el *stanza.Element) bool {
	switch messageType(el) {
	case stanza.ChatMessage:
	case stanza.NormalMessage:
		if el.Child("", "body") == nil {
			return false
		}
	default:
		return false
	}
	for _, c := range el.Elements() {
		switch {
		case c.Space == NSCarbons && (c.Local == "private" || c.Local == "sent" || c.Local == "received"):
			return false
		case c.Space == NSHints && c.Local == "no-copy":
			return false
		}
	}
	return true
}

// carbonTargets returns the available sessions of local with carbons on,
// except those in skip.
func (s *Service) carbonTargets(local string, skip []Session) []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Session
outer:
	for _, r := range s.users[local] {
		if !r.Available || !r.Carbons {
			continue
		}
		for _, k := range skip {
			if k == r.sess {
				continue outer
			}
		}
		out = append(out, r.sess)
	}
	return out
}

// carbon wraps a copy of el in <sent/> or <received/> for target.
func carbon(kind string, el *stanza.Element, target Session) *stanza.Element {
	w := stanza.New(stanza.NSClient, "message").
		SetAttr("from", target.JID().Bare().String()).
		SetAttr("to", target.JID().String()).
		SetType(messageType(el))
	inner := el.Copy()
	inner.Space = stanza.NSClient // inside <forwarded/> it must say so
	return w.Append(stanza.New(NSCarbons, kind).Append(
		stanza.New(NSForward, "forwarded").Append(inner)))
}

// sentCarbons copies a message sess sent to the user's other resources
// that enabled carbons.
func (s *Service) sentCarbons(sess Session, el *stanza.Element) {
	for _, t := range s.carbonTargets(sess.JID().Localpart(), []Session{sess}) {
		s.send(t, carbon("sent", el, t))
	}
}

// receivedCarbons copies a message local received to the resources with
// carbons on that did not get it.
func (s *Service) receivedCarbons(el *stanza.Element, local string, delivered []Session) {
	for _, t := range s.carbonTargets(local, delivered) {
		s.send(t, carbon("received", el, t))
	}
}
