package muc

import (
	"context"
	"strconv"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// handleIQ answers IQs to the service and to rooms. IQs to an occupant
// (room/nick) are not relayed.
func (s *Service) handleIQ(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	typ := el.Type()
	if typ != "get" && typ != "set" {
		if typ != "result" && typ != "error" {
			s.replyError(sess, el, "bad-request", "an iq is get, set, result or error")
		}
		return
	}
	els := el.Elements()
	if len(els) != 1 {
		s.replyError(sess, el, "bad-request", "an iq request carries exactly one payload")
		return
	}
	q := els[0]
	switch {
	case to.Localpart() == "":
		s.serviceIQ(sess, el, q)
	case to.Resourcepart() != "" && q.Space == NSPing && q.Local == "ping" && typ == "get":
		s.selfPing(sess, el, to)
	case to.Resourcepart() != "":
		s.replyError(sess, el, "service-unavailable", "requests to occupants are not relayed")
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
		s.replyError(sess, el, "service-unavailable", "")
	}
}

// selfPing answers a ping to room/nick on the occupant's behalf
// (XEP-0410): a result if sess is that occupant, not-acceptable if sess is
// not in the room. Pings to other occupants are not relayed.
func (s *Service) selfPing(sess Session, iq *stanza.Element, to jid.JID) {
	s.mu.Lock()
	var o *occupant
	if r := s.rooms[to.Localpart()]; r != nil {
		o = r.occupantOf(sess)
	}
	s.mu.Unlock()
	switch {
	case o == nil:
		s.replyError(sess, iq, "not-acceptable", "you are not in this room")
	case o.nick == to.Resourcepart():
		s.send(sess, stanza.Result(iq))
	default:
		s.replyError(sess, iq, "service-unavailable", "requests to occupants are not relayed")
	}
}

func (s *Service) send(sess Session, el *stanza.Element) {
	if err := sess.Send(el); err != nil {
		s.log.Debug("muc: send failed", "jid", sess.JID().String(), "err", err)
	}
}

// serviceIQ answers disco on conference.DOMAIN itself.
func (s *Service) serviceIQ(sess Session, iq, q *stanza.Element) {
	switch {
	case q.Space == NSDiscoInfo && q.Local == "query" && iq.Type() == "get" && q.Attr("node") == "":
		info := stanza.New(NSDiscoInfo, "query").Append(
			stanza.New(NSDiscoInfo, "identity").SetAttr("category", "conference").SetAttr("type", "text").SetAttr("name", "Group rooms"),
			feature(NSDiscoInfo), feature(NSDiscoItems), feature(NSMUC), feature(NSPing),
		)
		s.send(sess, stanza.Result(iq, info))
	case q.Space == NSDiscoItems && q.Local == "query" && iq.Type() == "get" && q.Attr("node") == "":
		items := stanza.New(NSDiscoItems, "query")
		for _, it := range s.Items() {
			items.Append(stanza.New(NSDiscoItems, "item").SetAttr("jid", it.JID).SetAttr("name", it.Name))
		}
		s.send(sess, stanza.Result(iq, items))
	case q.Space == NSPing && q.Local == "ping" && iq.Type() == "get":
		s.send(sess, stanza.Result(iq))
	case (q.Space == NSDiscoInfo || q.Space == NSDiscoItems) && q.Local == "query":
		if iq.Type() != "get" {
			s.replyError(sess, iq, "bad-request", "")
		} else {
			s.replyError(sess, iq, "item-not-found", "")
		}
	default:
		s.replyError(sess, iq, "service-unavailable", "")
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
	if iq.Type() != "get" {
		s.replyError(sess, iq, "bad-request", "")
		return
	}
	if q.Attr("node") != "" {
		s.replyError(sess, iq, "item-not-found", "")
		return
	}
	s.mu.Lock()
	r := s.visibleRoom(sess, name)
	if r == nil {
		s.mu.Unlock()
		s.replyError(sess, iq, "item-not-found", "no such room")
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
	if iq.Type() != "get" {
		s.replyError(sess, iq, "bad-request", "")
		return
	}
	if q.Attr("node") != "" {
		s.replyError(sess, iq, "item-not-found", "")
		return
	}
	s.mu.Lock()
	r := s.visibleRoom(sess, name)
	if r == nil {
		s.mu.Unlock()
		s.replyError(sess, iq, "item-not-found", "no such room")
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
