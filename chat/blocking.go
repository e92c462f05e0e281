package chat

import (
	"context"
	"errors"
	"slices"
	"strconv"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// maxBlockedJID is the longest address a blocklist holds (the store's
// column size).
const maxBlockedJID = 3000

// loadBlocklist caches the blocklist of a user who has a session.
func (s *Service) loadBlocklist(ctx context.Context, local string) {
	if s.blockSt == nil {
		return
	}
	s.blockMu.Lock()
	_, ok := s.blocks[local]
	s.blockMu.Unlock()
	if ok {
		return
	}
	l, err := s.blockSt.BlockList(ctx, local)
	if err != nil {
		s.log.Error("chat: load blocklist", "user", local, "err", err)
		return
	}
	s.blockMu.Lock()
	defer s.blockMu.Unlock()
	if _, ok := s.blocks[local]; !ok {
		// A concurrent change has already cached a newer list otherwise.
		s.setBlocksLocked(local, l)
	}
}

// setBlocksLocked caches l as local's list. s.blockMu must be held.
func (s *Service) setBlocksLocked(local string, l []string) {
	if old, ok := s.blocks[local]; ok && len(old) > 0 {
		s.blockActive.Add(-1)
	}
	s.blocks[local] = l
	if len(l) > 0 {
		s.blockActive.Add(1)
	}
}

// forgetBlocklist drops the cached list of a user whose last session ended.
func (s *Service) forgetBlocklist(local string) {
	if s.blockSt == nil {
		return
	}
	s.blockMu.Lock()
	defer s.blockMu.Unlock()
	if old, ok := s.blocks[local]; ok {
		if len(old) > 0 {
			s.blockActive.Add(-1)
		}
		delete(s.blocks, local)
	}
}

// blocklist returns local's list: the cached one, or the store's for a
// user without sessions.
func (s *Service) blocklist(ctx context.Context, local string) ([]string, error) {
	s.blockMu.Lock()
	l, ok := s.blocks[local]
	s.blockMu.Unlock()
	if ok {
		return l, nil
	}
	return s.blockSt.BlockList(ctx, local)
}

// matchBlocked reports whether the JID with these parts matches an item of
// list (XEP-0191 §3.1 with XEP-0016's matching: full, bare, domain/resource
// or domain).
func matchBlocked(list []string, local, domain, res string) bool {
	if len(list) == 0 {
		return false
	}
	bare := domain
	if local != "" {
		bare = local + "@" + domain
	}
	for _, b := range list {
		switch b {
		case bare, domain:
			return true
		}
		if res != "" && (b == bare+"/"+res || b == domain+"/"+res) {
			return true
		}
	}
	return false
}

// isBlocked reports whether the user local blocked j. A store failure is
// logged and counts as not blocked.
func (s *Service) isBlocked(ctx context.Context, local string, j jid.JID) bool {
	l, err := s.blocklist(ctx, local)
	if err != nil {
		s.log.Error("chat: load blocklist", "user", local, "err", err)
		return false
	}
	return matchBlocked(l, j.Localpart(), j.Domainpart(), j.Resourcepart())
}

// blockedBetween reports, from the cached lists only, whether a stanza
// from 'from' to the session rcpt must be dropped: either side blocked the
// other. The server itself and a user's own JIDs are never blocked.
func (s *Service) blockedBetween(rcpt jid.JID, from string) bool {
	fl, fd, fr := jidParts(from)
	if from == "" || fl == "" && fd == s.domain || fl == rcpt.Localpart() && fd == rcpt.Domainpart() {
		return false
	}
	s.blockMu.Lock()
	defer s.blockMu.Unlock()
	if matchBlocked(s.blocks[rcpt.Localpart()], fl, fd, fr) {
		return true
	}
	if fd == s.domain && fl != "" {
		return matchBlocked(s.blocks[fl], rcpt.Localpart(), rcpt.Domainpart(), rcpt.Resourcepart())
	}
	return false
}

// replyBlocked answers a stanza the user sent to someone they blocked
// (XEP-0191 §3.6).
func (s *Service) replyBlocked(sess Session, el *stanza.Element) {
	if el.IsError() {
		return
	}
	r := stanza.ErrorReply(el, stanza.NotAcceptable, "")
	r.SetAttr("to", sess.JID().String())
	if e := r.Child("", "error"); e != nil {
		e.Append(stanza.New(NSBlockingErrs, "blocked"))
	}
	s.sendDirect(sess, r)
}

// blockingIQ serves the blocklist: get, block and unblock (XEP-0191).
func (s *Service) blockingIQ(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID, _ bool) {
	local := owner.Localpart()
	get := iq.IQType() == stanza.GetIQ
	if get != (q.Local == "blocklist") {
		s.replyError(sess, iq, stanza.BadRequest, "")
		return
	}
	if get {
		l, err := s.blockSt.BlockList(ctx, local)
		if err != nil {
			s.log.Error("chat: load blocklist", "jid", sess.JID().String(), "err", err)
			s.replyError(sess, iq, stanza.InternalServerError, "")
			return
		}
		res := stanza.New(NSBlocking, "blocklist")
		for _, j := range l {
			res.Append(stanza.New(NSBlocking, "item").SetAttr("jid", j))
		}
		s.update(sess, func(r *resource) { r.BlockPush = true })
		s.send(sess, stanza.Result(iq, res))
		return
	}
	var items []string
	for _, it := range q.Elements() {
		if it.Space != NSBlocking || it.Local != "item" {
			continue
		}
		j, err := jid.Parse(it.Attr("jid"))
		if err != nil || it.Attr("jid") == "" {
			s.replyError(sess, iq, stanza.JIDMalformed, "")
			return
		}
		if len(j.String()) > maxBlockedJID {
			s.replyError(sess, iq, stanza.NotAcceptable, "the address is too long to block")
			return
		}
		if !slices.Contains(items, j.String()) {
			items = append(items, j.String())
		}
	}
	if q.Local == "block" && len(items) == 0 {
		s.replyError(sess, iq, stanza.BadRequest, "a block carries at least one item")
		return
	}

	// Changes of one user's list are serialised (with the roster's lock)
	// so that the cache always ends with the store's latest list.
	lk := s.rosterLock(local)
	lk.Lock()
	before, err := s.blockSt.BlockList(ctx, local)
	if err == nil {
		if q.Local == "block" {
			err = s.blockSt.Block(ctx, local, items)
		} else {
			err = s.blockSt.Unblock(ctx, local, items)
		}
	}
	var after []string
	if err == nil {
		after, err = s.blockSt.BlockList(ctx, local)
	}
	if err == nil {
		s.blockMu.Lock()
		s.setBlocksLocked(local, after)
		s.blockMu.Unlock()
	}
	lk.Unlock()
	if err != nil {
		s.log.Error("chat: change blocklist", "jid", sess.JID().String(), "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	s.send(sess, stanza.Result(iq))
	if s.pub != nil {
		s.pub.BlocklistChanged(local)
	}

	// Pushes to every session that asked for the list.
	push := stanza.New(NSBlocking, q.Local)
	for _, j := range items {
		push.Append(stanza.New(NSBlocking, "item").SetAttr("jid", j))
	}
	s.mu.Lock()
	var interested []Session
	for _, r := range s.users[local] {
		if r.BlockPush {
			interested = append(interested, r.sess)
		}
	}
	s.mu.Unlock()
	for _, t := range interested {
		p := stanza.NewIQ(stanza.SetIQ).
			SetAttr("id", "block"+strconv.FormatUint(s.pushSeq.Add(1), 10)).
			SetAttr("to", t.JID().String()).Append(push.Copy())
		s.sendDirect(t, p)
	}

	if q.Local == "block" {
		// The newly blocked see the user go offline (§3.3).
		for _, j := range items {
			if !slices.Contains(before, j) {
				s.unavailableTo(local, j)
			}
		}
		return
	}
	// Unblocked subscribers see the user's presence again.
	gone := before
	if len(items) > 0 {
		gone = items
	}
	for _, j := range gone {
		if slices.Contains(after, j) {
			continue
		}
		c, err := jid.Parse(j)
		if err != nil || !s.isRemote(c) && !s.isLocal(c) || c.Localpart() == "" || c.Resourcepart() != "" {
			continue
		}
		it, err := s.st.RosterItem(ctx, local, c.String())
		if err == nil && isSubscriber(it.Subscription) {
			s.sendPresenceFrom(local, c)
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("chat: roster after unblock", "user", local, "err", err)
		}
	}
}

// unavailableTo sends unavailable presence from each available session of
// local to the local address j (a bare or full JID, or the domain).
func (s *Service) unavailableTo(local, j string) {
	c, err := jid.Parse(j)
	if err != nil || !s.isRemote(c) && (!s.isLocal(c) || c.Localpart() == "") {
		return
	}
	for _, t := range s.available(local) {
		p := stanza.New(stanza.NSClient, "presence").
			SetAttr("from", t.sess.JID().String()).
			SetAttr("to", c.String()).
			SetType(stanza.UnavailablePresence)
		if s.isRemote(c) {
			// Sent although now blocked: it is the last they hear.
			s.sendRemote(p)
			continue
		}
		if c.Resourcepart() != "" {
			if dst := s.bound(c.Localpart(), c.Resourcepart()); dst != nil {
				s.sendDirect(dst, p)
			}
			continue
		}
		for _, d := range s.available(c.Localpart()) {
			s.sendDirect(d.sess, p)
		}
	}
}

// iqBlocked handles an IQ between a user and another local user when
// either blocked the other, and reports whether it did: a request to
// someone the sender blocked is refused with not-acceptable, a request
// from someone the recipient blocked with service-unavailable (§3.5, §3.6);
// results and errors are dropped.
func (s *Service) iqBlocked(ctx context.Context, sess Session, el *stanza.Element, to jid.JID, request bool) bool {
	if s.blockSt == nil || !s.isLocal(to) || to.Localpart() == "" {
		return false
	}
	me := sess.JID()
	switch {
	case s.isBlocked(ctx, me.Localpart(), to):
		if request {
			s.replyBlocked(sess, el)
		}
	case s.isBlocked(ctx, to.Localpart(), me):
		if request {
			s.replyError(sess, el, stanza.ServiceUnavailable, "")
		}
	default:
		return false
	}
	return true
}
