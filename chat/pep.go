package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// PEP limits (XEP-0163 leaves them to the server); the others are in
// Limits.
const (
	// pepMaxName bounds node names and item ids (the store's column size).
	pepMaxName = 1024
	// pepPageBytes bounds the item payloads of one answer to an items
	// request; more come in further pages (XEP-0059). An answer always
	// carries at least one item, so one item of up to PEPItemBytes fits.
	pepPageBytes = 256 << 10
)

// pepFeatures are the pubsub features PEP offers on the account
// (advertised as http://jabber.org/protocol/pubsub#…).
var pepFeatures = []string{
	"access-open", "access-presence", "access-whitelist", "auto-create",
	"auto-subscribe", "config-node", "create-nodes", "delete-nodes",
	"filtered-notifications", "item-ids", "last-published",
	"persistent-items", "presence-notifications", "publish",
	"publish-options", "retract-items", "retrieve-items",
}

// defaultNode is the configuration of a node created without options:
// access by presence subscription, one item, the last item sent on
// presence. OMEMO's device lists and bundles are open (XEP-0384).
func defaultNode(name string) store.PEPNode {
	n := store.PEPNode{Node: name, AccessModel: store.AccessPresence, MaxItems: 1, SendLast: true}
	if strings.HasPrefix(name, nsOMEMOLegacy+".") || strings.HasPrefix(name, nsOMEMO2+":") {
		n.AccessModel = store.AccessOpen
	}
	return n
}

// pepOption is one node option poosms models, with how to read it;
// maxItems is what max_items='max' means.
var pepOptions = map[string]func(n *store.PEPNode, v string, maxItems int) bool{
	"pubsub#access_model": func(n *store.PEPNode, v string, _ int) bool {
		switch v {
		case store.AccessOpen, store.AccessPresence, store.AccessWhitelist:
			n.AccessModel = v
			return true
		}
		return false
	},
	"pubsub#max_items": func(n *store.PEPNode, v string, maxItems int) bool {
		if v == "max" {
			n.MaxItems = maxItems
			return true
		}
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 || k > maxItems {
			return false
		}
		n.MaxItems = k
		return true
	},
	"pubsub#send_last_published_item": func(n *store.PEPNode, v string, _ int) bool {
		switch v {
		case "never":
			n.SendLast = false
		case "on_sub", "on_sub_and_presence":
			n.SendLast = true
		default:
			return false
		}
		return true
	},
	// Items are always persisted.
	"pubsub#persist_items": func(_ *store.PEPNode, v string, _ int) bool { return v == "true" || v == "1" },
}

// formValues reads a submitted data form into var → first value, checking
// its FORM_TYPE.
func formValues(x *stanza.Element, formType string) (map[string]string, bool) {
	out := map[string]string{}
	if x == nil {
		return out, true
	}
	for _, f := range x.Elements() {
		if f.Space != NSDataForms || f.Local != "field" {
			continue
		}
		v := strings.TrimSpace(f.ChildText(NSDataForms, "value"))
		if f.Attr("var") == "FORM_TYPE" {
			if v != formType {
				return nil, false
			}
			continue
		}
		out[f.Attr("var")] = v
	}
	return out, true
}

// applyOptions sets the options poosms models on n; unknown options are
// ignored. It reports the first value it cannot take; a node keeps at most
// maxItems items.
func applyOptions(n *store.PEPNode, opts map[string]string, maxItems int) (bad string, ok bool) {
	for k, v := range opts {
		if set := pepOptions[k]; set != nil && !set(n, v, maxItems) {
			return k, false
		}
	}
	return "", true
}

// pubsubError answers iq with a stanza error and a pubsub-specific
// condition (XEP-0060 §7, §6.5.9).
func (s *Service) pubsubError(sess Session, iq *stanza.Element, condition stanza.Condition, specific string) {
	s.pubsubErrorText(sess, iq, condition, specific, "")
}

