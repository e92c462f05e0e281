package chat

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// MAM paging limits (XEP-0313 leaves them to the server).
const (
	mamDefaultMax = 50
	mamMaxPage    = 250
)

// Hints (XEP-0334) and payloads the archive and carbons look at.
const (
	nsOMEMOLegacy = "eu.siacs.conversations.axolotl"
	nsOMEMO2      = "urn:xmpp:omemo:2"
	nsOpenPGP     = "urn:xmpp:openpgp:0"
	nsReceipts    = "urn:xmpp:receipts"
	nsReactions   = "urn:xmpp:reactions:0"
	nsRetract     = "urn:xmpp:message-retract:1"
)

// routeChat applies blocking, archiving and carbons to a message from a
// local user to a local user, then routes it.
func (s *Service) routeChat(ctx context.Context, sess Session, el *stanza.Element, to jid.JID) {
	me := sess.JID()
	typ := messageType(el)
	self := to.Localpart() == me.Localpart()
	if s.blockSt != nil && typ != stanza.ErrorMessage && !self {
		if s.isBlocked(ctx, me.Localpart(), to) {
			s.replyBlocked(sess, el)
			return
		}
		if s.isBlocked(ctx, to.Localpart(), me) {
			// XEP-0191 §3.5: the contact is not told it is blocked.
			s.replyError(sess, el, stanza.ServiceUnavailable, "")
			return
		}
	}
	if s.archive != nil && el.Child(NSSID, "stanza-id") != nil {
		// Only this server may say which ids its archives gave (XEP-0359).
		stripStanzaIDs(el, printedBare(el, me), printedBare(el, to))
	}
	carbon := !self && carbonEligible(el)
	keep := s.archive != nil && archivable(el)
	if carbon || keep {
		// Nothing is copied or kept for a message that bounces because
		// its recipient does not exist (routeMessage answers the sender).
		if ok, err := s.exists(ctx, to.Localpart()); err != nil || !ok {
			carbon, keep = false, false
		}
	}
	sent := el
	if keep {
		mine, theirs := s.archiveBoth(ctx, me, to, el, self)
		if carbon && mine != "" {
			sent = el.Copy()
			sent.Append(stanzaID(mine, printedBare(el, me)))
		}
		if theirs != "" {
			el.Append(stanzaID(theirs, printedBare(el, to)))
		}
	}
	if carbon {
		s.sentCarbons(sess, sent)
	}
	delivered := s.routeMessage(ctx, sess, el, to)
	if carbon {
		s.receivedCarbons(el, to.Localpart(), delivered)
	}
}

// printed is j.String(), taken from el's from or to attribute when that
// holds j as stamped (stanza.Element.SetFrom, SetTo), so that an address
// is printed once per stanza rather than at each use.
func printed(el *stanza.Element, j jid.JID) string {
	switch {
	case el.FromIs(j):
		return el.From()
	case el.ToIs(j):
		return el.To()
	}
	return j.String()
}

// printedBare is j.Bare().String(), cut from printed(el, j) (the
// localpart and domainpart hold no '/').
func printedBare(el *stanza.Element, j jid.JID) string {
	if !el.FromIs(j) && !el.ToIs(j) {
		return j.Bare().String()
	}
	p := printed(el, j)
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return p
}

func stanzaID(id, by string) *stanza.Element {
	return stanza.New(NSSID, "stanza-id").SetAttr("id", id).SetAttr("by", by)
}

// stripStanzaIDs removes stanza-ids claiming to come from these JIDs.
func stripStanzaIDs(el *stanza.Element, by ...string) {
	out := el.Children[:0]
	for _, c := range el.Children {
		if ce, ok := c.(*stanza.Element); ok && ce.Space == NSSID && ce.Local == "stanza-id" {
			forged := false
			for _, b := range by {
				forged = forged || ce.Attr("by") == b
			}
			if forged {
				continue
			}
		}
		out = append(out, c)
	}
	el.Children = out
}

// archivable reports whether a message belongs in the history: chat or
// normal, with a body or an encrypted payload, or what changes how the
// history reads (a delivery receipt, XEP-0184; reactions, XEP-0444; a
// retraction, XEP-0424), or a <store/> hint (XEP-0334: call invitations,
// XEP-0353), and no hint against storing.
func archivable(el *stanza.Element) bool {
	if t := messageType(el); t != stanza.ChatMessage && t != stanza.NormalMessage {
		return false
	}
	content := false
	for _, c := range el.Elements() {
		switch {
		case c.Space == NSHints && (c.Local == "no-store" || c.Local == "no-permanent-store"):
			return false
		case c.Local == "body",
			c.Local == "encrypted" && (c.Space == nsOMEMOLegacy || c.Space == nsOMEMO2),
			c.Local == "openpgp" && c.Space == nsOpenPGP,
			c.Local == "received" && c.Space == nsReceipts,
			c.Local == "reactions" && c.Space == nsReactions,
			c.Local == "retract" && c.Space == nsRetract,
			c.Local == "store" && c.Space == NSHints:
			content = true
		}
	}
	return content
}

