package muc

import (
	"context"
	"slices"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// handleIQ answers IQs to the service and to rooms, and relays requests
// between occupants (room/nick) and their answers.
func (s *Service) handleIQ(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	typ := el.Type()
	if typ != "get" && typ != "set" {
		switch {
		case typ == "result" || typ == "error":
			if to.Resourcepart() != "" {
				s.relayAnswer(ctx, sess, el, to)
			}
		default:
			s.replyError(sess, el, stanza.BadRequest, "an iq is get, set, result or error")
		}
		return
	}
	els := el.Elements()
	if len(els) != 1 {
		s.replyError(sess, el, stanza.BadRequest, "an iq request carries exactly one payload")
		return
	}
	q := els[0]
	switch {
	case to.Localpart() == "":
		s.serviceIQ(sess, el, q)
	case to.Resourcepart() != "":
		s.relayRequest(ctx, sess, el, q, to)
	case q.Space == NSDiscoInfo && q.Local == "query":
		s.roomInfo(sess, el, q, to.Localpart())
	case q.Space == NSDiscoItems && q.Local == "query":
		s.roomItems(sess, el, q, to.Localpart())
	case q.Space == NSAdmin && q.Local == "query":
		s.adminIQ(ctx, sess, el, q, to.Localpart())
	case q.Space == NSOwner && q.Local == "query":
		s.ownerIQ(ctx, sess, el, q, to.Localpart())
	case q.Space == NSMAM && q.Local == "query":
		s.mamIQ(ctx, sess, el, q, to.Localpart())
	default:
		s.replyError(sess, el, stanza.ServiceUnavailable, "")
	}
}

// maxRelayed is the most requests between occupants awaiting an answer;
// past it the oldest is forgotten (its answer is then dropped).
const maxRelayed = 1024

// relayed is a request between occupants awaiting its answer, filed
// under the id the room gave the relayed copy.
type relayed struct {
	from     Session // the requester
	id       string  // the requester's id
	room     string
	fromNick string  // the requester's nickname, where the answer is addressed
	to       Session // the occupant asked
}

// relayRequest relays an IQ get or set from an occupant to another one
// (from room/nick, with an id of the room's), or answers a ping to one's
// own nickname on the room's behalf (XEP-0410).
func (s *Service) relayRequest(ctx context.Context, sess Session, iq, q *stanza.Element, to jid.JID) {
	var fx effects
	s.mu.Lock()
	r := s.rooms[to.Localpart()]
	var o, dst *occupant
	if r != nil {
		o, dst = r.occupantOf(sess), r.occupants[to.Resourcepart()]
	}
	switch {
	case o == nil:
		errorFx(&fx, sess, iq, stanza.NotAcceptable, "you are not in this room")
	case dst == nil:
		errorFx(&fx, sess, iq, stanza.ItemNotFound, "no occupant has that nickname")
	case dst == o && q.Space == NSPing && q.Local == "ping" && iq.IQType() == stanza.GetIQ:
		fx.send(sess, stanza.Result(iq))
	default:
		target := dst.sessions[0]
		id := newID()
		fwd := iq.Copy()
		fwd.SetAttr("id", id)
		fwd.SetAttr("from", r.occupantJID(o.nick))
		fwd.SetAttr("to", target.JID().String())
		s.relayed[id] = relayed{from: sess, id: iq.ID(), room: r.name, fromNick: o.nick, to: target}
		s.relayOrder = append(s.relayOrder, id)
		for len(s.relayed) > maxRelayed {
			delete(s.relayed, s.relayOrder[0])
			s.relayOrder = s.relayOrder[1:]
		}
		if len(s.relayOrder) > 2*maxRelayed {
			s.relayOrder = slices.DeleteFunc(s.relayOrder, func(k string) bool { _, ok := s.relayed[k]; return !ok })
		}
		fx.send(target, fwd)
	}
	s.unlockAndRun(ctx, &fx)
}

// relayAnswer takes an occupant's answer to a relayed request back to the
// requester, with the requester's id, from the answerer's nickname.
// Answers nobody is waiting for, or from anyone but the occupant asked,
// are dropped.
func (s *Service) relayAnswer(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	var fx effects
	s.mu.Lock()
	p, ok := s.relayed[el.ID()]
	var o *occupant
	if r := s.rooms[to.Localpart()]; ok && r != nil && p.to == sess && p.room == r.name && p.fromNick == to.Resourcepart() {
		o = r.occupantOf(sess)
		if o != nil {
			delete(s.relayed, el.ID())
			a := el.Copy()
			a.SetAttr("id", p.id)
			a.SetAttr("from", r.occupantJID(o.nick))
			a.SetAttr("to", p.from.JID().String())
			fx.send(p.from, a)
		}
	}
	s.unlockAndRun(ctx, &fx)
}

func (s *Service) send(sess Session, el *stanza.Element) {
	if err := sess.Send(el); err != nil {
		s.log.Debug("muc: send failed", "jid", sess.JID().String(), "err", err)
	}
}

// waitSender is a session that can wait for room in its write queue
// (*signaling.Session).
type waitSender interface {
	SendWait(ctx context.Context, el *stanza.Element) error
}

// pageSendTimeout bounds how long one stanza of an archive page waits for
// room in a slow client's queue.
const pageSendTimeout = 30 * time.Second

// sendWaiting is send for one of many stanzas the session asked for (an
// archive page), on its own goroutine: it waits for room in the session's
// queue, which is bounded in bytes, rather than taking a page of large
// messages for a client that stopped reading. false: give up the page.
func (s *Service) sendWaiting(ctx context.Context, sess Session, el *stanza.Element) bool {
	ws, ok := sess.(waitSender)
	if !ok {
		s.send(sess, el)
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, pageSendTimeout)
	defer cancel()
	if err := ws.SendWait(ctx, el); err != nil {
		s.log.Debug("muc: archive page stopped", "jid", sess.JID().String(), "err", err)
		return false
	}
	return true
}

// serviceIQ answers disco on conference.DOMAIN itself.
func (s *Service) serviceIQ(sess Session, iq, q *stanza.Element) {
	switch {
	case q.Space == NSDiscoInfo && q.Local == "query" && iq.IQType() == stanza.GetIQ && q.Attr("node") == "":
		info := stanza.New(NSDiscoInfo, "query").Append(
			stanza.New(NSDiscoInfo, "identity").SetAttr("category", "conference").SetAttr("type", "text").SetAttr("name", "Group rooms"),
			feature(NSDiscoInfo), feature(NSDiscoItems), feature(NSMUC), feature(NSPing), feature(NSConference),
		)
		s.send(sess, stanza.Result(iq, info))
	case q.Space == NSDiscoItems && q.Local == "query" && iq.IQType() == stanza.GetIQ && q.Attr("node") == "":
		items := stanza.New(NSDiscoItems, "query")
		for _, it := range s.Items() {
			items.Append(stanza.New(NSDiscoItems, "item").SetAttr("jid", it.JID).SetAttr("name", it.Name))
		}
		s.send(sess, stanza.Result(iq, items))
	case q.Space == NSPing && q.Local == "ping" && iq.IQType() == stanza.GetIQ:
		s.send(sess, stanza.Result(iq))
	case (q.Space == NSDiscoInfo || q.Space == NSDiscoItems) && q.Local == "query":
		if iq.IQType() != stanza.GetIQ {
			s.replyError(sess, iq, stanza.BadRequest, "")
		} else {
			s.replyError(sess, iq, stanza.ItemNotFound, "")
		}
	default:
		s.replyError(sess, iq, stanza.ServiceUnavailable, "")
	}
}

func feature(v string) *stanza.Element {
	return stanza.New(NSDiscoInfo, "feature").SetAttr("var", v)
}

// visibleRoom returns the room name if it exists and sess may see it
// (a locked room is visible to its owner only). s.mu must be held.
func (s *Service) visibleRoom(sess Session, name string) *room {
	r := s.rooms[name]
	if r == nil || (r.locked && r.affiliation(sess.JID().Bare()) != affOwner) {
		return nil
	}
	return r
}

// roomInfo answers disco#info on a room: identity, features that describe
// its configuration, and the muc#roominfo form.
func (s *Service) roomInfo(sess Session, iq, q *stanza.Element, name string) {
	if iq.IQType() != stanza.GetIQ {
		s.replyError(sess, iq, stanza.BadRequest, "")
		return
	}
	if q.Attr("node") != "" {
		s.replyError(sess, iq, stanza.ItemNotFound, "")
		return
	}
	s.mu.Lock()
	r := s.visibleRoom(sess, name)
	if r == nil {
		s.mu.Unlock()
		s.replyError(sess, iq, stanza.ItemNotFound, "no such room")
		return
	}
	info := stanza.New(NSDiscoInfo, "query").Append(
		stanza.New(NSDiscoInfo, "identity").SetAttr("category", "conference").SetAttr("type", "text").SetAttr("name", r.title()))
	for _, f := range r.features() {
		info.Append(feature(f))
	}
	form := dataForm("result", NSMUC+"#roominfo",
		field("muc#roominfo_description", "text-single", "Description", r.cfg.Description),
		field("muc#roominfo_occupants", "text-single", "Number of occupants", strconv.Itoa(len(r.occupants))),
		field("muc#roominfo_subject", "text-single", "Subject", r.subject),
		field("muc#roomconfig_roomname", "text-single", "Name", r.cfg.Name),
		field("muc#roomconfig_changesubject", "boolean", "Occupants may change the subject", boolString(r.cfg.ChangeSubject)),
		field("poosms#conference", "text-single", "Who may take part in the conference", r.cfg.Conference),
		field("poosms#conference_nonoccupants", "boolean", "Users who are not in the room may join its conference", boolString(r.cfg.ConferenceNonOccupants)),
	)
	s.mu.Unlock()
	s.send(sess, stanza.Result(iq, info.Append(form)))
}

// features lists what disco#info says about r. s.mu must be held.
func (r *room) features() []string {
	pick := func(cond bool, yes, no string) string {
		if cond {
			return yes
		}
		return no
	}
	return []string{
		NSMUC,
		NSDiscoInfo,
		NSDiscoItems,
		NSMAM,
		NSStanzaID,
		NSConference,
		NSSelfPing,
		NSStableID,
		pick(r.cfg.Public, "muc_public", "muc_hidden"),
		pick(r.cfg.Persistent, "muc_persistent", "muc_temporary"),
		pick(r.cfg.MembersOnly, "muc_membersonly", "muc_open"),
		pick(r.cfg.PasswordProtected, "muc_passwordprotected", "muc_unsecured"),
		pick(r.cfg.Moderated, "muc_moderated", "muc_unmoderated"),
		pick(r.cfg.WhoIs == whoisAnyone, "muc_nonanonymous", "muc_semianonymous"),
	}
}

// roomItems answers disco#items on a room: the occupants, to an occupant
// who may see real JIDs anyway; otherwise an empty list.
func (s *Service) roomItems(sess Session, iq, q *stanza.Element, name string) {
	if iq.IQType() != stanza.GetIQ {
		s.replyError(sess, iq, stanza.BadRequest, "")
		return
	}
	if q.Attr("node") != "" {
		s.replyError(sess, iq, stanza.ItemNotFound, "")
		return
	}
	s.mu.Lock()
	r := s.visibleRoom(sess, name)
	if r == nil {
		s.mu.Unlock()
		s.replyError(sess, iq, stanza.ItemNotFound, "no such room")
		return
	}
	items := stanza.New(NSDiscoItems, "query")
	if me := r.occupantOf(sess); me != nil && r.seesJIDs(me.role) {
		for _, o := range r.sorted() {
			items.Append(stanza.New(NSDiscoItems, "item").SetAttr("jid", r.occupantJID(o.nick)).SetAttr("name", o.nick))
		}
	}
	s.mu.Unlock()
	s.send(sess, stanza.Result(iq, items))
}

// dataForm builds a jabber:x:data form of type typ with a FORM_TYPE.
func dataForm(typ, formType string, fields ...*stanza.Element) *stanza.Element {
	x := stanza.New(NSData, "x").SetAttr("type", typ)
	x.Append(stanza.New(NSData, "field").SetAttr("var", "FORM_TYPE").SetAttr("type", "hidden").
		Append(stanza.New(NSData, "value").SetText(formType)))
	return x.Append(fields...)
}

// field builds a form field with its values.
func field(name, typ, label string, values ...string) *stanza.Element {
	f := stanza.New(NSData, "field").SetAttr("var", name).SetAttr("type", typ).SetAttr("label", label)
	for _, v := range values {
		f.Append(stanza.New(NSData, "value").SetText(v))
	}
	return f
}

// listField builds a list-single field with its options.
func listField(name, label, value string, options ...string) *stanza.Element {
	f := field(name, "list-single", label, value)
	for _, o := range options {
		f.Append(stanza.New(NSData, "option").SetAttr("label", o).Append(stanza.New(NSData, "value").SetText(o)))
	}
	return f
}

// formValues returns the values of a submitted form by field name.
func formValues(x *stanza.Element) map[string][]string {
	out := map[string][]string{}
	for _, f := range x.Elements() {
		if f.Space != NSData || f.Local != "field" {
			continue
		}
		var vals []string
		for _, v := range f.Elements() {
			if v.Local == "value" {
				vals = append(vals, v.Text())
			}
		}
		out[f.Attr("var")] = vals
	}
	return out
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func parseBool(s string) (bool, bool) {
	switch s {
	case "1", "true":
		return true, true
	case "0", "false":
		return false, true
	}
	return false, false
}
