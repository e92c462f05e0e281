package conference

import (
	"context"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/sfu"
	"poosms.org/poosms/stanza"
)

// forCall tells the call's stanzas from the rooms' on conference.DOMAIN:
// IQs in the conference namespace, and results and errors addressed to a
// bare room JID (answers to the SFU's own offers and candidates). Results
// to room/nick answer requests the room relayed between occupants, and
// answers to the service itself are the rooms' (their checks on occupants
// of other servers).
func forCall(el *stanza.Element) bool {
	if el.Local != "iq" {
		return false
	}
	if t := el.Type(); t == "result" || t == "error" {
		to, err := jid.Parse(el.To())
		return err == nil && to.Resourcepart() == "" && to.Localpart() != ""
	}
	c := el.FirstElement()
	return c != nil && c.Space == muc.NSConference
}

// HandleStanza runs a stanza a session of this server sent to a room this
// node hosts, to its call, or to the service itself.
func (s *Service) HandleStanza(ctx context.Context, sess chat.Session, el *stanza.Element) {
	p := s.run.Load()
	if p == nil {
		return
	}
	if forCall(el) {
		p.calls.HandleStanza(ctx, sess, el)
		return
	}
	p.rooms.HandleStanza(ctx, sess, el)
}

// HandleRemote runs a stanza from a user of another server (its from
// checked by federation): the call's stanzas go to the SFU with the
// session the rooms know that user by (a call is for the room's
// occupants), the rest to the rooms. A from of a domain served here is
// dropped: federation never carries one.
func (s *Service) HandleRemote(ctx context.Context, el *stanza.Element) {
	p := s.run.Load()
	if p == nil {
		return
	}
	from, err := jid.Parse(el.From())
	if err != nil || s.cfg.Hosted(from.Domainpart()) {
		return
	}
	if forCall(el) {
		p.calls.HandleStanza(ctx, p.rooms.RemoteSession(from), el)
		return
	}
	p.rooms.HandleRemote(ctx, el)
}

// SessionClosed ends what a session that is gone had here: its places in
// calls, then in rooms.
func (s *Service) SessionClosed(ctx context.Context, sess chat.Session) {
	p := s.run.Load()
	if p == nil {
		return
	}
	p.calls.SessionClosed(ctx, sess)
	p.rooms.SessionClosed(ctx, sess)
}

// AccountRemoved drops a deleted account from the rooms' affiliations
// and the rooms it is in.
func (s *Service) AccountRemoved(ctx context.Context, bare jid.JID) {
	if p := s.run.Load(); p != nil {
		p.rooms.AccountRemoved(ctx, bare)
	}
}

// CheckRemoteDomain is told that this node lost its last stream with the
// server domain: the rooms check the occupants they had from there.
func (s *Service) CheckRemoteDomain(domain string) {
	if p := s.run.Load(); p != nil {
		p.rooms.CheckRemoteDomain(domain)
	}
}

// The wiring between a room and its call; p's fields are set before any
// of these can run (see Start).

func (p *parts) recheck(ctx context.Context, room jid.JID) { p.calls.Recheck(ctx, room) }

func (p *parts) mayConference(ctx context.Context, room jid.JID, peer sfu.Peer) (string, error) {
	return p.rooms.MayConference(ctx, room, peer)
}

func (p *parts) seesRealJIDs(room jid.JID, viewer sfu.Peer) bool {
	return p.rooms.SeesRealJIDs(room, viewer)
}
