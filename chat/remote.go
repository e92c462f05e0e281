package chat

import (
	"context"
	"slices"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// ResourceState is what routing needs to know about a session: what
// another node of a cluster mirrors of this node's sessions (Publisher)
// and tells this one about its own (SetRemote). A session's state here
// (resource) embeds it, so its fields are listed once.
type ResourceState struct {
	Available  bool            // sent available presence, not yet unavailable
	Priority   int             // from the last available presence
	Presence   *stanza.Element // last broadcast presence (from set, no to); nil when unavailable
	Interested bool            // requested the roster: receives roster pushes
	Carbons    bool            // enabled message carbons (XEP-0280)
	BlockPush  bool            // requested the blocklist: receives its pushes
	// Notify lists the +notify features of its entity capabilities
	// (XEP-0163), sorted, which PEP notifications are filtered by; nil
	// while they are not known.
	Notify []string
}

// equal reports whether a and b are the same state: the same presence
// element (by pointer) and the same +notify features (nil differs from
// empty). TestResourceStateEqual checks that it compares every field.
func (a ResourceState) equal(b ResourceState) bool {
	return a.Available == b.Available && a.Priority == b.Priority && a.Presence == b.Presence &&
		a.Interested == b.Interested && a.Carbons == b.Carbons && a.BlockPush == b.BlockPush &&
		(a.Notify == nil) == (b.Notify == nil) && slices.Equal(a.Notify, b.Notify)
}

// Publisher is told about the sessions this node serves, for the other
// nodes of a cluster to route to them and mirror them (which they apply
// with SetRemote, DropRemote and ReloadBlocklist). cluster/link
// implements it (SetPublisher). Its methods run on the session's
// goroutine, outside the service's locks, in the order of the changes.
// For one session they come in this order:
//
//   - Bound, first in SessionBound, before the session is recorded here
//     and before anything is published about it;
//   - SessionChanged with the zero state, last in SessionBound; then
//     SessionChanged on every change of its routing state;
//   - SessionEnded, in SessionClosed once the session is forgotten here,
//     before its unavailable presence goes out;
//   - Closed, last in SessionClosed, after that presence; also when
//     another session took the full JID meanwhile (SessionClosed then
//     does nothing else).
//
// The order matters to a cluster: Bound takes the full JID for this node
// in the cluster's session directory (a session with that JID on another
// node is told to end), and the other nodes believe reports only about
// sessions the directory says their sender serves; Closed gives the JID
// back only once everything about the session was said, and keeps it
// when a newer session here took it.
type Publisher interface {
	// Bound reports that sess is binding here.
	Bound(ctx context.Context, sess Session)
	// SessionChanged reports that full was bound (with the zero state)
	// or that its routing state changed: presence, roster interest,
	// carbons, blocklist pushes, +notify features.
	SessionChanged(full jid.JID, st ResourceState)
	// SessionEnded reports that full's session ended.
	SessionEnded(full jid.JID)
	// Closed reports that sess's stream ended and chat is done with it.
	Closed(ctx context.Context, sess Session)
	// BlocklistChanged reports that local changed their blocklist here,
	// for the other nodes to read it again.
	BlocklistChanged(local string)
}

// SetPublisher makes the service tell p about the sessions it serves.
// Call it before the first session binds: it is not synchronised with
// them, and p must hear of every session from its Bound on.
func (s *Service) SetPublisher(p Publisher) { s.pub = p }

// SetRemote records sess, a session another node serves, with its state:
// routing then treats it like a local session (messages, presence
// broadcasts, probes, roster pushes and carbons reach it through
// sess.Send), while its own presence, offline queue and roster stay the
// business of the node serving it. It replaces any session with the same
// full JID (a newer login elsewhere).
func (s *Service) SetRemote(sess Session, st ResourceState) {
	me := sess.JID()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.resourcesLocked(me.Localpart())
	r := m[me.Resourcepart()]
	if r == nil || r.sess != sess {
		r = &resource{sess: sess, remote: true}
		m[me.Resourcepart()] = r
	}
	r.ResourceState = st
	if !st.Available {
		r.Priority, r.Presence = 0, nil
	}
	r.features = nil
	if st.Notify != nil {
		r.features = make(map[string]bool, len(st.Notify))
		for _, f := range st.Notify {
			r.features[f] = true
		}
	}
}

// DropRemote forgets the remote session sess. With announce (its node is
// gone and cannot say so itself), the local sessions that saw its
// presence, its contacts' and its user's own, receive unavailable
// presence from it.
func (s *Service) DropRemote(ctx context.Context, sess Session, announce bool) {
	me := sess.JID()
	s.mu.Lock()
	r, _ := s.detachLocked(sess)
	wasAvailable := r != nil && r.Available
	s.mu.Unlock()
	if !announce || !wasAvailable {
		return
	}
	p := stanza.NewPresence(stanza.UnavailablePresence).SetAttr("from", me.String())
	items, err := s.st.RosterItems(ctx, me.Localpart())
	if err != nil {
		s.log.Error("chat: load roster for presence", "jid", me.String(), "err", err)
	}
	for _, it := range items {
		if it.Subscription != store.SubFrom && it.Subscription != store.SubBoth {
			continue
		}
		if j, err := jid.Parse(it.Contact); err == nil && s.isLocal(j) && j.Localpart() != "" {
			s.presenceToLocal(p, j.Bare())
		}
	}
	s.presenceToLocal(p, me.Bare())
}

// presenceToLocal sends a copy of p addressed to bare to the available
// sessions of bare that this node serves.
func (s *Service) presenceToLocal(p *stanza.Element, bare jid.JID) {
	q := p.Copy()
	q.SetAttr("to", bare.String())
	for _, t := range s.available(bare.Localpart()) {
		if !t.remote {
			s.send(t.sess, q)
		}
	}
}

// LocalStates calls fn with the routing state of every session this node
// serves (for a node that joins the cluster, or rejoins it).
func (s *Service) LocalStates(fn func(full jid.JID, st ResourceState)) {
	type entry struct {
		full jid.JID
		st   ResourceState
	}
	var all []entry
	s.mu.Lock()
	for _, m := range s.users {
		for _, r := range m {
			if !r.remote {
				all = append(all, entry{r.sess.JID(), r.ResourceState})
			}
		}
	}
	s.mu.Unlock()
	for _, e := range all {
		fn(e.full, e.st)
	}
}

// SendTo hands el, routed here by another node, to sess, one of this
// node's sessions, applying the user's blocklist like any local delivery.
// It reports whether the session took it.
func (s *Service) SendTo(sess Session, el *stanza.Element) bool { return s.send(sess, el) }

// Undeliverable takes a stanza another node routed to a session that no
// longer exists here, or that a node which died never delivered: a chat
// or normal message with content goes to its recipient's offline queue
// (never lost); anything else is dropped, as for a session that ended.
// It reports whether it queued a message, for the recipient's sessions
// on other nodes to be told (DrainUser).
func (s *Service) Undeliverable(ctx context.Context, el *stanza.Element) (queued bool) {
	to, err := el.ToJID()
	if err != nil || !s.isLocal(to) || to.Localpart() == "" || el.Local != "message" {
		s.log.Debug("chat: undeliverable stanza dropped", "to", el.To(), "name", el.Local)
		return false
	}
	switch messageType(el) {
	case stanza.ChatMessage, stanza.NormalMessage:
	default:
		return false
	}
	if !storable(el) {
		return false
	}
	from, _ := el.FromJID()
	s.storeOffline(ctx, &component{jid: from, s: s}, el, to.Localpart())
	return true
}

// DrainUser delivers the offline messages of the user with this bare JID
// to their best available session on this node, if there is one.
func (s *Service) DrainUser(ctx context.Context, bare jid.JID) {
	if s.isLocal(bare) && bare.Localpart() != "" {
		s.drainHere(ctx, bare.Localpart())
	}
}

// drainHere delivers local's offline messages to the session of highest
// non-negative priority this node serves, if there is one. (Another node
// drains for its own sessions.)
func (s *Service) drainHere(ctx context.Context, local string) {
	var best Session
	top := -1
	for _, t := range s.available(local) {
		if t.Priority > top && !t.remote {
			best, top = t.sess, t.Priority
		}
	}
	if best != nil {
		s.drainOffline(ctx, local, best)
	}
}

// DrainOffline delivers waiting offline messages to every available
// session this node serves (after a cluster outage during which messages
// for them were stored offline).
func (s *Service) DrainOffline(ctx context.Context) {
	var locals []string
	s.mu.Lock()
	for local, m := range s.users {
		for _, r := range m {
			if !r.remote && r.Available && r.Priority >= 0 {
				locals = append(locals, local)
				break
			}
		}
	}
	s.mu.Unlock()
	for _, local := range locals {
		if ctx.Err() != nil {
			return
		}
		s.drainHere(ctx, local)
	}
}

// ReloadBlocklist reads local's blocklist again if it is cached here:
// another node changed it.
func (s *Service) ReloadBlocklist(ctx context.Context, local string) {
	if s.blockSt == nil {
		return
	}
	s.blockMu.Lock()
	_, ok := s.blocks[local]
	s.blockMu.Unlock()
	if !ok {
		return
	}
	l, err := s.blockSt.BlockList(ctx, local)
	if err != nil {
		s.log.Error("chat: reload blocklist", "user", local, "err", err)
		return
	}
	s.blockMu.Lock()
	defer s.blockMu.Unlock()
	if _, ok := s.blocks[local]; ok {
		s.setBlocksLocked(local, l)
	}
}
