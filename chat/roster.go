package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Roster limits (RFC 6121 §2.3.3 leaves them to the server).
const (
	maxNameBytes  = 1023
	maxGroupBytes = 1023
	maxGroups     = 128
)

// errRosterFull says a roster holds Limits.RosterItems items already.
var errRosterFull = errors.New("chat: the roster is full")

// updateItem applies fn to owner's roster item for contact (a zero item
// with subscription none when there is none), saves the result and pushes
// it to owner's interested sessions when what the roster shows changed. An
// item neither listed nor holding a pending request is deleted. It returns
// the item before and after; after.Listed is false when it was deleted.
// A new item in a roster that holds Limits.RosterItems already is not
// stored: the error is errRosterFull.
func (s *Service) updateItem(ctx context.Context, owner, contact string, fn func(it *store.RosterItem)) (before, after store.RosterItem, err error) {
	lk := s.rosterLock(owner)
	lk.Lock()
	it, err := s.st.RosterItem(ctx, owner, contact)
	existed := true
	if errors.Is(err, store.ErrNotFound) {
		existed, err = false, nil
		it = store.RosterItem{Contact: contact, Subscription: store.SubNone}
	}
	if err != nil {
		lk.Unlock()
		return before, after, fmt.Errorf("chat: load roster item %s of %s: %w", contact, owner, err)
	}
	if it.Subscription == "" {
		it.Subscription = store.SubNone
	}
	before = it
	before.Groups = slices.Clone(it.Groups)
	fn(&it)
	after = it
	switch {
	case !it.Listed && !it.PendingIn:
		after.Listed = false
		if existed {
			err = s.st.DeleteRosterItem(ctx, owner, contact)
		}
	case !existed:
		err = s.st.PutRosterItemWithin(ctx, owner, it, s.lim.RosterItems)
	case !sameItem(before, it):
		err = s.st.PutRosterItem(ctx, owner, it)
	}
	lk.Unlock()
	if errors.Is(err, store.ErrLimit) {
		return before, before, errRosterFull
	}
	if err != nil {
		return before, after, fmt.Errorf("chat: save roster item %s of %s: %w", contact, owner, err)
	}
	switch {
	case before.Listed && !after.Listed:
		s.pushItem(owner, after, true)
	case after.Listed && (!before.Listed || visibleChange(before, after)):
		s.pushItem(owner, after, false)
	}
	return before, after, nil
}

func sameItem(a, b store.RosterItem) bool {
	return a.Listed == b.Listed && a.PendingIn == b.PendingIn && !visibleChange(a, b)
}

// visibleChange reports whether a roster client would see a difference.
func visibleChange(a, b store.RosterItem) bool {
	return a.Name != b.Name || a.Subscription != b.Subscription || a.AskOut != b.AskOut || !slices.Equal(a.Groups, b.Groups)
}

// itemElement renders a roster item; remove renders subscription='remove'.
func itemElement(it store.RosterItem, remove bool) *stanza.Element {
	e := stanza.New(NSRoster, "item").SetAttr("jid", it.Contact)
	if remove {
		return e.SetAttr("subscription", "remove")
	}
	e.SetAttr("name", it.Name)
	sub := it.Subscription
	if sub == "" {
		sub = store.SubNone
	}
	e.SetAttr("subscription", sub)
	if it.AskOut {
		e.SetAttr("ask", "subscribe")
	}
	for _, g := range it.Groups {
		e.Append(stanza.New(NSRoster, "group").SetText(g))
	}
	return e
}

// pushItem sends a roster push (RFC 6121 §2.1.6) to owner's interested
// sessions.
func (s *Service) pushItem(owner string, it store.RosterItem, remove bool) {
	for _, sess := range s.interested(owner) {
		s.send(sess, s.rosterPush(sess, it, remove))
	}
}

// rosterPush builds the roster push of it for sess.
func (s *Service) rosterPush(sess Session, it store.RosterItem, remove bool) *stanza.Element {
	iq := stanza.New(stanza.NSClient, "iq").
		SetType(stanza.SetIQ).
		SetAttr("id", "push"+strconv.FormatUint(s.pushSeq.Add(1), 10)).
		SetAttr("to", sess.JID().String())
	return iq.Append(stanza.New(NSRoster, "query").Append(itemElement(it, remove)))
}