// archiveBoth stores el in the sender's and the recipient's archives (one
// for a message to oneself) in one write, and returns the stanza-ids each
// gave it; both are "" when it could not be stored (logged: delivery goes
// on without them).
func (s *Service) archiveBoth(ctx context.Context, from, to jid.JID, el *stanza.Element, self bool) (mine, theirs string) {
	stamp := s.now().UTC()
	raw := []byte(el.String())
	lim := store.ArchiveLimit{Messages: s.lim.ArchiveMessages, Bytes: s.lim.ArchiveBytes}
	fromS, toS := printed(el, from), printed(el, to)
	ok := s.archiveEntries(ctx, fromS, toS, func() []store.ArchiveEntry {
		mine, theirs = newID(), newID()
		entries := []store.ArchiveEntry{{Owner: from.Localpart(), Limit: lim,
			Message: store.ArchivedMessage{ID: mine, With: toS, Stamp: stamp, Stanza: raw}}}
		if self {
			theirs = mine
		} else {
			entries = append(entries, store.ArchiveEntry{Owner: to.Localpart(), Limit: lim,
				Message: store.ArchivedMessage{ID: theirs, With: fromS, Stamp: stamp, Stanza: raw}})
		}
		return entries
	})
	if !ok {
		return "", ""
	}
	return mine, theirs
}

// archiveFor stores el in the archive of the local user owner alone (a
// message to or from another server, which keeps its own), with the
// other party's address; it returns the stanza-id given, "" when it could
// not be stored.
func (s *Service) archiveFor(ctx context.Context, owner, with string, el *stanza.Element) string {
	stamp := s.now().UTC()
	raw := []byte(el.String())
	var id string
	ok := s.archiveEntries(ctx, owner, with, func() []store.ArchiveEntry {
		id = newID()
		return []store.ArchiveEntry{{Owner: owner, Limit: store.ArchiveLimit{Messages: s.lim.ArchiveMessages, Bytes: s.lim.ArchiveBytes},
			Message: store.ArchivedMessage{ID: id, With: with, Stamp: stamp, Stanza: raw}}}
	})
	if !ok {
		return ""
	}
	return id
}

// archiveEntries writes the entries made fresh by build, once more when
// a new id happens to be taken; a failure is logged (delivery goes on
// without the archive).
func (s *Service) archiveEntries(ctx context.Context, from, to string, build func() []store.ArchiveEntry) bool {
	for range 2 {
		err := s.archive.ArchiveMessages(ctx, build())
		if err == nil {
			return true
		}
		if !errors.Is(err, store.ErrExists) {
			s.log.Error("chat: archive message", "from", from, "to", to, "err", err)
			return false
		}
	}
	return false
}

// mamQueryIQ answers a query of the user's own archive (XEP-0313): the
// result messages, then the IQ result with the paging summary.
func (s *Service) mamQueryIQ(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID, self bool) {
	if !self {
		s.replyError(sess, iq, stanza.ServiceUnavailable, "")
		return
	}
	if iq.IQType() == stanza.GetIQ {
		s.send(sess, stanza.Result(iq, mamForm()))
		return
	}
	aq, cond, text := parseMAMQuery(q)
	if cond != "" {
		s.replyError(sess, iq, cond, text)
		return
	}
	page, err := s.archive.QueryArchive(ctx, owner.Localpart(), aq)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.replyError(sess, iq, stanza.ItemNotFound, "no message with that id in the archive")
		return
	case err != nil:
		s.log.Error("chat: query archive", "jid", sess.JID().String(), "err", err)
		s.replyError(sess, iq, stanza.InternalServerError, "")
		return
	}
	qid := q.Attr("queryid")
	for _, m := range page.Messages {
		orig, err := stanza.Parse(m.Stanza)
		if err != nil {
			s.log.Error("chat: unreadable archived message", "jid", sess.JID().String(), "id", m.ID, "err", err)
			continue
		}
		orig.Space = stanza.NSClient
		res := stanza.New(NSMAM, "result").SetAttr("queryid", qid).SetAttr("id", m.ID)
		res.Append(stanza.New(NSForward, "forwarded").Append(
			stanza.New(stanza.NSDelay, "delay").SetAttr("stamp", formatStamp(m.Stamp)),
			orig,
		))
		msg := stanza.New(stanza.NSClient, "message").
			SetAttr("from", owner.Bare().String()).
			SetAttr("to", sess.JID().String()).
			SetAttr("id", newID())
		if !s.sendBulk(ctx, sess, msg.Append(res)) {
			return
		}
	}
	set := stanza.New(NSRSM, "set")
	if n := len(page.Messages); n > 0 {
		set.Append(stanza.New(NSRSM, "first").SetText(page.Messages[0].ID))
		set.Append(stanza.New(NSRSM, "last").SetText(page.Messages[n-1].ID))
	}
	set.Append(stanza.New(NSRSM, "count").SetText(strconv.Itoa(page.Count)))
	fin := stanza.New(NSMAM, "fin").SetAttr("complete", strconv.FormatBool(page.Complete)).Append(set)
	if qid != "" {
		fin.SetAttr("queryid", qid)
	}
	s.sendBulk(ctx, sess, stanza.Result(iq, fin))
}

