package muc

import (
	"context"
	"errors"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// MAM page sizes: the default when a query gives none, and the most
// answered at once.
const (
	mamDefaultMax = 50
	mamMaxMax     = 100
)

// mamIQ answers an archive query on a room (XEP-0313 with RSM paging).
func (s *Service) mamIQ(ctx context.Context, sess Session, iq, q *stanza.Element, name string) {
	s.mu.Lock()
	r := s.visibleRoom(sess, name)
	var roomJID jid.JID
	var cond stanza.Condition
	var text string
	if r == nil {
		cond, text = "item-not-found", "no such room"
	} else {
		roomJID = r.jid
		switch aff := r.affiliation(sess.JID().Bare()); {
		case aff == affOutcast:
			cond, text = "forbidden", "you are banned from this room"
		case r.cfg.MembersOnly && aff < affMember:
			cond, text = "forbidden", "the archive of a members-only room is for its members"
		case r.cfg.PasswordProtected && aff < affAdmin && r.occupantOf(sess) == nil:
			cond, text = "not-authorized", "this room has a password: enter the room with it to read its archive"
		}
	}
	s.mu.Unlock()
	if cond != "" {
		s.replyError(sess, iq, cond, text)
		return
	}
	if iq.IQType() == stanza.GetIQ {
		form := dataForm("form", NSMAM,
			field("with", "jid-single", "From this occupant (room/nick)"),
			field("start", "text-single", "Not before"),
			field("end", "text-single", "Not after"))
		s.send(sess, stanza.Result(iq, stanza.New(NSMAM, "query").Append(form)))
		return
	}

	rq := store.RoomQuery{Room: name, Max: mamDefaultMax}
	if x := q.Child(NSData, "x"); x != nil {
		for k, vals := range formValues(x) {
			if len(vals) == 0 || vals[0] == "" {
				continue
			}
			v := vals[0]
			switch k {
			case "start", "end":
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					s.replyError(sess, iq, stanza.BadRequest, "invalid "+k+" time")
					return
				}
				if k == "start" {
					rq.Start = t
				} else {
					rq.End = t
				}
			case "with":
				w, err := jid.Parse(v)
				if err != nil {
					s.replyError(sess, iq, stanza.JIDMalformed, "")
					return
				}
				if !w.Bare().Equal(roomJID) || w.Resourcepart() == "" {
					s.replyError(sess, iq, stanza.FeatureNotImplemented, "a room archive is filtered by occupant (room/nick) only")
					return
				}
				rq.Nick = w.Resourcepart()
			case "FORM_TYPE":
			default:
				s.replyError(sess, iq, stanza.FeatureNotImplemented, "unknown filter "+k)
				return
			}
		}
	}
	if s.retention > 0 {
		if oldest := s.now().Add(-s.retention); rq.Start.Before(oldest) {
			rq.Start = oldest
		}
	}
	if set := q.Child(NSRSM, "set"); set != nil {
		if m := set.Child(NSRSM, "max"); m != nil {
			n, err := strconv.Atoi(m.Text())
			if err != nil || n < 0 {
				s.replyError(sess, iq, stanza.BadRequest, "invalid max")
				return
			}
			rq.Max = max(1, min(n, mamMaxMax))
		}
		if a := set.Child(NSRSM, "after"); a != nil {
			rq.After = a.Text()
		}
		if b := set.Child(NSRSM, "before"); b != nil {
			rq.Before = b.Text()
			rq.Last = true
		}
	}
	page, err := s.st.RoomMessages(ctx, rq)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.replyError(sess, iq, stanza.ItemNotFound, "no message with that id in the archive")
		return
	case err != nil:
		s.log.Error("muc: query archive", "room", name, "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	queryID := q.Attr("queryid")
	me := sess.JID().String()
	for _, m := range page.Messages {
		el, err := stanza.Parse(m.Stanza)
		if err != nil {
			s.log.Error("muc: unreadable archived message", "room", name, "id", m.StanzaID, "err", err)
			continue
		}
		res := stanza.New(NSMAM, "result").SetAttr("id", m.StanzaID)
		if queryID != "" {
			res.SetAttr("queryid", queryID)
		}
		fwd := stanza.New(NSForward, "forwarded").Append(
			stanza.New(stanza.NSDelay, "delay").SetAttr("stamp", m.Stamp.UTC().Format("2006-01-02T15:04:05.000000Z")),
			el)
		if !s.sendWaiting(ctx, sess, stanza.New(stanza.NSClient, "message").
			SetAttr("from", roomJID.String()).SetAttr("to", me).SetAttr("id", newID()).
			Append(res.Append(fwd))) {
			return
		}
	}
	fin := stanza.New(NSMAM, "fin")
	if page.Complete {
		fin.SetAttr("complete", "true")
	}
	set := stanza.New(NSRSM, "set")
	if n := len(page.Messages); n > 0 {
		set.Append(
			stanza.New(NSRSM, "first").SetText(page.Messages[0].StanzaID),
			stanza.New(NSRSM, "last").SetText(page.Messages[n-1].StanzaID))
	}
	s.sendWaiting(ctx, sess, stanza.Result(iq, fin.Append(set)))
}
