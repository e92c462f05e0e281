package chat

import (
	"context"
	"errors"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Federation carries stanzas to the users and services of other servers
// (package s2s implements it). What it cannot deliver comes back later
// through HandleRemote as an error from the addressee.
type Federation interface {
	// Send queues el, whose from is one of this server's addresses, for
	// the server of its to. An error means it could not take it (the
	// domain is hosted here, or an address is invalid).
	Send(ctx context.Context, el *stanza.Element) error
}

// isRemote reports whether j is an address of another server that
// stanzas can be sent to.
func (s *Service) isRemote(j jid.JID) bool { return s.fed != nil && !s.isLocal(j) }

// sendRemote hands el to federation; false when it is not taken.
func (s *Service) sendRemote(el *stanza.Element) bool {
	if s.fed == nil {
		return false
	}
	if err := s.fed.Send(context.Background(), el); err != nil {
		s.log.Debug("chat: federation refused a stanza", "to", el.To(), "err", err)
		return false
	}
	return true
}

// sendOut is sendRemote for what the server sends on a user's behalf to
// someone of another server (presence, probes): nothing goes from a user
// to someone the user blocked (XEP-0191).
func (s *Service) sendOut(el *stanza.Element, to jid.JID) bool {
	if s.blockActive.Load() > 0 && s.blockedBetween(to, el.From()) {
		return true
	}
	return s.sendRemote(el)
}

// remoteEntity stands for a user or service of another server that sent
// a stanza: what chat answers it goes back through federation. It is
// never a local session: nothing about it is looked up by localpart.
type remoteEntity struct {
	jid jid.JID
	s   *Service
}

func (r *remoteEntity) JID() jid.JID { return r.jid }

func (r *remoteEntity) Send(el *stanza.Element) error {
	if !r.s.sendRemote(el) {
		return ErrSessionGone
	}
	return nil
}

// HandleRemote processes a stanza another server sent to an address of
// this domain, its from already proved to belong to that server and its
// to checked to be here (package s2s does both); or the error that
// federation returns for a stanza it could not deliver. Stanzas from
// other servers get the treatment local ones get where they arrive:
// blocklists, offline storage, the archive, carbons, presence and
// subscriptions; what they ask of the server is limited to what a user
// of another server may see.
func (s *Service) HandleRemote(ctx context.Context, el *stanza.Element) {
	from, ferr := el.FromJID()
	to, terr := el.ToJID()
	if ferr != nil || terr != nil || !s.isLocal(to) || s.isLocal(from) {
		s.log.Debug("chat: remote stanza with unexpected addresses dropped", "from", el.From(), "to", el.To())
		return
	}
	el.SetAttr("from", from.String())
	el.SetAttr("to", to.String())
	origin := &remoteEntity{jid: from, s: s}
	switch el.Local {
	case "message":
		s.messageIn(ctx, origin, el, to)
	case "presence":
		s.presenceIn(ctx, origin, el, to)
	case "iq":
		s.iqIn(ctx, origin, el, to)
	}
}

// blockedRemote reports whether the local user blocked the remote sender.
func (s *Service) blockedRemote(ctx context.Context, local string, from jid.JID) bool {
	return s.blockSt != nil && local != "" && s.isBlocked(ctx, local, from)
}

// messageOut sends a message of a local user to someone of another
// server: blocklist, the sender's archive and carbons, then federation.
func (s *Service) messageOut(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	me := sess.JID()
	typ := messageType(el)
	if typ != stanza.ErrorMessage && s.blockedRemote(ctx, me.Localpart(), to) {
		s.replyBlocked(sess, el)
		return
	}
	if s.archive != nil {
		stripStanzaIDs(el, me.Bare().String())
	}
	carbon := carbonEligible(el)
	sent := el
	if s.archive != nil && archivable(el) {
		if id := s.archiveFor(ctx, me.Localpart(), to.String(), el); id != "" && carbon {
			sent = el.Copy()
			sent.Append(stanzaID(id, me.Bare().String()))
		}
	}
	if carbon {
		s.sentCarbons(sess, sent)
	}
	if !s.sendRemote(el) && typ != stanza.ErrorMessage {
		s.replyError(sess, el, stanza.RemoteServerNotFound, "")
	}
}

// messageIn delivers a message from another server to a local user:
// refused when the user blocked the sender, kept in the user's archive,
// routed to sessions or the offline queue, copied to carbons.
func (s *Service) messageIn(ctx context.Context, origin *remoteEntity, el *stanza.Element, to jid.JID) {
	typ := messageType(el)
	local := to.Localpart()
	if local == "" {
		if typ != stanza.ErrorMessage && el.Child("", "body") != nil {
			s.replyError(origin, el, stanza.ServiceUnavailable, "")
		}
		return
	}
	if s.blockedRemote(ctx, local, origin.jid) {
		if typ != stanza.ErrorMessage {
			// XEP-0191 §3.5: the sender is not told it is blocked.
			s.replyError(origin, el, stanza.ServiceUnavailable, "")
		}
		return
	}
	if s.archive != nil {
		// Only this server says which ids its archives gave (XEP-0359).
		stripStanzaIDs(el, to.Bare().String())
	}
	carbon := carbonEligible(el)
	keep := s.archive != nil && archivable(el)
	if carbon || keep {
		if ok, err := s.exists(ctx, local); err != nil || !ok {
			carbon, keep = false, false
		}
	}
	if keep {
		if id := s.archiveFor(ctx, local, origin.jid.String(), el); id != "" {
			el.Append(stanzaID(id, to.Bare().String()))
		}
	}
	delivered := s.routeMessage(ctx, origin, el, to)
	if carbon {
		s.receivedCarbons(el, local, delivered)
	}
}

// iqOut sends a local user's IQ to someone of another server.
func (s *Service) iqOut(ctx context.Context, sess Session, el *stanza.Element, to jid.JID, request bool) {
	if request && s.blockedRemote(ctx, sess.JID().Localpart(), to) {
		s.replyBlocked(sess, el)
		return
	}
	if !s.sendRemote(el) && request {
		s.replyError(sess, el, stanza.RemoteServerNotFound, "")
	}
}

// remoteServerIQs are what a user of another server may ask this
// server itself: what it is, its services, whether it is alive.
var remoteServerIQs = map[iqKey]bool{
	{NSDiscoInfo, "query"}: true, {NSDiscoItems, "query"}: true,
	{NSPing, "ping"}: true, {NSVersion, "query"}: true,
}

// iqIn handles an IQ from another server: to the domain, only the
// questions of remoteServerIQs; to a user's bare JID, what another user
// may ask (disco, vCard, PEP items; never the roster, the archive or
// settings); to a full JID, the session.
func (s *Service) iqIn(ctx context.Context, origin *remoteEntity, el *stanza.Element, to jid.JID) {
	typ := el.Type()
	request := typ == "get" || typ == "set"
	if !request && typ != "result" && typ != "error" {
		return
	}
	switch {
	case to.Localpart() == "" && to.Resourcepart() == "":
		if !request {
			// The answers to the server's questions about capabilities.
			s.remoteCapsAnswer(ctx, origin.jid, el)
			return
		}
		if q := payload(el); q == nil || !remoteServerIQs[iqKey{q.Space, q.Local}] {
			s.replyError(origin, el, stanza.ServiceUnavailable, "")
			return
		}
		s.serverIQ(ctx, origin, el, false)
	case to.Localpart() == "":
		if request {
			s.replyError(origin, el, stanza.ServiceUnavailable, "")
		}
	case s.blockedRemote(ctx, to.Localpart(), origin.jid):
		if request {
			s.replyError(origin, el, stanza.ServiceUnavailable, "")
		}
	case to.Resourcepart() != "":
		if dst := s.bound(to.Localpart(), to.Resourcepart()); (dst == nil || !s.send(dst, el)) && request {
			s.replyError(origin, el, stanza.ServiceUnavailable, "")
		}
	case request:
		s.accountIQ(ctx, origin, el, to, false)
	}
}

// presenceIn handles presence from another server to a local user:
// subscriptions change the user's roster, probes are answered, presence
// is delivered (and watched, so that it does not outlive the streams
// with its server).
func (s *Service) presenceIn(ctx context.Context, origin *remoteEntity, el *stanza.Element, to jid.JID) {
	local := to.Localpart()
	from := origin.jid
	typ := el.Type()
	if local == "" || typ != "error" && s.blockedRemote(ctx, local, from) {
		return
	}
	switch typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		in := el.Copy()
		in.SetAttr("from", from.Bare().String())
		in.SetAttr("to", to.Bare().String())
		// A request to a full roster was refused with unsubscribed.
		if _, err := s.subDeliver(ctx, typ, to.Bare(), from.Bare(), in); err != nil && !errors.Is(err, errContactRosterFull) {
			s.log.Error("chat: remote subscription", "type", typ, "from", from.String(), "to", to.String(), "err", err)
		}
	case "probe":
		s.probeIn(ctx, from, to)
	case "", "unavailable":
		s.remotePresence(ctx, el, from, to)
	case "error":
		if c := stanza.ErrorCondition(el); c == "remote-server-not-found" || c == "remote-server-timeout" {
			// A probe or a presence could not reach that server: what
			// was seen from it is out of date.
			s.watch.unreachable(s, from.Domainpart())
		}
		if to.Resourcepart() != "" {
			if dst := s.bound(local, to.Resourcepart()); dst != nil {
				s.send(dst, el)
			}
		}
	}
}

