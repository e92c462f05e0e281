package link

import (
	"context"
	"sync/atomic"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/cluster"
	"poosms.org/poosms/stanza"
)

// remoteSession stands for a session another node serves. Chat routes to
// it like a local session, and rooms this node hosts seat it; what it is
// sent travels to its node.
type remoteSession struct {
	key   string // full JID as the node reported it: the maps' key
	full  jid.JID
	node  cluster.NodeID
	l     *Link
	gen   uint64      // snapshot generation it was last seen in
	rooms atomic.Bool // seated in a room this node hosts
}

func (r *remoteSession) JID() jid.JID { return r.full }

// Send queues el for the session's node. An error (the node is gone, its
// backlog is full, or the shared state is unreachable) makes the caller
// fall back as for a session that ended: a message goes offline.
func (r *remoteSession) Send(el *stanza.Element) error {
	return r.l.send(context.Background(), r.node, addressed(kindDeliver, r.full.String(), el))
}

func (r *remoteSession) inRooms() bool { return r.rooms.Load() }

// remote returns the session full that node serves, creating it if needed.
// A session known from another node is replaced (a newer login there).
func (l *Link) remote(node cluster.NodeID, full string) (*remoteSession, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.remotes[full]; r != nil && r.node == node {
		return r, nil
	}
	j, err := jid.Parse(full)
	if err != nil {
		return nil, err
	}
	r := &remoteSession{key: full, full: j, node: node, l: l, gen: l.gen[node]}
	if old := l.remotes[full]; old != nil {
		l.unlistLocked(old)
	}
	l.remotes[full] = r
	m := l.byNode[node]
	if m == nil {
		m = map[string]*remoteSession{}
		l.byNode[node] = m
	}
	m[full] = r
	return r, nil
}

// unlistLocked takes r out of the link's indexes. l.mu must be held.
func (l *Link) unlistLocked(r *remoteSession) {
	delete(l.byNode[r.node], r.key)
	if l.remotes[r.key] == r {
		delete(l.remotes, r.key)
	}
}

// states mirrors the state of sessions node serves. A full snapshot ends
// with the node's sessions it did not mention being dropped, with
// unavailable presence for local users who saw them.
func (l *Link) states(ctx context.Context, node cluster.NodeID, flags byte, es []entry) {
	l.mu.Lock()
	if flags&snapFirst != 0 {
		l.gen[node]++
	}
	gen := l.gen[node]
	l.mu.Unlock()
	for _, e := range es {
		l.setState(node, gen, e)
	}
	if flags&snapLast == 0 {
		return
	}
	var stale []*remoteSession
	l.mu.Lock()
	for _, r := range l.byNode[node] {
		if r.gen != gen {
			stale = append(stale, r)
			l.unlistLocked(r)
		}
	}
	l.mu.Unlock()
	for _, r := range stale {
		l.drop(ctx, r, true)
	}
}

// setState mirrors one session node serves with its state, as seen in
// snapshot generation gen. A session this node serves with the same full
// JID (and was not told to end because a login elsewhere took it) wins:
// the login here came after node's report. One lock per entry; the JID
// is parsed only for a session new to the mirror.
func (l *Link) setState(node cluster.NodeID, gen uint64, e entry) {
	l.mu.Lock()
	if l.servedHereLocked(e.full) {
		l.mu.Unlock()
		return
	}
	r := l.remotes[e.full]
	if r != nil && r.node == node {
		r.gen = gen
		l.mu.Unlock()
		l.cfg.Chat.SetRemote(r, e.st)
		return
	}
	l.mu.Unlock()
	r, err := l.remote(node, e.full)
	if err != nil {
		return
	}
	l.mu.Lock()
	r.gen = gen
	l.mu.Unlock()
	l.cfg.Chat.SetRemote(r, e.st)
}

// servedHereLocked reports whether a session of this node holds full and
// was not told to end because a login elsewhere took it. l.mu must be
// held.
func (l *Link) servedHereLocked(full string) bool {
	return l.locals[full] != nil && !l.kicked[full]
}

// changes applies a kindStates payload from node in order: its sessions'
// new states, checked against the session directory in one look-up for
// the payload (an entry for a session node does not serve is refused
// alone, the others apply), and their ends.
func (l *Link) changes(ctx context.Context, node cluster.NodeID, us []update) error {
	fulls := make([]string, 0, len(us))
	var recheck []bool
	var ended map[string]bool
	for _, u := range us {
		if u.gone {
			if ended == nil {
				ended = map[string]bool{}
			}
			ended[u.full] = true
			continue
		}
		fulls = append(fulls, u.full)
		if ended != nil {
			if recheck == nil {
				recheck = make([]bool, len(fulls)-1, len(us))
			}
			recheck = append(recheck, ended[u.full])
		} else if recheck != nil {
			recheck = append(recheck, false)
		}
	}
	ok, err := l.claimed(ctx, node, "state", fulls, recheck)
	if err != nil {
		return err
	}
	l.mu.Lock()
	gen := l.gen[node]
	l.mu.Unlock()
	k := 0
	for _, u := range us {
		if u.gone {
			l.gone(ctx, node, u.full)
			continue
		}
		if ok[k] {
			l.setState(node, gen, u.entry)
		}
		k++
	}
	return nil
}

// gone forgets a session node served, which ended.
func (l *Link) gone(ctx context.Context, node cluster.NodeID, full string) {
	l.mu.Lock()
	r := l.byNode[node][full]
	if r != nil {
		l.unlistLocked(r)
	}
	l.mu.Unlock()
	if r != nil {
		l.drop(ctx, r, false)
	}
}

// drop takes a remote session that ended out of chat's mirror and out of
// the rooms this node hosts. announce: its node is gone and cannot tell
// the local users who saw its presence, so chat does.
func (l *Link) drop(ctx context.Context, r *remoteSession, announce bool) {
	l.cfg.Chat.DropRemote(ctx, r, announce)
	if r.inRooms() {
		l.cfg.Rooms.SessionClosed(ctx, r)
	}
}
