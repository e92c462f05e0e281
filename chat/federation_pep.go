package chat

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Personal eventing (XEP-0163) with contacts of other servers. A contact
// elsewhere learns of a local user's PEP items the way XEP-0163 §4.3
// "notify via presence" says: the contact's clients announce entity
// capabilities (XEP-0115) in the presence they send the user; the server
// learns what those capabilities +notify (from its cache of verified
// hashes, or by asking the client with disco#info through federation),
// and sends the client the user's items it may read: the last ones at
// once, new ones as they are published. Events the contacts' servers
// send the local users arrive as any message does.

// Bounds of what is remembered of remote contacts' capabilities.
const (
	maxRemoteNotifyPerUser = 1000
	maxRemoteNotify        = 100000
)

// remoteNotify remembers, per local user, the clients of contacts on
// other servers that sent the user presence with capabilities, and which
// nodes they +notify once known. It is forgotten when the client goes
// unavailable, and for a whole domain when the streams with it are lost
// (its presence is probed again then, which brings the capabilities back).
type remoteNotify struct {
	// mu guards the fields below; it is never held while sending.
	mu      sync.Mutex
	users   map[string]map[string]*remoteClient // local user → remote full JID → client
	count   int
	pending map[string]remoteQuery // iq id → query
	seq     uint64
}

// remoteClient is what is known of one remote client.
type remoteClient struct {
	hash, ver string
	notify    map[string]bool // nil until its features are known
}

// remoteQuery is a disco#info question sent to a remote client.
type remoteQuery struct {
	full, hash, ver string
}

func newRemoteNotify() *remoteNotify {
	return &remoteNotify{users: map[string]map[string]*remoteClient{}, pending: map[string]remoteQuery{}}
}

// seen records the capabilities of from, a remote client whose presence
// local received. It returns the client's known +notify features (nil:
// unknown yet) and whether its capabilities changed.
func (n *remoteNotify) seen(local string, from jid.JID, hash, ver string) (notify map[string]bool, changed bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.users[local]
	c := m[from.String()]
	if c == nil {
		if len(m) >= maxRemoteNotifyPerUser || n.count >= maxRemoteNotify {
			return nil, false
		}
		if m == nil {
			m = map[string]*remoteClient{}
			n.users[local] = m
		}
		c = &remoteClient{}
		m[from.String()] = c
		n.count++
	}
	if c.hash == hash && c.ver == ver {
		return c.notify, false
	}
	c.hash, c.ver, c.notify = hash, ver, nil
	return nil, true
}

// learned sets the features of every remembered client announcing
// hash and ver, and returns the (local user, client) pairs it set.
func (n *remoteNotify) learned(full, hash, ver string, features []string) (users []string) {
	notify := map[string]bool{}
	for _, f := range features {
		if strings.HasSuffix(f, "+notify") {
			notify[f] = true
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for local, m := range n.users {
		if c := m[full]; c != nil && c.hash == hash && c.ver == ver {
			c.notify = notify
			users = append(users, local)
		}
	}
	return users
}

// gone forgets what local knew of from (a bare JID: every client of it).
func (n *remoteNotify) gone(local string, from jid.JID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.users[local]
	for full := range m {
		if full == from.String() || from.Resourcepart() == "" && strings.HasPrefix(full, from.String()+"/") {
			delete(m, full)
			n.count--
		}
	}
	if len(m) == 0 {
		delete(n.users, local)
	}
}

// lost forgets every client of domain.
func (n *remoteNotify) lost(domain string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for local, m := range n.users {
		for full := range m {
			if inDomain(full, domain) {
				delete(m, full)
				n.count--
			}
		}
		if len(m) == 0 {
			delete(n.users, local)
		}
	}
	for id, q := range n.pending {
		if inDomain(q.full, domain) {
			delete(n.pending, id)
		}
	}
}

// interested returns the clients of contact (a bare JID) that local knows
// to +notify want.
func (n *remoteNotify) interested(local string, contact jid.JID, want string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	prefix := contact.Bare().String() + "/"
	for full, c := range n.users[local] {
		if c.notify[want] && strings.HasPrefix(full, prefix) {
			out = append(out, full)
		}
	}
	return out
}

// ask records a disco#info question and returns its iq id.
func (n *remoteNotify) ask(q remoteQuery) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.pending) >= maxCapsPending {
		n.pending = map[string]remoteQuery{}
	}
	n.seq++
	id := "rcaps" + strconv.FormatUint(n.seq, 10)
	n.pending[id] = q
	return id
}

