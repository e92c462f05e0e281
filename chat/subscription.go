package chat

import (
	"context"
	"errors"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Subscription handling, RFC 6121 §3 and Appendix A. The "out" functions
// change the roster of the sender, a local user; the "in" functions the
// roster of a local recipient, whose sender may be of another server, and
// each delivers to the recipient's available sessions only when its state
// changed. subDeliver picks the "in" function, or federation when the
// recipient is of another server.

// subscriptionPresence builds a subscription stanza between bare JIDs.
func subscriptionPresence(typ string, from, to jid.JID) *stanza.Element {
	return stanza.New(stanza.NSClient, "presence").
		SetAttr("type", typ).
		SetAttr("from", from.Bare().String()).
		SetAttr("to", to.Bare().String())
}

func (s *Service) subscription(ctx context.Context, sess Session, el *stanza.Element, typ string, to jid.JID) {
	me := sess.JID().Bare()
	if !s.isLocal(to) && !s.isRemote(to) {
		s.replyError(sess, el, stanza.RemoteServerNotFound, "this server does not federate")
		return
	}
	contact := to.Bare()
	if to.Localpart() == "" || contact.Equal(me) {
		return // the server and the user itself need no subscription
	}
	// Subscription stanzas travel between bare JIDs (RFC 6121 §3.1.2).
	out := el.Copy()
	out.SetAttr("from", me.String())
	out.SetAttr("to", contact.String())
	var err error
	switch typ {
	case "subscribe":
		err = s.outSubscribe(ctx, me, contact, out)
	case "subscribed":
		err = s.outSubscribed(ctx, me, contact, out)
	case "unsubscribe":
		err = s.outUnsubscribe(ctx, me, contact, out)
	case "unsubscribed":
		err = s.outUnsubscribed(ctx, me, contact, out)
	}
	switch {
	case errors.Is(err, errRosterFull):
		s.replyError(sess, el, stanza.ResourceConstraint, s.rosterFullText())
	case errors.Is(err, errContactRosterFull):
		s.replyError(sess, el, stanza.ResourceConstraint, contact.String()+" cannot take more contact requests")
	case err != nil:
		s.log.Error("chat: subscription", "type", typ, "from", me.String(), "to", contact.String(), "err", err)
		s.replyError(sess, el, stanza.InternalServerError, "")
	}
}

// errContactRosterFull says a subscription request was refused because
// the contact's roster is full (Limits.RosterItems).
var errContactRosterFull = errors.New("chat: the contact's roster is full")

// subDeliver hands a subscription stanza of type typ from 'from' to its
// recipient 'to' (bare JIDs): a local recipient's roster changes (the
// matching "in" function), or the stanza goes to the recipient's server.
// It reports whether the recipient's state changed; for a recipient of
// another server, whose state is not known here, whether it was sent.
func (s *Service) subDeliver(ctx context.Context, typ string, to, from jid.JID, el *stanza.Element) (bool, error) {
	if !s.isLocal(to) {
		return s.sendOut(el, to), nil
	}
	switch typ {
	case "subscribe":
		return true, s.inSubscribe(ctx, to, from, el)
	case "subscribed":
		return s.inSubscribed(ctx, to, from, el)
	case "unsubscribe":
		return true, s.inUnsubscribe(ctx, to, from, el)
	case "unsubscribed":
		return true, s.inUnsubscribed(ctx, to, from, el)
	}
	return false, nil
}

func isSubscriber(sub string) bool { return sub == store.SubFrom || sub == store.SubBoth }
func isSubscribed(sub string) bool { return sub == store.SubTo || sub == store.SubBoth }

// outSubscribe: user asks to see contact's presence (§3.1.2).
func (s *Service) outSubscribe(ctx context.Context, user, contact jid.JID, out *stanza.Element) error {
	_, _, err := s.updateItem(ctx, user.Localpart(), contact.String(), func(it *store.RosterItem) {
		it.Listed = true
		if !isSubscribed(it.Subscription) {
			it.AskOut = true
		}
	})
	if err != nil {
		return err
	}
	_, err = s.subDeliver(ctx, "subscribe", contact, user, out)
	return err
}

// inSubscribe: contact receives user's request (§3.1.3).
func (s *Service) inSubscribe(ctx context.Context, contact, user jid.JID, in *stanza.Element) error {
	ok, err := s.exists(ctx, contact.Localpart())
	if err != nil {
		return err
	}
	if !ok {
		// Nobody to ask: refuse on the contact's behalf so the request
		// does not stay pending forever.
		_, err := s.subDeliver(ctx, "unsubscribed", user, contact, subscriptionPresence("unsubscribed", contact, user))
		return err
	}
	auto := false
	_, _, err = s.updateItem(ctx, contact.Localpart(), user.String(), func(it *store.RosterItem) {
		if isSubscriber(it.Subscription) {
			auto = true
			return
		}
		it.PendingIn = true
	})
	if errors.Is(err, errRosterFull) {
		// The request would grow a full roster: refuse it on the
		// contact's behalf, so it does not stay pending either.
		if _, err := s.subDeliver(ctx, "unsubscribed", user, contact, subscriptionPresence("unsubscribed", contact, user)); err != nil {
			return err
		}
		return errContactRosterFull
	}
	if err != nil {
		return err
	}
	if auto {
		// Already approved: answer for the contact.
		changed, err := s.subDeliver(ctx, "subscribed", user, contact, subscriptionPresence("subscribed", contact, user))
		if err == nil && changed {
			s.sendPresenceFrom(contact.Localpart(), user)
			s.lastItemsOnApproval(ctx, user, contact.Localpart())
		}
		return err
	}
	// Delivered now to available sessions, and at every initial presence
	// until answered (the PendingIn flag).
	for _, t := range s.available(contact.Localpart()) {
		s.send(t.sess, in)
	}
	return nil
}

// outSubscribed: contact (the sender) approves user's request (§3.1.5).
// Pre-approval is not supported: without a pending request nothing happens.
func (s *Service) outSubscribed(ctx context.Context, contact, user jid.JID, out *stanza.Element) error {
	approved := false
	_, _, err := s.updateItem(ctx, contact.Localpart(), user.String(), func(it *store.RosterItem) {
		if !it.PendingIn {
			return
		}
		approved = true
		it.PendingIn = false
		it.Listed = true
		switch it.Subscription {
		case store.SubNone:
			it.Subscription = store.SubFrom
		case store.SubTo:
			it.Subscription = store.SubBoth
		}
	})
	if err != nil || !approved {
		return err
	}
	changed, err := s.subDeliver(ctx, "subscribed", user, contact, out)
	if err == nil && changed {
		s.sendPresenceFrom(contact.Localpart(), user)
		s.lastItemsOnApproval(ctx, user, contact.Localpart())
	}
	return err
}

// inSubscribed: user learns contact approved (§3.1.6). It reports whether
// user's state changed.
func (s *Service) inSubscribed(ctx context.Context, user, contact jid.JID, in *stanza.Element) (bool, error) {
	changed := false
	_, _, err := s.updateItem(ctx, user.Localpart(), contact.String(), func(it *store.RosterItem) {
		if !it.AskOut {
			return
		}
		changed = true
		it.AskOut = false
		switch it.Subscription {
		case store.SubNone:
			it.Subscription = store.SubTo
		case store.SubFrom:
			it.Subscription = store.SubBoth
		}
	})
	if err != nil || !changed {
		return changed, err
	}
	for _, t := range s.available(user.Localpart()) {
		s.send(t.sess, in)
	}
	return true, nil
}

// outUnsubscribe: user stops seeing contact's presence (§3.3.2).
func (s *Service) outUnsubscribe(ctx context.Context, user, contact jid.JID, out *stanza.Element) error {
	_, _, err := s.updateItem(ctx, user.Localpart(), contact.String(), func(it *store.RosterItem) {
		it.AskOut = false
		switch it.Subscription {
		case store.SubTo:
			it.Subscription = store.SubNone
		case store.SubBoth:
			it.Subscription = store.SubFrom
		}
	})
	if err != nil {
		return err
	}
	_, err = s.subDeliver(ctx, "unsubscribe", contact, user, out)
	return err
}

// inUnsubscribe: contact learns user no longer wants its presence
// (§3.3.3); user gets unavailable from contact's sessions.
func (s *Service) inUnsubscribe(ctx context.Context, contact, user jid.JID, in *stanza.Element) error {
	changed, wasSubscriber := false, false
	_, _, err := s.updateItem(ctx, contact.Localpart(), user.String(), func(it *store.RosterItem) {
		if it.PendingIn {
			it.PendingIn = false
			changed = true
		}
		switch it.Subscription {
		case store.SubFrom:
			it.Subscription = store.SubNone
			changed, wasSubscriber = true, true
		case store.SubBoth:
			it.Subscription = store.SubTo
			changed, wasSubscriber = true, true
		}
	})
	if err != nil || !changed {
		return err
	}
	for _, t := range s.available(contact.Localpart()) {
		s.send(t.sess, in)
	}
	if wasSubscriber {
		s.sendUnavailableFrom(contact.Localpart(), user)
	}
	return nil
}

// outUnsubscribed: contact cancels user's subscription or refuses a
// request (§3.2.2); user gets unavailable from contact's sessions.
func (s *Service) outUnsubscribed(ctx context.Context, contact, user jid.JID, out *stanza.Element) error {
	wasSubscriber := false
	_, _, err := s.updateItem(ctx, contact.Localpart(), user.String(), func(it *store.RosterItem) {
		it.PendingIn = false
		switch it.Subscription {
		case store.SubFrom:
			it.Subscription = store.SubNone
			wasSubscriber = true
		case store.SubBoth:
			it.Subscription = store.SubTo
			wasSubscriber = true
		}
	})
	if err != nil {
		return err
	}
	if _, err := s.subDeliver(ctx, "unsubscribed", user, contact, out); err != nil {
		return err
	}
	if wasSubscriber {
		s.sendUnavailableFrom(contact.Localpart(), user)
	}
	return nil
}

// inUnsubscribed: user learns it is not (or no longer) subscribed to
// contact (§3.2.3).
func (s *Service) inUnsubscribed(ctx context.Context, user, contact jid.JID, in *stanza.Element) error {
	ok, err := s.exists(ctx, user.Localpart())
	if err != nil || !ok {
		return err
	}
	changed := false
	_, _, err = s.updateItem(ctx, user.Localpart(), contact.String(), func(it *store.RosterItem) {
		if it.AskOut {
			it.AskOut = false
			changed = true
		}
		switch it.Subscription {
		case store.SubTo:
			it.Subscription = store.SubNone
			changed = true
		case store.SubBoth:
			it.Subscription = store.SubFrom
			changed = true
		}
	})
	if err != nil || !changed {
		return err
	}
	for _, t := range s.available(user.Localpart()) {
		s.send(t.sess, in)
	}
	return nil
}
