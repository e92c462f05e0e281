package chat

import (
	"context"
	"slices"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// AccountRemoved tells the sessions this node serves that the local
// account gone was deleted for good. The store has already dropped the
// roster items others held for it; contacts lists them as they were. For
// each contact with sessions here, as RFC 6121 has a server do when a
// contact cancels every subscription (§3.2.3, §3.3.3) and removes the
// item (§2.5.3):
//
//   - who saw gone's presence gets unavailable presence from each of its
//     sessions known here and from its bare JID (every resource is gone),
//     and 'unsubscribed';
//   - who had asked to see it gets 'unsubscribed' (the request is
//     refused);
//   - who shared presence with it, or had its request pending, gets
//     'unsubscribe' (its subscription and request are withdrawn);
//   - every session that asked for the roster gets a roster push
//     removing the item.
//
// Contacts with no session here are not touched: their own node tells
// them, and those offline find the item gone at their next login.
// Directed presence sent to gone's resources is forgotten, so a new
// account with the same name is not told of it later.
func (s *Service) AccountRemoved(ctx context.Context, gone jid.JID, contacts []store.PurgedContact) {
	bare := gone.Bare()
	if !s.isLocal(bare) || bare.Localpart() == "" {
		return
	}
	s.forgetDirected(bare)
	// Unavailable from gone's available sessions known here, then from
	// its bare JID.
	var unavailableFrom []string
	for _, t := range s.available(bare.Localpart()) {
		unavailableFrom = append(unavailableFrom, t.sess.JID().String())
	}
	unavailableFrom = append(unavailableFrom, bare.String())
	for _, c := range contacts {
		owner, err := jid.New(c.Owner, s.domain, "")
		if err != nil {
			continue
		}
		available, interested := s.localSessions(c.Owner)
		var out []*stanza.Element
		if isSubscribed(c.Subscription) {
			for _, from := range unavailableFrom {
				out = append(out, stanza.New(stanza.NSClient, "presence").
					SetType(stanza.UnavailablePresence).SetAttr("from", from).SetAttr("to", owner.String()))
			}
		}
		if isSubscribed(c.Subscription) || c.AskOut {
			out = append(out, subscriptionPresence("unsubscribed", bare, owner))
		}
		if isSubscriber(c.Subscription) || c.PendingIn {
			out = append(out, subscriptionPresence("unsubscribe", bare, owner))
		}
		for _, sess := range available {
			for _, el := range out {
				s.send(sess, el)
			}
		}
		if c.Listed {
			item := store.RosterItem{Contact: bare.String()}
			for _, sess := range interested {
				s.send(sess, s.rosterPush(sess, item, true))
			}
		}
	}
}

// localSessions returns the available sessions of local that this node
// serves, and those that asked for the roster.
func (s *Service) localSessions(local string) (available, interested []Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.users[local] {
		if r.remote {
			continue
		}
		if r.Available {
			available = append(available, r.sess)
		}
		if r.Interested {
			interested = append(interested, r.sess)
		}
	}
	return available, interested
}

// forgetDirected removes bare's resources from the directed presence
// every local session remembers.
func (s *Service) forgetDirected(bare jid.JID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.users {
		for _, r := range m {
			r.directed = slices.DeleteFunc(r.directed, func(d string) bool {
				j, err := jid.Parse(d)
				return err == nil && j.Bare().Equal(bare)
			})
		}
	}
}