// pubsubErrorText is pubsubError with a text for people.
func (s *Service) pubsubErrorText(sess Session, iq *stanza.Element, condition stanza.Condition, specific, text string) {
	r := stanza.ErrorReply(iq, condition, text)
	r.SetAttr("to", sess.JID().String())
	if specific != "" {
		e := r.Child("", "error")
		if specific == "unsupported" {
			e.Append(stanza.New(NSPubSubErrors, "unsupported").SetAttr("feature", "subscribe"))
		} else {
			e.Append(stanza.New(NSPubSubErrors, specific))
		}
	}
	s.sendDirect(sess, r)
}

// pepLock serialises changes to one owner's nodes.
func (s *Service) pepLock(owner string) *sync.Mutex {
	return &s.pepLocks[hash(owner)%uint32(len(s.pepLocks))]
}

// pubsubIQ serves PEP (XEP-0163) on a user's bare JID: the owner
// publishes, retracts and creates; anyone the access model lets in
// retrieves items.
func (s *Service) pubsubIQ(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID, self bool) {
	if !self {
		if ok, err := s.exists(ctx, owner.Localpart()); err != nil || !ok {
			s.replyError(sess, iq, stanza.ServiceUnavailable, "")
			return
		}
	}
	set := iq.IQType() == stanza.SetIQ
	switch {
	case set && q.Child(NSPubSub, "publish") != nil:
		if !self {
			s.replyError(sess, iq, stanza.Forbidden, "only the owner publishes")
			return
		}
		s.pepPublish(ctx, sess, iq, q, owner)
	case set && q.Child(NSPubSub, "retract") != nil:
		if !self {
			s.replyError(sess, iq, stanza.Forbidden, "only the owner retracts")
			return
		}
		s.pepRetract(ctx, sess, iq, q.Child(NSPubSub, "retract"), owner)
	case set && q.Child(NSPubSub, "create") != nil:
		if !self {
			s.replyError(sess, iq, stanza.Forbidden, "only the owner creates nodes")
			return
		}
		s.pepCreate(ctx, sess, iq, q, owner)
	case set && (q.Child(NSPubSub, "subscribe") != nil || q.Child(NSPubSub, "unsubscribe") != nil):
		// Contacts subscribe through presence and +notify.
		s.pubsubError(sess, iq, stanza.FeatureNotImplemented, "unsupported")
	case !set && q.Child(NSPubSub, "items") != nil:
		s.pepItems(ctx, sess, iq, q, owner)
	default:
		s.replyError(sess, iq, stanza.FeatureNotImplemented, "")
	}
}