// remotePresence delivers available or unavailable presence from
// another server to a local user's sessions.
func (s *Service) remotePresence(ctx context.Context, el *stanza.Element, from, to jid.JID) {
	local := to.Localpart()
	var delivered bool
	if res := to.Resourcepart(); res != "" {
		if dst := s.bound(local, res); dst != nil {
			delivered = s.send(dst, el)
		}
	} else {
		for _, t := range s.available(local) {
			delivered = s.send(t.sess, el) || delivered
		}
	}
	if el.PresenceType() == stanza.UnavailablePresence {
		s.remoteNotify.gone(local, from)
		// An unavailable presence from the bare JID ends every resource
		// of it that the user saw.
		for _, full := range s.watch.gone(local, from) {
			if full != from.String() {
				q := el.Copy()
				q.SetAttr("from", full)
				s.presenceToUser(q, to.Bare())
			}
		}
		return
	}
	if delivered {
		s.watch.seen(local, from)
	}
	s.remoteCaps(ctx, local, from, el)
}

// probeIn answers another server's probe for a local user's presence
// (RFC 6121 §4.3.2): the presence of each available session to a
// subscriber, unavailable when there is none, and unsubscribed to a
// prober that is not subscribed.
func (s *Service) probeIn(ctx context.Context, from, to jid.JID) {
	local := to.Localpart()
	if ok, err := s.exists(ctx, local); err != nil || !ok {
		return
	}
	it, err := s.st.RosterItem(ctx, local, from.Bare().String())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("chat: roster for a remote probe", "user", local, "err", err)
		return
	}
	if err != nil || !isSubscriber(it.Subscription) {
		// Tells a user's server its roster is out of step (a service
		// probing gets nothing).
		if from.Localpart() != "" {
			s.sendRemote(subscriptionPresence("unsubscribed", to.Bare(), from.Bare()))
		}
		return
	}
	avail := s.available(local)
	if len(avail) == 0 {
		s.sendRemote(stanza.New(stanza.NSClient, "presence").SetAttr("from", to.Bare().String()).
			SetAttr("to", from.String()).SetType(stanza.UnavailablePresence))
		return
	}
	for _, t := range avail {
		q := t.Presence.Copy()
		q.SetAttr("to", from.String())
		s.sendRemote(q)
	}
}

// probe asks another server for contact's presence on behalf of from (a
// session's full JID at login, the user's bare JID otherwise).
func (s *Service) probe(from, contact jid.JID) {
	s.sendOut(stanza.NewPresence(stanza.ProbePresence).
		SetAttr("from", from.String()).SetAttr("to", contact.Bare().String()), contact)
}
