package chat

import (
	"context"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Deliver routes a stanza whose from is already set (one a server
// component originates, e.g. a room's JID, or one a dropped stream could
// not deliver) to its local 'to' as RFC 6121 §8.5 says: a full JID to that
// session (a chat or normal message falls back to the bare JID when the
// session is gone), a bare JID to the available resources, or for a chat
// or normal message with content, the offline queue. The errors routing
// returns go to the sender when it is a bound local session, and are
// dropped with a debug log otherwise; so are stanzas for unknown users and
// stanzas from someone the user blocked. A stanza for another server goes
// to federation (dropped without one). Deliver neither archives nor
// carbon-copies (the stanza was, when it was first routed).
func (s *Service) Deliver(ctx context.Context, el *stanza.Element) {
	to, err := el.ToJID()
	if err == nil && s.isRemote(to) {
		// A service's stanza for someone of another server (an occupant
		// of a room who came from there).
		s.sendRemote(el)
		return
	}
	if err != nil || !s.isLocal(to) || to.Localpart() == "" {
		s.log.Debug("chat: deliver: not a local user", "to", el.To(), "from", el.From())
		return
	}
	from, err := el.FromJID()
	if err != nil {
		s.log.Debug("chat: deliver: bad from", "from", el.From())
		return
	}
	if s.blockSt != nil && s.isBlocked(ctx, to.Localpart(), from) {
		s.log.Debug("chat: deliver: sender blocked", "to", to.String(), "from", from.String())
		return
	}
	origin := &component{jid: from, s: s}
	switch el.Local {
	case "message":
		s.routeMessage(ctx, origin, el, to)
	case "presence":
		s.deliverPresence(el, to)
	case "iq":
		if to.Resourcepart() != "" {
			if dst := s.bound(to.Localpart(), to.Resourcepart()); dst != nil {
				s.send(dst, el)
				return
			}
		}
		if t := el.Type(); t == "get" || t == "set" {
			s.replyError(origin, el, stanza.ServiceUnavailable, "")
		}
	default:
		s.log.Debug("chat: deliver: not a stanza", "name", el.Local)
	}
}

// component stands for the originator of a delivered stanza: errors
// routing sends back to it reach it if it is a bound local session, and
// are logged and dropped otherwise.
type component struct {
	jid jid.JID
	s   *Service
}

func (c *component) JID() jid.JID { return c.jid }

func (c *component) Send(el *stanza.Element) error {
	if c.s.isLocal(c.jid) && c.jid.Localpart() != "" && c.jid.Resourcepart() != "" {
		if dst := c.s.bound(c.jid.Localpart(), c.jid.Resourcepart()); dst != nil {
			c.s.sendDirect(dst, el)
			return nil
		}
	}
	c.s.log.Debug("chat: deliver: undeliverable", "from", c.jid.String(), "reply", el.String())
	return nil
}
