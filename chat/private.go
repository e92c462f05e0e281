package chat

import (
	"context"
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// maxPrivateBytes bounds one stored private XML payload; Limits.PrivateBytes
// bounds them all together.
const maxPrivateBytes = 64 << 10

// maxPrivateNamespace is the longest namespace kept (the store's column).
const maxPrivateNamespace = 1024

// privateIQ serves private XML storage (XEP-0049): one payload per
// namespace, readable and writable by its owner only.
func (s *Service) privateIQ(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID, _ bool) {
	if iq.To() != "" && iq.To() != owner.Bare().String() {
		s.replyError(sess, iq, stanza.ServiceUnavailable, "")
		return
	}
	els := q.Elements()
	if len(els) != 1 {
		s.replyError(sess, iq, stanza.BadRequest, "private storage carries exactly one element")
		return
	}
	p := els[0]
	if p.Space == "" || p.Space == stanza.NSClient || p.Space == NSPrivate {
		s.replyError(sess, iq, stanza.NotAcceptable, "the element needs a namespace of its own")
		return
	}
	if len(p.Space) > maxPrivateNamespace {
		s.replyError(sess, iq, stanza.NotAcceptable, "the namespace is too long")
		return
	}
	if iq.IQType() == stanza.SetIQ {
		raw := []byte(p.String())
		if len(raw) > maxPrivateBytes {
			s.replyError(sess, iq, stanza.NotAcceptable, "the payload is too large")
			return
		}
		err := s.privSt.SetPrivateXMLWithin(ctx, owner.Localpart(), p.Space, raw, int64(s.lim.PrivateBytes))
		if errors.Is(err, store.ErrLimit) {
			s.replyError(sess, iq, stanza.ResourceConstraint,
				fmt.Sprintf("private storage holds at most %d bytes in all: clear some first", s.lim.PrivateBytes))
			return
		}
		if err != nil {
			s.log.Error("chat: save private xml", "jid", sess.JID().String(), "err", err)
			s.replyError(sess, iq, stanza.InternalServerError, "")
			return
		}
		s.send(sess, stanza.Result(iq))
		if p.Space == nsBookmarksLegacy && p.Local == "storage" {
			s.syncBookmarksFromLegacy(ctx, sess, owner.Localpart(), p)
		}
		return
	}
	res := stanza.New(NSPrivate, "query")
	raw, err := s.privSt.PrivateXML(ctx, owner.Localpart(), p.Space)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Nothing stored: the empty element comes back.
		res.Append(stanza.New(p.Space, p.Local))
	case err != nil:
		s.log.Error("chat: load private xml", "jid", sess.JID().String(), "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	default:
		v, err := stanza.Parse(raw)
		if err != nil {
			s.log.Error("chat: unreadable private xml", "jid", sess.JID().String(), "err", err)
			s.replyError(sess, iq, stanza.InternalServerError, "")
			return
		}
		res.Append(v)
	}
	s.send(sess, stanza.Result(iq, res))
}
