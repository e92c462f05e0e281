package chat

import (
	"context"
	"errors"
	"strconv"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// eventMessage wraps an event payload for one recipient.
func (s *Service) eventMessage(owner string, to Session, payload *stanza.Element) *stanza.Element {
	return stanza.New(stanza.NSClient, "message").
		SetAttr("from", owner+"@"+s.domain).
		SetAttr("to", to.JID().String()).
		SetType(stanza.HeadlineMessage).
		SetAttr("id", newID()).
		Append(stanza.New(NSPubSubEvent, "event").Append(payload))
}

// notifyTargets returns who hears about owner's node n (XEP-0163 §4.3):
// the owner's available sessions that asked with +notify (or whose
// capabilities are unknown), and, unless the node is whitelisted, the
// available sessions of contacts subscribed to the owner's presence that
// asked with +notify, here or on other servers.
func (s *Service) notifyTargets(ctx context.Context, owner string, n store.PEPNode) []Session {
	want := n.Node + "+notify"
	var out []Session
	s.mu.Lock()
	for _, r := range s.users[owner] {
		if r.Available && (r.features == nil || r.features[want]) {
			out = append(out, r.sess)
		}
	}
	s.mu.Unlock()
	if n.AccessModel == store.AccessWhitelist {
		return out
	}
	items, err := s.st.RosterItems(ctx, owner)
	if err != nil {
		s.log.Error("chat: roster for pep notifications", "user", owner, "err", err)
		return out
	}
	for _, it := range items {
		if !isSubscriber(it.Subscription) {
			continue
		}
		c, err := jid.Parse(it.Contact)
		if err == nil && s.isRemote(c) {
			out = append(out, s.remoteNotifyTargets(owner, c, n.Node)...)
			continue
		}
		if err != nil || !s.isLocal(c) || c.Localpart() == "" || c.Localpart() == owner {
			continue
		}
		s.mu.Lock()
		for _, r := range s.users[c.Localpart()] {
			if r.Available && r.features[want] {
				out = append(out, r.sess)
			}
		}
		s.mu.Unlock()
	}
	return out
}

// notify sends an event about owner's node n to everyone who hears it.
func (s *Service) notify(ctx context.Context, owner string, n store.PEPNode, payload *stanza.Element) {
	for _, t := range s.notifyTargets(ctx, owner, n) {
		s.send(t, s.eventMessage(owner, t, payload.Copy()))
	}
}

// sendLastItems sends sess the newest item of every node it may read and
// asked for with +notify: its own user's and those of the contacts whose
// presence it sees (XEP-0163 §4.3.4, on presence).
func (s *Service) sendLastItems(ctx context.Context, sess Session) {
	features := s.sessionFeatures(sess)
	if len(features) == 0 {
		return
	}
	me := sess.JID()
	owners := []string{me.Localpart()}
	items, err := s.st.RosterItems(ctx, me.Localpart())
	if err != nil {
		s.log.Error("chat: roster for pep", "jid", me.String(), "err", err)
	}
	for _, it := range items {
		if !isSubscribed(it.Subscription) {
			continue
		}
		if c, err := jid.Parse(it.Contact); err == nil && s.isLocal(c) && c.Localpart() != "" {
			owners = append(owners, c.Localpart())
		}
	}
	s.sendLastItemsOf(ctx, sess, features, owners)
}

// lastItemsOnApproval sends user's available sessions (or, for a user of
// another server, its clients known to +notify) the last items of owner,
// whose presence they may now see (XEP-0163 §4.3.4).
func (s *Service) lastItemsOnApproval(ctx context.Context, user jid.JID, owner string) {
	if s.pep != nil && s.isRemote(user) {
		s.remoteLastItemsOnApproval(ctx, user, owner)
		return
	}
	if s.pep == nil || !s.isLocal(user) {
		return
	}
	for _, t := range s.available(user.Localpart()) {
		if f := s.sessionFeatures(t.sess); len(f) > 0 {
			s.sendLastItemsOf(ctx, t.sess, f, []string{owner})
		}
	}
}

// sendLastItemsOf sends sess the newest item of each node of owners that
// it may read and +notifies, unless the node says never.
func (s *Service) sendLastItemsOf(ctx context.Context, sess Session, features map[string]bool, owners []string) {
	me := sess.JID()
	for _, o := range owners {
		nodes, err := s.pep.PEPNodes(ctx, o)
		if err != nil {
			s.log.Error("chat: pep nodes", "user", o, "err", err)
			continue
		}
		for _, n := range nodes {
			if !n.SendLast || !features[n.Node+"+notify"] {
				continue
			}
			if o != me.Localpart() {
				if cond, _ := s.pepAccess(ctx, o, n, me); cond != "" {
					continue
				}
			}
			last, err := s.pep.PEPItems(ctx, o, n.Node, nil, 1)
			if err != nil || len(last) == 0 {
				continue
			}
			it, err := pepItemElement(NSPubSubEvent, last[0])
			if err != nil {
				continue
			}
			msg := s.eventMessage(o, sess, stanza.New(NSPubSubEvent, "items").SetAttr("node", n.Node).Append(it))
			msg.Append(stanza.New(stanza.NSDelay, "delay").SetAttr("stamp", formatStamp(last[0].Stamp)))
			s.send(sess, msg)
		}
	}
}

// pubsubOwnerIQ serves node configuration and deletion to the owner
// (XEP-0060 §8 as far as PEP needs).
func (s *Service) pubsubOwnerIQ(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID, self bool) {
	if !self {
		s.replyError(sess, iq, stanza.Forbidden, "")
		return
	}
	local := owner.Localpart()
	set := iq.IQType() == stanza.SetIQ
	var req *stanza.Element
	for _, c := range q.Elements() {
		if c.Space == NSPubSubOwner && (c.Local == "configure" || c.Local == "delete") {
			req = c
		}
	}
	if req == nil || (req.Local == "delete" && !set) {
		s.replyError(sess, iq, stanza.FeatureNotImplemented, "")
		return
	}
	name := req.Attr("node")
	if name == "" {
		s.pubsubError(sess, iq, stanza.BadRequest, "nodeid-required")
		return
	}
	lk := s.pepLock(local)
	lk.Lock()
	n, err := s.pep.PEPNode(ctx, local, name)
	var reply *stanza.Element
	var deleted bool
	switch {
	case err != nil:
	case req.Local == "delete":
		err = s.pep.DeletePEPNode(ctx, local, name)
		deleted = err == nil
	case !set:
		reply = stanza.New(NSPubSubOwner, "pubsub").Append(
			stanza.New(NSPubSubOwner, "configure").SetAttr("node", name).Append(nodeForm(n, s.lim.PEPItems)))
	default:
		opts, ok := formValues(req.Child(NSDataForms, "x"), NSPubSub+"#node_config")
		want := n
		if _, good := applyOptions(&want, opts, s.lim.PEPItems); !ok || !good {
			lk.Unlock()
			s.replyError(sess, iq, stanza.NotAcceptable, "unsupported node configuration")
			return
		}
		err = s.pep.PutPEPNode(ctx, local, want)
	}
	lk.Unlock()
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.replyError(sess, iq, stanza.ItemNotFound, "")
		return
	case err != nil:
		s.log.Error("chat: pep owner", "jid", sess.JID().String(), "node", name, "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	if reply != nil {
		s.send(sess, stanza.Result(iq, reply))
	} else {
		s.send(sess, stanza.Result(iq))
	}
	if deleted {
		s.notify(ctx, local, n, stanza.New(NSPubSubEvent, "delete").SetAttr("node", name))
		if name == nsBookmarks {
			s.syncLegacyBookmarks(ctx, local)
		}
	}
}

// nodeForm renders n's configuration as a node_config form; maxItems is
// what max_items='max' means.
func nodeForm(n store.PEPNode, maxItems int) *stanza.Element {
	x := stanza.New(NSDataForms, "x").SetAttr("type", "form")
	field := func(v, typ, val string) {
		x.Append(stanza.New(NSDataForms, "field").SetAttr("var", v).SetAttr("type", typ).
			Append(stanza.New(NSDataForms, "value").SetText(val)))
	}
	field("FORM_TYPE", "hidden", NSPubSub+"#node_config")
	field("pubsub#access_model", "list-single", n.AccessModel)
	max := strconv.Itoa(n.MaxItems)
	if n.MaxItems == maxItems {
		max = "max"
	}
	field("pubsub#max_items", "text-single", max)
	field("pubsub#persist_items", "boolean", "true")
	last := "never"
	if n.SendLast {
		last = "on_sub_and_presence"
	}
	field("pubsub#send_last_published_item", "list-single", last)
	return x
}
