package chat

import (
	"context"
	"errors"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// handleIQ routes an IQ (RFC 6120 §8.2.3, RFC 6121 §8.5). Only get and set
// are ever answered; results and errors are delivered or swallowed.
func (s *Service) handleIQ(ctx context.Context, sess Session, el *stanza.Element, to jid.JID, hasTo bool) {
	typ := el.Type()
	request := typ == "get" || typ == "set"
	if !request && typ != "result" && typ != "error" {
		s.replyError(sess, el, stanza.BadRequest, "an iq is get, set, result or error")
		return
	}
	me := sess.JID()
	switch {
	case hasTo && s.isRemote(to):
		s.iqOut(ctx, sess, el, to, request)
	case hasTo && !s.isLocal(to):
		if request {
			s.replyError(sess, el, stanza.RemoteServerNotFound, "this server does not federate")
		}
	case !hasTo, to.Localpart() == "" && to.Resourcepart() == "":
		if request {
			s.serverIQ(ctx, sess, el, !hasTo)
		} else {
			s.serverResponse(ctx, sess, el)
		}
	case to.Localpart() == "":
		if request {
			s.replyError(sess, el, stanza.ServiceUnavailable, "")
		}
	case to.Localpart() != me.Localpart() && s.iqBlocked(ctx, sess, el, to, request):
	case to.Resourcepart() != "":
		// A session that is gone (or on a node that cannot be reached)
		// is answered for, so the requester does not wait in vain.
		if dst := s.bound(to.Localpart(), to.Resourcepart()); (dst == nil || !s.send(dst, el)) && request {
			s.replyError(sess, el, stanza.ServiceUnavailable, "")
		}
	case to.Equal(me.Bare()):
		if request {
			s.accountIQ(ctx, sess, el, to, true)
		}
	default:
		if request {
			s.accountIQ(ctx, sess, el, to, false)
		}
	}
}

// payload returns the single child of an IQ get/set, or nil.
func payload(iq *stanza.Element) *stanza.Element {
	els := iq.Elements()
	if len(els) != 1 {
		return nil
	}
	return els[0]
}

// serverIQ answers a request to the domain, or with no 'to' (then on
// behalf of the user's account, RFC 6120 §10.3.3).
func (s *Service) serverIQ(ctx context.Context, sess Session, iq *stanza.Element, noTo bool) {
	q := payload(iq)
	if q == nil {
		s.replyError(sess, iq, stanza.BadRequest, "an iq request carries exactly one payload")
		return
	}
	if noTo {
		switch q.Space {
		case NSRoster, NSDiscoInfo, NSDiscoItems:
			s.accountIQ(ctx, sess, iq, sess.JID().Bare(), true)
			return
		}
		if s.accountIQs[iqKey{q.Space, q.Local}] != nil {
			s.accountIQ(ctx, sess, iq, sess.JID().Bare(), true)
			return
		}
	}
	get := iq.IQType() == stanza.GetIQ
	switch {
	case q.Space == NSDiscoInfo && q.Local == "query":
		switch node := q.Attr("node"); {
		case !get:
			s.replyError(sess, iq, stanza.BadRequest, "")
		case node == "":
			s.send(sess, stanza.Result(iq, s.serverInfo()))
		case node == CapsNode+"#"+s.capsVer():
			s.send(sess, stanza.Result(iq, s.serverInfo().SetAttr("node", node)))
		default:
			s.replyError(sess, iq, stanza.ItemNotFound, "")
		}
	case q.Space == NSDiscoItems && q.Local == "query":
		if !get {
			s.replyError(sess, iq, stanza.BadRequest, "")
		} else if q.Attr("node") != "" {
			s.replyError(sess, iq, stanza.ItemNotFound, "")
		} else {
			s.send(sess, stanza.Result(iq, s.serverItems()))
		}
	case q.Space == NSPing && q.Local == "ping":
		if !get {
			s.replyError(sess, iq, stanza.BadRequest, "")
		} else {
			s.send(sess, stanza.Result(iq))
		}
	case q.Space == NSVersion && q.Local == "query" && !noTo:
		if !get {
			s.replyError(sess, iq, stanza.BadRequest, "")
			return
		}
		v := stanza.New(NSVersion, "query").Append(
			stanza.New(NSVersion, "name").SetText("poosms"),
			stanza.New(NSVersion, "version").SetText(s.version),
		)
		s.send(sess, stanza.Result(iq, v))
	default:
		s.extensionIQ(ctx, sess, iq, q)
	}
}

// extensionIQ hands iq to a handler registered with HandleIQ, or answers
// service-unavailable.
func (s *Service) extensionIQ(ctx context.Context, sess Session, iq, q *stanza.Element) {
	s.mu.Lock()
	fn := s.iqs[iqKey{q.Space, q.Local}]
	s.mu.Unlock()
	if fn == nil {
		s.replyError(sess, iq, stanza.ServiceUnavailable, "")
		return
	}
	if r := fn(ctx, sess, iq); r != nil {
		s.send(sess, r)
	}
}

// serverInfo is the server's disco#info: exactly what is implemented.
func (s *Service) serverInfo() *stanza.Element {
	q := stanza.New(NSDiscoInfo, "query")
	q.Append(stanza.New(NSDiscoInfo, "identity").
		SetAttr("category", "server").
		SetAttr("type", "im").
		SetAttr("name", "poosms"))
	for _, f := range s.serverFeatures() {
		q.Append(stanza.New(NSDiscoInfo, "feature").SetAttr("var", f))
	}
	return q
}

// serverFeatures lists the server's features: the built-in ones, then the
// ones added with AddFeature.
func (s *Service) serverFeatures() []string {
	out := []string{NSDiscoInfo, NSDiscoItems, NSPing, NSVersion, FeatureOffline}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.features {
		dup := false
		for _, b := range out {
			dup = dup || b == f
		}
		if !dup {
			out = append(out, f)
		}
	}
	return out
}

func (s *Service) serverItems() *stanza.Element {
	q := stanza.New(NSDiscoItems, "query")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.items {
		q.Append(stanza.New(NSDiscoItems, "item").SetAttr("jid", it.jid).SetAttr("name", it.name))
	}
	return q
}

// accountIQ answers a request to a user's bare JID: the user's own (self)
// or another local user's.
func (s *Service) accountIQ(ctx context.Context, sess Session, iq *stanza.Element, to jid.JID, self bool) {
	q := payload(iq)
	if q == nil {
		s.replyError(sess, iq, stanza.BadRequest, "an iq request carries exactly one payload")
		return
	}
	if q.Space == NSRoster && q.Local == "query" {
		if !self {
			s.replyError(sess, iq, stanza.Forbidden, "a roster belongs to its owner")
			return
		}
		s.rosterIQ(ctx, sess, iq, q)
		return
	}
	if fn := s.accountIQs[iqKey{q.Space, q.Local}]; fn != nil {
		fn(ctx, sess, iq, q, to, self)
		return
	}
	disco := (q.Space == NSDiscoInfo || q.Space == NSDiscoItems) && q.Local == "query"
	if !disco {
		if self {
			s.extensionIQ(ctx, sess, iq, q)
			return
		}
		s.replyError(sess, iq, stanza.ServiceUnavailable, "")
		return
	}
	if !self {
		allowed, err := s.mayDiscover(ctx, to, sess.JID().Bare())
		if err != nil {
			s.log.Error("chat: disco on account", "to", to.String(), "err", err)
			s.replyError(sess, iq, stanza.InternalServerError, "")
			return
		}
		if !allowed {
			s.replyError(sess, iq, stanza.ServiceUnavailable, "")
			return
		}
	}
	if iq.IQType() != stanza.GetIQ {
		s.replyError(sess, iq, stanza.BadRequest, "")
		return
	}
	if q.Attr("node") != "" {
		s.replyError(sess, iq, stanza.ItemNotFound, "")
		return
	}
	if q.Space == NSDiscoItems {
		s.send(sess, stanza.Result(iq, stanza.New(NSDiscoItems, "query")))
		return
	}
	s.send(sess, stanza.Result(iq, s.accountInfo()))
}

// mayDiscover reports whether requester may see account's disco: it must
// be subscribed to account's presence.
func (s *Service) mayDiscover(ctx context.Context, account, requester jid.JID) (bool, error) {
	it, err := s.st.RosterItem(ctx, account.Localpart(), requester.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return isSubscriber(it.Subscription), nil
}
