package muc

import (
	"context"
	"errors"
	"maps"
	"slices"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Users of other servers in the rooms: their stanzas arrive through
// federation (HandleRemote), and what the rooms send them goes back
// through Config.SendRemote. They enter, speak, send private messages,
// read the history and take part in calls as local users do, under the
// same rules (bans, members-only, passwords, moderation), with two
// differences: they cannot create rooms, and they are removed (XEP-0045
// status 333) when their server answers with an error saying they, or
// it, cannot be reached.

// StatusGhost is the XEP-0045 status code (333) of an occupant removed
// because its server answered a stanza for it with an error.
const StatusGhost = 333

// maxRemoteSessions bounds the sessions of other servers' users seated
// in the rooms at once.
const maxRemoteSessions = 10000

// remoteSession is a user of another server, by full JID. One exists per
// full JID while it is in a room (Service.remotes), so that every stanza
// from that JID finds the same session, as the rooms and the calls
// compare sessions with ==.
type remoteSession struct {
	jid jid.JID
	s   *Service
}

func (r *remoteSession) JID() jid.JID { return r.jid }

// Send hands el to federation.
func (r *remoteSession) Send(el *stanza.Element) error { return r.s.sendRemote(el) }

func isRemote(sess Session) bool {
	_, ok := sess.(*remoteSession)
	return ok
}

// RemoteSession returns the session that stands for full, a user of
// another server: the one seated in a room, or a new one, which is kept
// only if it enters a room. Stanzas its user sends to a room's call go to
// the conference service with it.
func (s *Service) RemoteSession(full jid.JID) Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remoteLocked(full)
}

func (s *Service) remoteLocked(full jid.JID) *remoteSession {
	if r := s.remotes[full.String()]; r != nil {
		return r
	}
	return &remoteSession{jid: full, s: s}
}

// Remote reports whether the room service takes stanzas from users of
// other servers (Config.SendRemote is set).
func (s *Service) Remote() bool { return s.federation != nil }

// HandleRemote processes a stanza a user of another server sent to the
// service or to a room or occupant on it; federation has checked that
// its from belongs to the server that sent it. Without
// Config.SendRemote it is refused.
func (s *Service) HandleRemote(ctx context.Context, el *stanza.Element) {
	from, ferr := el.FromJID()
	to, terr := el.ToJID()
	if ferr != nil || terr != nil || to.Domainpart() != s.domain ||
		from.Domainpart() == s.server || from.Domainpart() == s.domain {
		s.log.Debug("muc: remote stanza with unexpected addresses dropped", "from", el.From(), "to", el.To())
		return
	}
	sess := s.RemoteSession(from)
	if s.federation == nil {
		s.replyError(sess, el, stanza.ServiceUnavailable, "")
		return
	}
	if el.IsError() && ghostError(el, to) {
		s.removeGhost(ctx, sess.(*remoteSession))
		return
	}
	s.dispatch(ctx, sess, el, to)
}

// ghostError reports whether an error from an occupant's address says
// that it cannot be reached: its server is unreachable, or the session is
// gone (the conditions on which XEP-0045 lets a service remove an
// occupant with status 333). An IQ error counts only
// as the answer to the service's own check (addressed to the service) or
// when it comes from the server (an answer to an IQ the room relayed may
// legitimately be an error).
func ghostError(el *stanza.Element, to jid.JID) bool {
	switch stanza.ErrorCondition(el) {
	case "remote-server-not-found", "remote-server-timeout":
		return true
	case "gone", "item-not-found", "recipient-unavailable", "redirect", "service-unavailable":
		return el.Local != "iq" || to.Localpart() == ""
	}
	return false
}

// removeGhost takes sess out of every room it is in, the others seeing it
// leave with status 333.
func (s *Service) removeGhost(ctx context.Context, sess *remoteSession) {
	s.mu.Lock()
	var fx effects
	names := slices.Sorted(maps.Keys(s.joined[sess]))
	for _, name := range names {
		r := s.rooms[name]
		if r == nil {
			continue
		}
		if o := r.occupantOf(sess); o != nil {
			s.leave(&fx, r, o, sess, []int{StatusGhost}, nil, "")
		}
	}
	delete(s.joined, sess)
	delete(s.remotes, sess.jid.String())
	// Its own copy of its departure would only come back as another error.
	fx.out = slices.DeleteFunc(fx.out, func(d delivery) bool { return d.to == Session(sess) })
	s.unlockAndRun(ctx, &fx)
	if len(names) > 0 {
		s.log.Info("muc: occupant of another server removed: its server answered with an error", "jid", sess.jid.String())
	}
	for _, name := range names {
		s.accessChanged(ctx, name)
	}
}

// CheckRemoteDomain asks, for each occupant from domain, whether it is
// still there: a ping from the service, whose error answer (the server
// cannot be reached, or no longer has the session) removes it. Called
// when the streams with that server are lost.
func (s *Service) CheckRemoteDomain(domain string) {
	s.mu.Lock()
	var check []*remoteSession
	for _, r := range s.remotes {
		if r.jid.Domainpart() == domain {
			check = append(check, r)
		}
	}
	s.mu.Unlock()
	for _, r := range check {
		ping := stanza.NewIQ(stanza.GetIQ).SetAttr("id", "ghost-"+newID()).
			SetAttr("from", s.domain).SetAttr("to", r.jid.String()).Append(stanza.New(NSPing, "ping"))
		_ = r.Send(ping)
	}
}

var errNoFederation = errors.New("muc: no federation")

// sendRemote hands el to federation, or fails without it.
func (s *Service) sendRemote(el *stanza.Element) error {
	if s.federation == nil {
		return errNoFederation
	}
	return s.federation(el)
}