// rosterIQ serves jabber:iq:roster get and set from the user's own session.
func (s *Service) rosterIQ(ctx context.Context, sess Session, iq, q *stanza.Element) {
	owner := sess.JID().Localpart()
	if iq.IQType() == stanza.GetIQ {
		items, err := s.st.RosterItems(ctx, owner)
		if err != nil {
			s.log.Error("chat: load roster", "jid", sess.JID().String(), "err", err)
			s.replyError(sess, iq, stanza.InternalServerError, "")
			return
		}
		res := stanza.New(NSRoster, "query")
		for _, it := range items {
			if it.Listed {
				res.Append(itemElement(it, false))
			}
		}
		s.update(sess, func(r *resource) { r.Interested = true })
		s.send(sess, stanza.Result(iq, res))
		return
	}

	var items []*stanza.Element
	for _, c := range q.Elements() {
		if c.Space == NSRoster && c.Local == "item" {
			items = append(items, c)
		}
	}
	if len(items) != 1 {
		s.replyError(sess, iq, stanza.BadRequest, "a roster set carries exactly one item")
		return
	}
	item := items[0]
	cj, err := jid.Parse(item.Attr("jid"))
	if err != nil || item.Attr("jid") == "" {
		s.replyError(sess, iq, stanza.JIDMalformed, "the item's jid is not a valid address")
		return
	}
	if cj.Resourcepart() != "" {
		s.replyError(sess, iq, stanza.BadRequest, "roster items are bare JIDs")
		return
	}
	if item.Attr("subscription") == "remove" {
		s.rosterRemove(ctx, sess, iq, cj)
		return
	}
	name := item.Attr("name")
	if len(name) > maxNameBytes {
		s.replyError(sess, iq, stanza.NotAcceptable, "the name is too long")
		return
	}
	var groups []string
	for _, g := range item.Elements() {
		if g.Space != NSRoster || g.Local != "group" {
			continue
		}
		t := g.Text()
		switch {
		case t == "":
			s.replyError(sess, iq, stanza.NotAcceptable, "a group name is empty")
			return
		case len(t) > maxGroupBytes:
			s.replyError(sess, iq, stanza.NotAcceptable, "a group name is too long")
			return
		case slices.Contains(groups, t):
			s.replyError(sess, iq, stanza.BadRequest, "a group is listed twice")
			return
		}
		groups = append(groups, t)
	}
	if len(groups) > maxGroups {
		s.replyError(sess, iq, stanza.NotAcceptable, "too many groups")
		return
	}
	before, after, err := s.updateItem(ctx, owner, cj.String(), func(it *store.RosterItem) {
		it.Listed = true
		it.Name = name
		it.Groups = groups
	})
	if errors.Is(err, errRosterFull) {
		s.replyError(sess, iq, stanza.ResourceConstraint, s.rosterFullText())
		return
	}
	if err != nil {
		s.log.Error("chat: roster set", "jid", sess.JID().String(), "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	if before.Listed && !visibleChange(before, after) {
		// Every roster set is pushed, even one that changes nothing.
		s.pushItem(owner, after, false)
	}
	s.send(sess, stanza.Result(iq))
}

// rosterRemove removes contact from the user's roster and cancels the
// subscriptions both ways (RFC 6121 §2.5.2).
func (s *Service) rosterRemove(ctx context.Context, sess Session, iq *stanza.Element, contact jid.JID) {
	me := sess.JID().Bare()
	owner := me.Localpart()
	before, _, err := s.updateItem(ctx, owner, contact.String(), func(it *store.RosterItem) {
		if !it.Listed {
			return
		}
		*it = store.RosterItem{Contact: it.Contact, Subscription: store.SubNone}
	})
	if err != nil {
		s.log.Error("chat: roster remove", "jid", sess.JID().String(), "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	if !before.Listed {
		s.replyError(sess, iq, stanza.ItemNotFound, "")
		return
	}
	s.send(sess, stanza.Result(iq))
	if !s.isRemote(contact) && (!s.isLocal(contact) || contact.Localpart() == "") {
		return
	}
	for _, typ := range []string{"unsubscribe", "unsubscribed"} {
		if _, err := s.subDeliver(ctx, typ, contact, me, subscriptionPresence(typ, me, contact)); err != nil {
			s.log.Error("chat: roster remove", "jid", sess.JID().String(), "type", typ, "err", err)
		}
	}
	if before.Subscription == store.SubFrom || before.Subscription == store.SubBoth {
		s.sendUnavailableFrom(me.Localpart(), contact)
	}
}

// rosterFullText says why a contact was not added.
func (s *Service) rosterFullText() string {
	return fmt.Sprintf("a contact list may hold at most %d contacts", s.lim.RosterItems)
}
