package chat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// messageType returns el's type, with absent or unknown values as "normal"
// (RFC 6121 §5.2.2).
func messageType(el *stanza.Element) stanza.MessageType {
	switch t := el.MessageType(); t {
	case stanza.ChatMessage, stanza.GroupChatMessage, stanza.HeadlineMessage, stanza.ErrorMessage:
		return t
	}
	return stanza.NormalMessage
}

func (s *Service) handleMessage(ctx context.Context, sess Session, el *stanza.Element, to jid.JID, hasTo bool) {
	if !hasTo {
		// RFC 6120 §10.3.1: as if addressed to the sender's bare JID.
		to = sess.JID().Bare()
		el.SetTo(to, to.String())
	}
	typ := messageType(el)
	switch {
	case s.isRemote(to):
		s.messageOut(ctx, sess, el, to)
	case !s.isLocal(to):
		if typ != stanza.ErrorMessage {
			s.replyError(sess, el, stanza.RemoteServerNotFound, "this server does not federate")
		}
	case to.Localpart() == "":
		// The server itself keeps no conversation.
		if typ != stanza.ErrorMessage && el.Child("", "body") != nil {
			s.replyError(sess, el, stanza.ServiceUnavailable, "")
		}
	default:
		s.routeChat(ctx, sess, el, to)
	}
}

// routeMessage delivers a message to a local user per RFC 6121 §8.5. It
// returns the sessions that received it.
func (s *Service) routeMessage(ctx context.Context, sender Session, el *stanza.Element, to jid.JID) (delivered []Session) {
	typ := messageType(el)
	local := to.Localpart()
	if res := to.Resourcepart(); res != "" {
		if sess := s.bound(local, res); sess != nil && s.send(sess, el) {
			return []Session{sess}
		}
		// §8.5.3.2.1: no such resource.
		switch typ {
		case stanza.ErrorMessage, stanza.HeadlineMessage:
			return
		case stanza.GroupChatMessage:
			s.replyError(sender, el, stanza.ServiceUnavailable, "")
			return
		}
		// chat and normal fall back to the bare JID.
	} else if typ == stanza.ErrorMessage {
		return
	}

	var best []target
	top := -1
	for _, t := range s.available(local) {
		if t.Priority < 0 {
			continue
		}
		switch {
		case typ == stanza.HeadlineMessage:
			best = append(best, t)
		case t.Priority > top:
			top = t.Priority
			best = []target{t}
		case t.Priority == top:
			best = append(best, t)
		}
	}
	if len(best) > 0 {
		if typ == stanza.GroupChatMessage {
			s.replyError(sender, el, stanza.ServiceUnavailable, "")
			return
		}
		for _, t := range best {
			if s.send(t.sess, el) {
				delivered = append(delivered, t.sess)
			}
		}
		if len(delivered) > 0 || typ == stanza.HeadlineMessage {
			return delivered
		}
		// Every chosen session ended meanwhile: keep the message for later.
	}

	ok, err := s.exists(ctx, local)
	if err != nil {
		s.log.Error("chat: route message", "to", to.String(), "err", err)
		s.replyError(sender, el, stanza.InternalServerError, "")
		return
	}
	if !ok {
		s.replyError(sender, el, stanza.ServiceUnavailable, "")
		return
	}
	switch typ {
	case stanza.GroupChatMessage:
		s.replyError(sender, el, stanza.ServiceUnavailable, "")
	case stanza.HeadlineMessage, stanza.ErrorMessage:
	default:
		if storable(el) {
			s.storeOffline(ctx, sender, el, local)
		}
	}
	return nil
}

// storable reports whether a message carries anything worth keeping for
// later: chat-state notifications and thread ids alone are not.
func storable(el *stanza.Element) bool {
	for _, c := range el.Elements() {
		if c.Space == NSChatStates || c.Local == "thread" || c.Local == "error" {
			continue
		}
		return true
	}
	return false
}

