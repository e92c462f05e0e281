package chat

import (
	"context"
	"errors"
	"slices"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Bookmarks (XEP-0402) are kept in step with the older private XML form
// (XEP-0048 in XEP-0049 storage), so clients of either kind see the same
// rooms: the account advertises urn:xmpp:bookmarks:1#compat.
const (
	nsBookmarks       = "urn:xmpp:bookmarks:1"
	nsBookmarksLegacy = "storage:bookmarks"
	// FeatureBookmarksCompat is the account feature for the conversion.
	FeatureBookmarksCompat = nsBookmarks + "#compat"
)

// bookmarksNode is the node configuration XEP-0402 asks for.
func (s *Service) bookmarksNode() store.PEPNode {
	return store.PEPNode{Node: nsBookmarks, AccessModel: store.AccessWhitelist, MaxItems: s.lim.PEPItems}
}

// bookmarksCompat reports whether the conversion is on.
func (s *Service) bookmarksCompat() bool { return s.pep != nil && s.privSt != nil }

// legacyFromItems renders the node's items (newest first) as a
// storage:bookmarks element.
func legacyFromItems(items []store.PEPItem) *stanza.Element {
	st := stanza.New(nsBookmarksLegacy, "storage")
	for _, it := range slices.Backward(items) {
		p, err := stanza.Parse(it.Payload)
		if err != nil || p.Space != nsBookmarks || p.Local != "conference" {
			continue
		}
		c := stanza.New(nsBookmarksLegacy, "conference").SetAttr("jid", it.ID).SetAttr("name", p.Attr("name"))
		if a := p.Attr("autojoin"); a == "true" || a == "1" {
			c.SetAttr("autojoin", "true")
		}
		for _, f := range []string{"nick", "password"} {
			if v := p.ChildText(nsBookmarks, f); v != "" {
				c.Append(stanza.New(nsBookmarksLegacy, f).SetText(v))
			}
		}
		st.Append(c)
	}
	return st
}

// itemsFromLegacy converts a storage:bookmarks element into item id (the
// room's JID) → XEP-0402 payload, skipping entries without a valid JID.
func itemsFromLegacy(st *stanza.Element) (ids []string, payloads map[string]*stanza.Element) {
	payloads = map[string]*stanza.Element{}
	for _, c := range st.Elements() {
		if c.Local != "conference" {
			continue
		}
		j, err := jid.Parse(c.Attr("jid"))
		if err != nil || c.Attr("jid") == "" || len(j.String()) > pepMaxName {
			continue
		}
		p := stanza.New(nsBookmarks, "conference")
		if n := c.Attr("name"); n != "" {
			p.SetAttr("name", n)
		}
		if a := c.Attr("autojoin"); a == "true" || a == "1" {
			p.SetAttr("autojoin", "true")
		}
		for _, f := range []string{"nick", "password"} {
			if v := c.ChildText("", f); v != "" {
				p.Append(stanza.New(nsBookmarks, f).SetText(v))
			}
		}
		id := j.String()
		if _, dup := payloads[id]; !dup {
			ids = append(ids, id)
		}
		payloads[id] = p
	}
	return ids, payloads
}

// syncLegacyBookmarks rewrites owner's private storage:bookmarks from the
// bookmarks node, after the node changed.
func (s *Service) syncLegacyBookmarks(ctx context.Context, owner string) {
	if !s.bookmarksCompat() {
		return
	}
	lk := s.pepLock(owner)
	lk.Lock()
	defer lk.Unlock()
	items, err := s.pep.PEPItems(ctx, owner, nsBookmarks, nil, 0)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("chat: bookmarks for private storage", "user", owner, "err", err)
		return
	}
	if err := s.privSt.SetPrivateXML(ctx, owner, nsBookmarksLegacy, []byte(legacyFromItems(items).String())); err != nil {
		s.log.Error("chat: bookmarks to private storage", "user", owner, "err", err)
	}
}

// syncBookmarksFromLegacy makes the bookmarks node hold what a client just
// stored as private storage:bookmarks: new or changed rooms are published,
// rooms no longer listed retracted, each with its notification.
func (s *Service) syncBookmarksFromLegacy(ctx context.Context, sess Session, owner string, st *stanza.Element) {
	if !s.bookmarksCompat() {
		return
	}
	ids, want := itemsFromLegacy(st)
	var events []*stanza.Element
	lk := s.pepLock(owner)
	lk.Lock()
	n, err := s.pep.PEPNode(ctx, owner, nsBookmarks)
	if errors.Is(err, store.ErrNotFound) {
		n = s.bookmarksNode()
		err = s.pep.CreatePEPNode(ctx, owner, n, s.lim.PEPNodes)
	}
	var have []store.PEPItem
	if err == nil {
		have, err = s.pep.PEPItems(ctx, owner, nsBookmarks, nil, 0)
	}
	old := map[string]string{}
	for _, it := range have {
		old[it.ID] = string(it.Payload)
	}
	for _, id := range ids {
		if err != nil {
			break
		}
		raw := want[id].String()
		if old[id] == raw {
			continue
		}
		err = s.pep.PublishPEPItemWithin(ctx, owner, nsBookmarks, store.PEPItem{
			ID: id, Publisher: sess.JID().String(), Stamp: s.now().UTC(), Payload: []byte(raw)}, int64(s.lim.PEPNodeBytes))
		events = append(events, stanza.New(NSPubSubEvent, "items").SetAttr("node", nsBookmarks).Append(
			stanza.New(NSPubSubEvent, "item").SetAttr("id", id).Append(want[id])))
	}
	for _, it := range have {
		if _, kept := want[it.ID]; kept || err != nil {
			continue
		}
		err = s.pep.RetractPEPItem(ctx, owner, nsBookmarks, it.ID)
		events = append(events, stanza.New(NSPubSubEvent, "items").SetAttr("node", nsBookmarks).Append(
			stanza.New(NSPubSubEvent, "retract").SetAttr("id", it.ID)))
	}
	lk.Unlock()
	if err != nil {
		s.log.Error("chat: bookmarks from private storage", "user", owner, "err", err)
	}
	for _, ev := range events {
		s.notify(ctx, owner, n, ev)
	}
}