func (s *Service) pepPublish(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID) {
	pub := q.Child(NSPubSub, "publish")
	name := pub.Attr("node")
	if name == "" {
		s.pubsubError(sess, iq, stanza.BadRequest, "nodeid-required")
		return
	}
	var items []*stanza.Element
	for _, c := range pub.Elements() {
		if c.Space == NSPubSub && c.Local == "item" {
			items = append(items, c)
		}
	}
	if len(items) != 1 {
		s.pubsubError(sess, iq, stanza.BadRequest, "item-required")
		return
	}
	item := items[0]
	payloads := item.Elements()
	if len(payloads) != 1 {
		s.pubsubError(sess, iq, stanza.BadRequest, map[bool]string{true: "payload-required", false: "invalid-payload"}[len(payloads) == 0])
		return
	}
	raw := []byte(payloads[0].String())
	if len(raw) > s.lim.PEPItemBytes {
		s.pubsubErrorText(sess, iq, stanza.NotAcceptable, "payload-too-big",
			fmt.Sprintf("an item may be at most %d bytes", s.lim.PEPItemBytes))
		return
	}
	var opts map[string]string
	if po := q.Child(NSPubSub, "publish-options"); po != nil {
		var ok bool
		if opts, ok = formValues(po.Child(NSDataForms, "x"), NSPubSub+"#publish-options"); !ok {
			s.replyError(sess, iq, stanza.BadRequest, "publish-options need FORM_TYPE "+NSPubSub+"#publish-options")
			return
		}
	}
	id := item.Attr("id")
	if id == "" {
		id = newID()
	}
	if len(name) > pepMaxName || len(id) > pepMaxName {
		s.replyError(sess, iq, stanza.NotAcceptable, "the node name or item id is too long")
		return
	}
	local := owner.Localpart()
	lk := s.pepLock(local)
	lk.Lock()
	n, err := s.pep.PEPNode(ctx, local, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		n = defaultNode(name)
		if _, ok := applyOptions(&n, opts, s.lim.PEPItems); !ok {
			lk.Unlock()
			s.pubsubError(sess, iq, stanza.Conflict, "precondition-not-met")
			return
		}
		err = s.pep.CreatePEPNode(ctx, local, n, s.lim.PEPNodes)
	case err == nil:
		// Publish-options are preconditions on an existing node (§7.1.5).
		want := n
		if _, ok := applyOptions(&want, opts, s.lim.PEPItems); !ok || want != n {
			lk.Unlock()
			s.pubsubError(sess, iq, stanza.Conflict, "precondition-not-met")
			return
		}
	}
	if err == nil {
		err = s.pep.PublishPEPItemWithin(ctx, local, name, store.PEPItem{
			ID: id, Publisher: sess.JID().String(), Stamp: s.now().UTC(), Payload: raw}, int64(s.lim.PEPNodeBytes))
		if errors.Is(err, store.ErrLimit) {
			lk.Unlock()
			s.pubsubErrorText(sess, iq, stanza.NotAcceptable, "payload-too-big",
				fmt.Sprintf("a node may hold at most %d bytes of items: retract some first", s.lim.PEPNodeBytes))
			return
		}
	}
	lk.Unlock()
	if s.pepNodesFull(sess, iq, err) {
		return
	}
	if err != nil {
		s.log.Error("chat: pep publish", "jid", sess.JID().String(), "node", name, "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	res := stanza.New(NSPubSub, "pubsub").Append(
		stanza.New(NSPubSub, "publish").SetAttr("node", name).Append(
			stanza.New(NSPubSub, "item").SetAttr("id", id)))
	s.send(sess, stanza.Result(iq, res))
	ev := stanza.New(NSPubSubEvent, "item").SetAttr("id", id).SetAttr("publisher", sess.JID().Bare().String())
	ev.Append(payloads[0].Copy())
	s.notify(ctx, local, n, stanza.New(NSPubSubEvent, "items").SetAttr("node", name).Append(ev))
	if name == nsBookmarks {
		s.syncLegacyBookmarks(ctx, local)
	}
}

func (s *Service) pepRetract(ctx context.Context, sess Session, iq, r *stanza.Element, owner jid.JID) {
	name := r.Attr("node")
	item := r.Child(NSPubSub, "item")
	switch {
	case name == "":
		s.pubsubError(sess, iq, stanza.BadRequest, "nodeid-required")
		return
	case item == nil || item.Attr("id") == "":
		s.pubsubError(sess, iq, stanza.BadRequest, "item-required")
		return
	}
	local := owner.Localpart()
	n, err := s.pep.PEPNode(ctx, local, name)
	if err == nil {
		err = s.pep.RetractPEPItem(ctx, local, name, item.Attr("id"))
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.replyError(sess, iq, stanza.ItemNotFound, "")
		return
	case err != nil:
		s.log.Error("chat: pep retract", "jid", sess.JID().String(), "node", name, "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	s.send(sess, stanza.Result(iq))
	if v := r.Attr("notify"); v == "true" || v == "1" {
		s.notify(ctx, local, n, stanza.New(NSPubSubEvent, "items").SetAttr("node", name).Append(
			stanza.New(NSPubSubEvent, "retract").SetAttr("id", item.Attr("id"))))
	}
	if name == nsBookmarks {
		s.syncLegacyBookmarks(ctx, local)
	}
}

func (s *Service) pepCreate(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID) {
	name := q.Child(NSPubSub, "create").Attr("node")
	if len(name) > pepMaxName {
		s.replyError(sess, iq, stanza.NotAcceptable, "the node name is too long")
		return
	}
	if name == "" {
		// Instant nodes make no sense on an account.
		s.pubsubError(sess, iq, stanza.NotAcceptable, "nodeid-required")
		return
	}
	n := defaultNode(name)
	if c := q.Child(NSPubSub, "configure"); c != nil {
		opts, ok := formValues(c.Child(NSDataForms, "x"), NSPubSub+"#node_config")
		if !ok {
			s.replyError(sess, iq, stanza.BadRequest, "")
			return
		}
		if _, ok := applyOptions(&n, opts, s.lim.PEPItems); !ok {
			s.replyError(sess, iq, stanza.NotAcceptable, "unsupported node configuration")
			return
		}
	}
	local := owner.Localpart()
	lk := s.pepLock(local)
	lk.Lock()
	err := s.pep.CreatePEPNode(ctx, local, n, s.lim.PEPNodes)
	lk.Unlock()
	switch {
	case errors.Is(err, store.ErrExists):
		s.replyError(sess, iq, stanza.Conflict, "the node exists")
	case s.pepNodesFull(sess, iq, err):
	case err != nil:
		s.log.Error("chat: pep create", "jid", sess.JID().String(), "node", name, "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
	default:
		s.send(sess, stanza.Result(iq))
	}
}

// pepAccess checks that requester may read owner's node n; it returns the
// error condition and pubsub condition when not.
func (s *Service) pepAccess(ctx context.Context, owner string, n store.PEPNode, requester jid.JID) (cond stanza.Condition, specific string) {
	if requester.Localpart() == owner && s.isLocal(requester) {
		return "", ""
	}
	switch n.AccessModel {
	case store.AccessOpen:
		return "", ""
	case store.AccessPresence:
		it, err := s.st.RosterItem(ctx, owner, requester.Bare().String())
		if err == nil && isSubscriber(it.Subscription) {
			return "", ""
		}
		return "not-authorized", "presence-subscription-required"
	}
	return "not-allowed", "closed-node"
}

// pepNodesFull answers iq when err says the user has as many nodes as
// Limits.PEPNodes allows, and reports whether it did.
func (s *Service) pepNodesFull(sess Session, iq *stanza.Element, err error) bool {
	if !errors.Is(err, store.ErrLimit) {
		return false
	}
	s.pubsubErrorText(sess, iq, stanza.ResourceConstraint, "max-nodes-exceeded",
		fmt.Sprintf("an account may have at most %d nodes: delete one first", s.lim.PEPNodes))
	return true
}

// pepItems answers an items request (XEP-0060 §6.5): the items named, or
// a page of the node's items. Without a Result Set Management <set/> the
// page is the newest items, max_items of them if given; with one, it pages
// as XEP-0059 says, the node's items oldest first being the result set.
// A page holds at most pepPageBytes of payloads (and at least one item);
// when it is not the whole node, a <set/> says where it lies.
func (s *Service) pepItems(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID) {
	req := q.Child(NSPubSub, "items")
	name := req.Attr("node")
	if name == "" {
		s.pubsubError(sess, iq, stanza.BadRequest, "nodeid-required")
		return
	}
	local := owner.Localpart()
	n, err := s.pep.PEPNode(ctx, local, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.replyError(sess, iq, stanza.ItemNotFound, "")
		return
	case err != nil:
		s.log.Error("chat: pep items", "jid", sess.JID().String(), "node", name, "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	if cond, specific := s.pepAccess(ctx, local, n, sess.JID()); cond != "" {
		s.pubsubError(sess, iq, cond, specific)
		return
	}
	var ids []string
	for _, it := range req.Elements() {
		if it.Space == NSPubSub && it.Local == "item" && it.Attr("id") != "" {
			ids = append(ids, it.Attr("id"))
		}
	}
	pq := store.PEPItemQuery{Last: true, Max: s.lim.PEPItems, MaxBytes: pepPageBytes}
	if m := req.Attr("max_items"); m != "" {
		k, err := strconv.Atoi(m)
		if err != nil || k < 1 {
			s.replyError(sess, iq, stanza.BadRequest, "max_items is not a positive number")
			return
		}
		pq.Max = min(k, s.lim.PEPItems)
	}
	set := q.Child(NSRSM, "set")
	countOnly := false
	if set != nil {
		var cond stanza.Condition
		var text string
		if pq, countOnly, cond, text = s.rsmQuery(set); cond != "" {
			s.replyError(sess, iq, cond, text)
			return
		}
	}
	var page store.PEPItemPage
	if len(ids) > 0 {
		var items []store.PEPItem
		if items, err = s.pep.PEPItems(ctx, local, name, ids, 0); err == nil {
			page.Items = slices.Clone(items)
			slices.Reverse(page.Items)
		}
	} else {
		page, err = s.pep.PEPItemsPage(ctx, local, name, pq)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		// A cursor naming no item, or a node deleted meanwhile.
		s.replyError(sess, iq, stanza.ItemNotFound, "")
		return
	case err != nil:
		s.log.Error("chat: pep items", "jid", sess.JID().String(), "node", name, "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	if countOnly {
		page.Items = nil
	}
	out := stanza.New(NSPubSub, "items").SetAttr("node", name)
	for _, it := range page.Items {
		el, err := pepItemElement(NSPubSub, it)
		if err != nil {
			s.log.Error("chat: unreadable pep item", "owner", local, "node", name, "id", it.ID, "err", err)
			continue
		}
		out.Append(el)
	}
	res := stanza.New(NSPubSub, "pubsub").Append(out)
	if len(ids) == 0 && (set != nil || len(page.Items) < page.Count) {
		res.Append(rsmSet(page))
	}
	s.send(sess, stanza.Result(iq, res))
}

// rsmQuery reads an XEP-0059 <set/> asking for items: the page, and
// whether only the count is wanted (<max>0</max>). A failure gives the
// error condition and text.
func (s *Service) rsmQuery(set *stanza.Element) (q store.PEPItemQuery, countOnly bool, cond stanza.Condition, text string) {
	q = store.PEPItemQuery{Max: s.lim.PEPItems, MaxBytes: pepPageBytes}
	if m := set.Child(NSRSM, "max"); m != nil {
		k, err := strconv.Atoi(strings.TrimSpace(m.Text()))
		if err != nil || k < 0 {
			return q, false, "bad-request", "max is not a number"
		}
		q.Max, countOnly = min(max(k, 1), s.lim.PEPItems), k == 0
	}
	if set.Child(NSRSM, "index") != nil {
		return q, false, "feature-not-implemented", "paging by index is not supported"
	}
	if a := set.Child(NSRSM, "after"); a != nil {
		q.After = strings.TrimSpace(a.Text())
	}
	if b := set.Child(NSRSM, "before"); b != nil {
		q.Before, q.Last = strings.TrimSpace(b.Text()), true
	}
	if q.After != "" && q.Last {
		return q, false, "bad-request", "after and before together"
	}
	return q, countOnly, "", ""
}

// rsmSet describes a page of items as XEP-0059 does.
func rsmSet(p store.PEPItemPage) *stanza.Element {
	set := stanza.New(NSRSM, "set")
	if n := len(p.Items); n > 0 {
		set.Append(stanza.New(NSRSM, "first").SetAttr("index", strconv.Itoa(p.First)).SetText(p.Items[0].ID))
		set.Append(stanza.New(NSRSM, "last").SetText(p.Items[n-1].ID))
	}
	return set.Append(stanza.New(NSRSM, "count").SetText(strconv.Itoa(p.Count)))
}

// pepItemElement renders a stored item in namespace space (pubsub or
// pubsub#event).
func pepItemElement(space string, it store.PEPItem) (*stanza.Element, error) {
	p, err := stanza.Parse(it.Payload)
	if err != nil {
		return nil, err
	}
	return stanza.New(space, "item").SetAttr("id", it.ID).Append(p), nil
}