// storeOffline queues el for local. A full queue or a store failure is
// answered to the sender: a message is never dropped silently.
func (s *Service) storeOffline(ctx context.Context, sender Session, el *stanza.Element, local string) {
	from := ""
	if j, err := el.FromJID(); err == nil {
		from = j.Bare().String() // so that the sender's account deletion withdraws it
	}
	err := s.st.PushOfflineWithin(ctx, local, from, s.now().UTC(), []byte(el.String()), s.limit, s.lim.OfflinePerSender)
	switch {
	case errors.Is(err, store.ErrQueueFull):
		s.replyError(sender, el, stanza.ResourceConstraint, "the recipient's offline storage is full")
		return
	case errors.Is(err, store.ErrLimit):
		s.replyError(sender, el, stanza.ResourceConstraint,
			fmt.Sprintf("you have %d messages waiting for this offline user already; more are refused until they are read", s.lim.OfflinePerSender))
		return
	case errors.Is(err, store.ErrNotFound):
		// The account was deleted a moment ago.
		s.replyError(sender, el, stanza.ServiceUnavailable, "")
		return
	case err != nil:
		s.log.Error("chat: store offline message", "to", local, "err", err)
		s.replyError(sender, el, stanza.InternalServerError, "")
		return
	}
	// The recipient may have come online while the message was stored.
	s.drainHere(ctx, local)
}

// drainOffline delivers local's queued messages to sess, oldest first, each
// with an XEP-0203 delay stamp, and removes those delivered.
func (s *Service) drainOffline(ctx context.Context, local string, sess Session) {
	lk := s.offlineLock(local)
	lk.Lock()
	defer lk.Unlock()
	msgs, err := s.st.OfflineMessages(ctx, local)
	if err != nil {
		s.log.Error("chat: load offline messages", "jid", sess.JID().String(), "err", err)
		return
	}
	var done int64
	seen := false
	for _, m := range msgs {
		el, err := stanza.Parse(m.Stanza)
		if err != nil {
			// It can never be delivered; drop it rather than block the queue.
			s.log.Error("chat: unreadable offline message", "jid", sess.JID().String(), "id", m.ID, "err", err)
			done, seen = m.ID, true
			continue
		}
		if !stanza.HasDelayFrom(el, s.domain) {
			// A message a session handed back is stamped already, with
			// the time it was first queued.
			el.Append(s.delay(m.Stamp))
		}
		if !s.sendBulk(ctx, sess, el) {
			break
		}
		done, seen = m.ID, true
	}
	if !seen {
		return
	}
	if err := s.st.DeleteOffline(ctx, local, done); err != nil {
		s.log.Error("chat: delete offline messages", "jid", sess.JID().String(), "err", err)
	}
}

// waitSender is a session that can wait for room in its write queue.
type waitSender interface {
	SendWait(ctx context.Context, el *stanza.Element) error
}

// offlineSendTimeout bounds how long a batch (the offline queue, an
// archive page) waits for a slow client to make room; what the offline
// queue does not send stays queued for next time.
const offlineSendTimeout = 30 * time.Second

// sendBulk is send for a batch the client asked for (the offline queue,
// an archive page): it waits for room in the session's queue instead of
// treating a full queue as a client that stopped reading. The queue is
// bounded in bytes, and a page of large messages may not fit at once.
func (s *Service) sendBulk(ctx context.Context, sess Session, el *stanza.Element) bool {
	ws, ok := sess.(waitSender)
	if !ok || (s.blockActive.Load() > 0 && s.blockedBetween(sess.JID(), el.From())) {
		return s.send(sess, el)
	}
	ctx, cancel := context.WithTimeout(ctx, offlineSendTimeout)
	defer cancel()
	if err := ws.SendWait(ctx, el); err != nil {
		s.log.Debug("chat: offline delivery stopped", "jid", sess.JID().String(), "err", err)
		return false
	}
	return true
}

// delay builds <delay xmlns='urn:xmpp:delay' from='DOMAIN' stamp='…'/>.
func (s *Service) delay(stamp time.Time) *stanza.Element {
	return stanza.New(stanza.NSDelay, "delay").
		SetAttr("from", s.domain).
		SetAttr("stamp", stamp.UTC().Format(time.RFC3339)).
		SetText("Offline storage")
}
