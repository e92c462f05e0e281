package chat

import (
	"context"
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// vcardIQ serves vcard-temp (XEP-0054): a user sets their own vCard and
// anyone local may read any user's.
func (s *Service) vcardIQ(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID, self bool) {
	if iq.IQType() == stanza.SetIQ {
		if !self {
			s.replyError(sess, iq, stanza.Forbidden, "a vCard is set by its owner")
			return
		}
		v := q.Copy()
		raw := []byte(v.String())
		if len(raw) > s.lim.VCardBytes {
			s.replyError(sess, iq, stanza.NotAcceptable, fmt.Sprintf("a vCard may be at most %d bytes, photo included", s.lim.VCardBytes))
			return
		}
		if err := s.vcardSt.SetVCard(ctx, owner.Localpart(), raw); err != nil {
			s.log.Error("chat: save vcard", "jid", sess.JID().String(), "err", err)
			s.replyError(sess, iq, stanza.InternalServerError, "")
			return
		}
		s.send(sess, stanza.Result(iq))
		return
	}
	if !self {
		ok, err := s.exists(ctx, owner.Localpart())
		if err != nil || !ok {
			s.replyError(sess, iq, stanza.ServiceUnavailable, "")
			return
		}
	}
	raw, err := s.vcardSt.VCard(ctx, owner.Localpart())
	switch {
	case errors.Is(err, store.ErrNotFound):
		// XEP-0054 §3.1: no vCard is an empty one.
		s.send(sess, stanza.Result(iq, stanza.New(NSVCard, "vCard")))
		return
	case err != nil:
		s.log.Error("chat: load vcard", "jid", sess.JID().String(), "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	v, err := stanza.Parse(raw)
	if err != nil {
		s.log.Error("chat: unreadable vcard", "owner", owner.String(), "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	s.send(sess, stanza.Result(iq, v))
}