// answered removes and returns the question with this id if from was
// asked it.
func (n *remoteNotify) answered(id string, from jid.JID) (remoteQuery, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	q, ok := n.pending[id]
	if !ok || q.full != from.String() {
		return remoteQuery{}, false
	}
	delete(n.pending, id)
	return q, true
}

// remoteCaps handles the capabilities in an available presence from a
// remote client to local: when they are new and known, the client gets
// local's last items; when unknown, the client is asked.
func (s *Service) remoteCaps(ctx context.Context, local string, from jid.JID, el *stanza.Element) {
	if s.pep == nil {
		return
	}
	c := el.Child(NSCaps, "c")
	if c == nil || c.Attr("hash") == "" || c.Attr("ver") == "" || from.Resourcepart() == "" {
		return
	}
	hash, ver := c.Attr("hash"), c.Attr("ver")
	if _, changed := s.remoteNotify.seen(local, from, hash, ver); !changed {
		return
	}
	// Only the user's contacts are asked (a room's occupants, say, send
	// presence too); which of them hear of the items is decided when
	// they are sent, by the roster then.
	if _, err := s.st.RosterItem(ctx, local, from.Bare().String()); err != nil {
		s.remoteNotify.gone(local, from)
		return
	}
	if f, ok := s.caps.lookup(hash, ver); ok {
		s.remoteNotify.learned(from.String(), hash, ver, f)
		s.remoteLastItems(ctx, local, from)
		return
	}
	id := s.remoteNotify.ask(remoteQuery{full: from.String(), hash: hash, ver: ver})
	q := stanza.NewIQ(stanza.GetIQ).SetAttr("id", id).
		SetAttr("from", s.domain).SetAttr("to", from.String()).
		Append(stanza.New(NSDiscoInfo, "query").SetAttr("node", c.Attr("node")+"#"+ver))
	s.sendRemote(q)
}

// remoteCapsAnswer takes a remote client's answer to the server's
// disco#info question (see capsAnswer).
func (s *Service) remoteCapsAnswer(ctx context.Context, from jid.JID, el *stanza.Element) {
	q, ok := s.remoteNotify.answered(el.ID(), from)
	if !ok {
		return
	}
	features, ok := s.capsAnswer(el, q.hash, q.ver)
	if !ok {
		return
	}
	for _, local := range s.remoteNotify.learned(q.full, q.hash, q.ver, features) {
		s.remoteLastItems(ctx, local, from)
	}
}

// remoteLastItems sends the remote client full, of a contact subscribed
// to local's presence, the last items of local's nodes that it +notifies
// and may read.
func (s *Service) remoteLastItems(ctx context.Context, local string, full jid.JID) {
	var features map[string]bool
	s.remoteNotify.mu.Lock()
	if c := s.remoteNotify.users[local][full.String()]; c != nil {
		features = c.notify
	}
	s.remoteNotify.mu.Unlock()
	if len(features) == 0 {
		return
	}
	if it, err := s.st.RosterItem(ctx, local, full.Bare().String()); err != nil || !isSubscriber(it.Subscription) {
		return
	}
	s.sendLastItemsOf(ctx, &remoteEntity{jid: full, s: s}, features, []string{local})
}

// remoteLastItemsOnApproval sends the clients of contact (of another
// server, just approved to see owner's presence) owner's last items.
func (s *Service) remoteLastItemsOnApproval(ctx context.Context, contact jid.JID, owner string) {
	var clients []string
	prefix := contact.Bare().String() + "/"
	s.remoteNotify.mu.Lock()
	for full := range s.remoteNotify.users[owner] {
		if strings.HasPrefix(full, prefix) {
			clients = append(clients, full)
		}
	}
	s.remoteNotify.mu.Unlock()
	for _, full := range clients {
		if j, err := jid.Parse(full); err == nil {
			s.remoteLastItems(ctx, owner, j)
		}
	}
}

// remoteNotifyTargets are the remote clients of owner's contacts that
// hear of node: those of contact (subscribed to owner's presence) that
// +notify it.
func (s *Service) remoteNotifyTargets(owner string, contact jid.JID, node string) []Session {
	var out []Session
	for _, full := range s.remoteNotify.interested(owner, contact, node+"+notify") {
		if j, err := jid.Parse(full); err == nil {
			out = append(out, &remoteEntity{jid: j, s: s})
		}
	}
	return out
}