// formatStamp renders an archive time as XEP-0082 UTC with microseconds.
func formatStamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// mamForm is the query form (XEP-0313 §5.1) listing the filters poosms
// supports.
func mamForm() *stanza.Element {
	x := stanza.New(NSDataForms, "x").SetAttr("type", "form")
	x.Append(stanza.New(NSDataForms, "field").SetAttr("var", "FORM_TYPE").SetAttr("type", "hidden").
		Append(stanza.New(NSDataForms, "value").SetText(NSMAM)))
	for _, f := range [][2]string{{"with", "jid-single"}, {"start", "text-single"}, {"end", "text-single"},
		{"before-id", "text-single"}, {"after-id", "text-single"}, {"ids", "text-multi"}} {
		x.Append(stanza.New(NSDataForms, "field").SetAttr("var", f[0]).SetAttr("type", f[1]))
	}
	return stanza.New(NSMAM, "query").Append(x)
}

// parseMAMQuery reads the data form and the RSM set of a query. A failure
// gives the error condition and text.
func parseMAMQuery(q *stanza.Element) (aq store.ArchiveQuery, cond stanza.Condition, text string) {
	aq.Max = mamDefaultMax
	if x := q.Child(NSDataForms, "x"); x != nil {
		for _, f := range x.Elements() {
			if f.Space != NSDataForms || f.Local != "field" {
				continue
			}
			var values []string
			for _, v := range f.Elements() {
				if v.Space == NSDataForms && v.Local == "value" {
					values = append(values, strings.TrimSpace(v.Text()))
				}
			}
			one := ""
			if len(values) > 0 {
				one = values[0]
			}
			switch f.Attr("var") {
			case "FORM_TYPE":
				if one != NSMAM {
					return aq, "bad-request", "the form is not a " + NSMAM + " query"
				}
			case "with":
				if one == "" {
					continue
				}
				j, err := jid.Parse(one)
				if err != nil {
					return aq, "jid-malformed", "with is not a valid address"
				}
				aq.With = j.String()
			case "start", "end":
				if one == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339Nano, one)
				if err != nil {
					return aq, "bad-request", f.Attr("var") + " is not an XEP-0082 date and time"
				}
				if f.Attr("var") == "start" {
					aq.Start = t
				} else {
					aq.End = t
				}
			case "before-id":
				aq.BeforeID = one
			case "after-id":
				aq.AfterID = one
			case "ids":
				aq.IDs = append([]string{}, values...)
			default:
				return aq, "feature-not-implemented", "unsupported filter " + f.Attr("var")
			}
		}
	}
	if set := q.Child(NSRSM, "set"); set != nil {
		if m := set.Child(NSRSM, "max"); m != nil {
			n, err := strconv.Atoi(strings.TrimSpace(m.Text()))
			if err != nil || n < 0 {
				return aq, "bad-request", "max is not a number"
			}
			aq.Max = n
		}
		if a := set.Child(NSRSM, "after"); a != nil {
			aq.After = strings.TrimSpace(a.Text())
		}
		if b := set.Child(NSRSM, "before"); b != nil {
			aq.Before = strings.TrimSpace(b.Text())
			aq.Last = true
		}
		if set.Child(NSRSM, "index") != nil {
			return aq, "feature-not-implemented", "paging by index is not supported"
		}
		if aq.After != "" && aq.Last {
			return aq, "bad-request", "after and before together"
		}
	}
	aq.Max = min(aq.Max, mamMaxPage)
	return aq, "", ""
}

// mamPrefsIQ answers archiving preferences: every message is archived, so
// the preferences are fixed at default='always' and a set gets them back
// unchanged.
func (s *Service) mamPrefsIQ(ctx context.Context, sess Session, iq, q *stanza.Element, owner jid.JID, self bool) {
	if !self {
		s.replyError(sess, iq, stanza.ServiceUnavailable, "")
		return
	}
	prefs := stanza.New(NSMAM, "prefs").SetAttr("default", "always").Append(
		stanza.New(NSMAM, "always"), stanza.New(NSMAM, "never"))
	s.send(sess, stanza.Result(iq, prefs))
}

// startPruning starts the goroutine that removes archived messages older
// than retention, once at start and then every interval. Close stops it.
func (s *Service) startPruning(retention, interval time.Duration) {
	if interval <= 0 {
		interval = min(time.Hour, max(retention/10, time.Second))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopPrune = cancel
	s.pruneDone = make(chan struct{})
	go func() {
		defer close(s.pruneDone)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			s.pruneArchive(ctx, retention)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// pruneArchive removes messages received more than retention ago.
func (s *Service) pruneArchive(ctx context.Context, retention time.Duration) {
	n, err := s.archive.PruneArchive(ctx, s.now().Add(-retention))
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("chat: prune archive", "err", err)
	case n > 0:
		s.log.Debug("chat: pruned archive", "messages", n)
	}
}
