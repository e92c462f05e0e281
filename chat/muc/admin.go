package muc

import (
	"context"
	"strconv"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// adminIQ answers muc#admin: lists of roles and affiliations (get) and
// changes to them (set), including kicks and bans.
func (s *Service) adminIQ(ctx context.Context, sess Session, iq, q *stanza.Element, name string) {
	var fx effects
	s.mu.Lock()
	r := s.visibleRoom(sess, name)
	switch {
	case r == nil:
		errorFx(&fx, sess, iq, stanza.ItemNotFound, "no such room")
	case iq.IQType() == stanza.GetIQ:
		s.adminList(&fx, r, sess, iq, q)
	default:
		s.adminSet(&fx, r, sess, iq, q)
	}
	s.unlockAndRun(ctx, &fx)
	if iq.IQType() == stanza.SetIQ {
		s.accessChanged(ctx, name)
	}
}

// accessChanged tells the call in room name that its membership may have
// changed.
func (s *Service) accessChanged(ctx context.Context, name string) {
	if s.access == nil {
		return
	}
	if j, err := jid.New(name, s.domain, ""); err == nil {
		s.access(ctx, j)
	}
}

// adminList answers a request for the occupants with a role or the users
// with an affiliation. s.mu must be held.
func (s *Service) adminList(fx *effects, r *room, sess Session, iq, q *stanza.Element) {
	items := q.Elements()
	if len(items) != 1 || items[0].Local != "item" {
		errorFx(fx, sess, iq, stanza.BadRequest, "ask for one role or one affiliation")
		return
	}
	want := items[0]
	me := sess.JID().Bare()
	out := stanza.New(NSAdmin, "query")
	if a := want.Attr("affiliation"); a != "" {
		aff, ok := parseAffiliation(a)
		if !ok || aff == affNone {
			errorFx(fx, sess, iq, stanza.BadRequest, "unknown affiliation")
			return
		}
		if r.affiliation(me) < affAdmin {
			errorFx(fx, sess, iq, stanza.Forbidden, "only admins and owners see affiliation lists")
			return
		}
		for _, k := range sortedKeys(r.affs) {
			e := r.affs[k]
			if e.aff != aff {
				continue
			}
			it := stanza.New(NSAdmin, "item").SetAttr("affiliation", aff.String()).SetAttr("jid", k)
			if e.nick != "" {
				it.SetAttr("nick", e.nick)
			}
			if e.reason != "" {
				it.Append(stanza.New(NSAdmin, "reason").SetText(e.reason))
			}
			out.Append(it)
		}
		fx.send(sess, stanza.Result(iq, out))
		return
	}
	rl, ok := parseRole(want.Attr("role"))
	if !ok || rl == roleNone {
		errorFx(fx, sess, iq, stanza.BadRequest, "ask for a role or an affiliation")
		return
	}
	if o := r.occupantOf(sess); o == nil || o.role != roleModerator {
		errorFx(fx, sess, iq, stanza.Forbidden, "only moderators see role lists")
		return
	}
	for _, o := range r.sorted() {
		if o.role != rl {
			continue
		}
		it := stanza.New(NSAdmin, "item").SetAttr("nick", o.nick).SetAttr("role", o.role.String()).
			SetAttr("affiliation", r.affiliation(o.bare).String())
		if len(o.sessions) > 0 {
			it.SetAttr("jid", o.sessions[0].JID().String())
		}
		out.Append(it)
	}
	fx.send(sess, stanza.Result(iq, out))
}

// change is one validated item of a muc#admin set.
type change struct {
	occ    *occupant // role change
	role   role
	bare   jid.JID // affiliation change
	aff    affiliation
	reason string
}

// adminSet validates every item first, then applies them all, so a
// request either fully succeeds or changes nothing. s.mu must be held.
func (s *Service) adminSet(fx *effects, r *room, sess Session, iq, q *stanza.Element) {
	me := sess.JID().Bare()
	actor := r.occupantOf(sess)
	actorAff := r.affiliation(me)
	actorRole := roleNone
	if actor != nil {
		actorRole = actor.role
	}
	owners := 0
	for _, a := range r.affs {
		if a.aff == affOwner {
			owners++
		}
	}
	var changes []change
	fail := func(cond stanza.Condition, text string) { errorFx(fx, sess, iq, cond, text) }
	items := q.Elements()
	if len(items) == 0 {
		fail(stanza.BadRequest, "no item")
		return
	}
	for _, it := range items {
		if it.Space != NSAdmin || it.Local != "item" {
			fail(stanza.BadRequest, "unexpected element")
			return
		}
		c := change{reason: it.ChildText(NSAdmin, "reason")}
		switch {
		case it.Attr("role") != "":
			rl, ok := parseRole(it.Attr("role"))
			if !ok {
				fail(stanza.BadRequest, "unknown role")
				return
			}
			o := r.occupants[it.Attr("nick")]
			if o == nil {
				fail(stanza.ItemNotFound, "no occupant has that nickname")
				return
			}
			if actorRole != roleModerator {
				fail(stanza.Forbidden, "only moderators change roles")
				return
			}
			target := r.affiliation(o.bare)
			switch {
			case rl == roleModerator && actorAff < affAdmin:
				fail(stanza.NotAllowed, "only admins and owners grant moderation")
				return
			case rl < o.role && (target >= affAdmin || target > actorAff):
				fail(stanza.NotAllowed, "you may not lower the role of that occupant")
				return
			case rl < o.role && o.role == roleModerator && actorAff < affAdmin:
				fail(stanza.NotAllowed, "only admins and owners revoke moderation")
				return
			}
			c.occ, c.role = o, rl
		case it.Attr("affiliation") != "":
			aff, ok := parseAffiliation(it.Attr("affiliation"))
			if !ok {
				fail(stanza.BadRequest, "unknown affiliation")
				return
			}
			var target jid.JID
			if j := it.Attr("jid"); j != "" {
				t, err := jid.Parse(j)
				if err != nil {
					fail(stanza.JIDMalformed, "")
					return
				}
				target = t.Bare()
			} else if o := r.occupants[it.Attr("nick")]; o != nil {
				target = o.bare
			} else {
				fail(stanza.BadRequest, "an affiliation change names a jid or an occupant's nick")
				return
			}
			cur := r.affiliation(target)
			switch {
			case actorAff < affAdmin:
				fail(stanza.Forbidden, "only admins and owners change affiliations")
				return
			case actorAff == affAdmin && (aff >= affAdmin || cur >= affAdmin):
				fail(stanza.NotAllowed, "only owners change admins and owners")
				return
			case cur == affOwner && aff != affOwner && owners <= 1:
				fail(stanza.Conflict, "a room keeps at least one owner")
				return
			}
			switch {
			case cur == affOwner && aff != affOwner:
				owners--
			case cur != affOwner && aff == affOwner:
				owners++
			}
			c.bare, c.aff = target, aff
		default:
			fail(stanza.BadRequest, "an item changes a role or an affiliation")
			return
		}
		changes = append(changes, c)
	}

	var actorEl []*stanza.Element
	if actor != nil {
		actorEl = append(actorEl, stanza.New(NSUser, "actor").SetAttr("nick", actor.nick))
	}
	extra := func(reason string) []*stanza.Element {
		out := append([]*stanza.Element(nil), actorEl...)
		if reason != "" {
			out = append(out, stanza.New(NSUser, "reason").SetText(reason))
		}
		return out
	}
	for _, c := range changes {
		if c.occ != nil {
			if r.occupants[c.occ.nick] != c.occ {
				continue // already gone through an earlier item
			}
			if c.role == roleNone {
				s.leave(fx, r, c.occ, nil, []int{307}, extra(c.reason), "")
				continue
			}
			c.occ.role = c.role
			r.broadcastPresence(fx, c.occ, nil)
			continue
		}
		key := c.bare.String()
		if c.aff == affNone {
			delete(r.affs, key)
		} else {
			r.affs[key] = affEntry{aff: c.aff, reason: c.reason, nick: r.affs[key].nick}
		}
		if r.cfg.Persistent {
			fx.affRoom = r.name
			fx.affs = append(fx.affs, store.RoomAffiliation{JID: key, Affiliation: c.aff.String(), Reason: c.reason, Nick: r.affs[key].nick})
		}
		for _, o := range r.occupantsOf(c.bare) {
			switch {
			case c.aff == affOutcast:
				s.leave(fx, r, o, nil, []int{301}, extra(c.reason), "")
			case r.cfg.MembersOnly && c.aff < affMember:
				s.leave(fx, r, o, nil, []int{321}, extra(c.reason), "")
			default:
				o.role = r.defaultRole(c.aff)
				r.broadcastPresence(fx, o, nil)
			}
		}
	}
	fx.send(sess, stanza.Result(iq))
}

// ownerIQ answers muc#owner: the configuration form (get), its
// submission or cancellation, and destruction (set).
func (s *Service) ownerIQ(ctx context.Context, sess Session, iq, q *stanza.Element, name string) {
	var fx effects
	s.mu.Lock()
	r := s.visibleRoom(sess, name)
	switch {
	case r == nil:
		errorFx(&fx, sess, iq, stanza.ItemNotFound, "no such room")
	case r.affiliation(sess.JID().Bare()) != affOwner:
		errorFx(&fx, sess, iq, stanza.Forbidden, "only owners configure a room")
	case iq.IQType() == stanza.GetIQ:
		if len(q.Elements()) != 0 {
			errorFx(&fx, sess, iq, stanza.BadRequest, "")
			break
		}
		fx.send(sess, stanza.Result(iq, stanza.New(NSOwner, "query").Append(r.configForm())))
	case q.Child(NSOwner, "destroy") != nil:
		s.destroy(&fx, r, q.Child(NSOwner, "destroy"))
		fx.send(sess, stanza.Result(iq))
	default:
		x := q.Child(NSData, "x")
		switch {
		case x == nil:
			errorFx(&fx, sess, iq, stanza.BadRequest, "expected a data form or destroy")
		case x.Attr("type") == "cancel":
			if r.locked {
				s.destroy(&fx, r, nil)
			}
			fx.send(sess, stanza.Result(iq))
		case x.Attr("type") == "submit":
			if cond, text := s.configure(&fx, r, x); cond != "" {
				errorFx(&fx, sess, iq, cond, text)
			} else {
				fx.send(sess, stanza.Result(iq))
			}
		default:
			errorFx(&fx, sess, iq, stanza.BadRequest, "a configuration form is submitted or cancelled")
		}
	}
	s.unlockAndRun(ctx, &fx)
	if iq.IQType() == stanza.SetIQ {
		s.accessChanged(ctx, name)
	}
}

// configForm is the muc#roomconfig form with r's current values.
func (r *room) configForm() *stanza.Element {
	c := r.cfg
	maxUsers := "none"
	if c.MaxUsers > 0 {
		maxUsers = strconv.Itoa(c.MaxUsers)
	}
	x := dataForm("form", NSMUC+"#roomconfig",
		field("muc#roomconfig_roomname", "text-single", "Name", c.Name),
		field("muc#roomconfig_roomdesc", "text-single", "Description", c.Description),
		field("muc#roomconfig_persistentroom", "boolean", "Keep the room when the last occupant leaves", boolString(c.Persistent)),
		field("muc#roomconfig_publicroom", "boolean", "List the room publicly", boolString(c.Public)),
		field("muc#roomconfig_membersonly", "boolean", "Only members may enter", boolString(c.MembersOnly)),
		field("muc#roomconfig_passwordprotectedroom", "boolean", "A password is required to enter", boolString(c.PasswordProtected)),
		field("muc#roomconfig_roomsecret", "text-private", "Password", c.Password),
		listField("muc#roomconfig_maxusers", "Most occupants", maxUsers, "10", "20", "30", "50", "100", "none"),
		field("muc#roomconfig_moderatedroom", "boolean", "Only participants may speak (visitors may not)", boolString(c.Moderated)),
		listField("muc#roomconfig_whois", "Who sees occupants' real addresses", c.WhoIs, whoisModerators, whoisAnyone),
		field("muc#roomconfig_changesubject", "boolean", "Occupants may change the subject", boolString(c.ChangeSubject)),
		field("muc#roomconfig_allowinvites", "boolean", "Occupants may invite others", boolString(c.AllowInvites)),
		listField("poosms#conference", "Who may take part in the room's conference", c.Conference, confAnyone, confMembers, confModerators),
		field("poosms#conference_nonoccupants", "boolean", "Users who are not in the room may join its conference", boolString(c.ConferenceNonOccupants)),
	)
	x.Append(stanza.New(NSData, "title").SetText("Configuration of " + r.jid.String()))
	return x
}

// configure applies a submitted configuration form. It returns an error
// condition and text, or "" on success. s.mu must be held.
func (s *Service) configure(fx *effects, r *room, x *stanza.Element) (stanza.Condition, string) {
	c := r.cfg
	for name, vals := range formValues(x) {
		v := ""
		if len(vals) > 0 {
			v = vals[0]
		}
		setBool := func(dst *bool) bool {
			b, ok := parseBool(v)
			if ok {
				*dst = b
			}
			return ok
		}
		ok := true
		switch name {
		case "muc#roomconfig_roomname":
			c.Name = v
		case "muc#roomconfig_roomdesc":
			c.Description = v
		case "muc#roomconfig_persistentroom":
			ok = setBool(&c.Persistent)
		case "muc#roomconfig_publicroom":
			ok = setBool(&c.Public)
		case "muc#roomconfig_membersonly":
			ok = setBool(&c.MembersOnly)
		case "muc#roomconfig_passwordprotectedroom":
			ok = setBool(&c.PasswordProtected)
		case "muc#roomconfig_roomsecret":
			c.Password = v
		case "muc#roomconfig_moderatedroom":
			ok = setBool(&c.Moderated)
		case "muc#roomconfig_changesubject":
			ok = setBool(&c.ChangeSubject)
		case "muc#roomconfig_allowinvites":
			ok = setBool(&c.AllowInvites)
		case "muc#roomconfig_maxusers":
			switch v {
			case "", "none", "0":
				c.MaxUsers = 0
			default:
				n, err := strconv.Atoi(v)
				ok = err == nil && n > 0 && n <= 100000
				c.MaxUsers = n
			}
		case "muc#roomconfig_whois":
			ok = v == whoisAnyone || v == whoisModerators
			c.WhoIs = v
		case "poosms#conference":
			ok = v == confAnyone || v == confMembers || v == confModerators
			c.Conference = v
		case "poosms#conference_nonoccupants":
			ok = setBool(&c.ConferenceNonOccupants)
		}
		if !ok {
			return "not-acceptable", "invalid value for " + name
		}
	}
	if c.PasswordProtected && c.Password == "" {
		return "not-acceptable", "a password-protected room needs a password"
	}
	if !c.PasswordProtected {
		c.Password = ""
	}
	old, wasLocked := r.cfg, r.locked
	r.cfg, r.locked = c, false
	switch {
	case c.Persistent:
		fx.save = r.record()
		if !old.Persistent || wasLocked {
			fx.affRoom = r.name
			fx.affs = r.affRecords()
		}
	case old.Persistent:
		fx.drop = r.name
	}
	if c.MembersOnly && !old.MembersOnly {
		for _, o := range r.sorted() {
			if r.affiliation(o.bare) < affMember {
				s.leave(fx, r, o, nil, []int{322}, nil, "")
			}
		}
	}
	if !wasLocked {
		codes := []int{104}
		switch {
		case c.WhoIs == whoisAnyone && old.WhoIs != whoisAnyone:
			codes = append(codes, 172)
		case c.WhoIs != whoisAnyone && old.WhoIs == whoisAnyone:
			codes = append(codes, 173)
		}
		for _, v := range r.sorted() {
			for _, vs := range v.sessions {
				ux := stanza.New(NSUser, "x")
				for _, code := range codes {
					ux.Append(statusCode(code))
				}
				fx.send(vs, stanza.New(stanza.NSClient, "message").
					SetAttr("from", r.jid.String()).SetAttr("to", vs.JID().String()).
					SetType(stanza.GroupChatMessage).SetAttr("id", newID()).Append(ux))
			}
		}
	}
	s.vanish(fx, r)
	return "", ""
}

// destroy ends room r: every occupant leaves with the reason and the
// alternative venue from d (which may be nil), and the room is forgotten
// with its archive. s.mu must be held.
func (s *Service) destroy(fx *effects, r *room, d *stanza.Element) {
	dx := stanza.New(NSUser, "destroy")
	if d != nil {
		if alt := d.Attr("jid"); alt != "" {
			dx.SetAttr("jid", alt)
		}
		if reason := d.ChildText(NSOwner, "reason"); reason != "" {
			dx.Append(stanza.New(NSUser, "reason").SetText(reason))
		}
	}
	// Each occupant hears of its own departure only: the room is gone.
	for _, o := range r.sorted() {
		all := o.sessions
		o.role = roleNone
		for _, sess := range all {
			o.sessions = []Session{sess}
			fx.send(sess, r.unavailableFor(o, o, sess, affNone, nil, []*stanza.Element{dx}, "", ""))
			s.track(sess, r.name, false)
		}
		o.sessions = nil
	}
	clear(r.occupants)
	if s.rooms[r.name] == r {
		delete(s.rooms, r.name)
	}
	fx.drop, fx.dropLog = r.name, r.name
}
