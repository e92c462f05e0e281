// Package link joins one node's services to the rest of its cluster: it
// mirrors the sessions other nodes serve into chat (so routing reaches
// them as if they were local), tells other nodes about this node's
// sessions, forwards stanzas for rooms and conferences to the node that
// hosts them, and cleans up when a node dies or the shared state comes
// and goes. It sees the cluster only through cluster.Cluster, so the same
// code serves a single node (cluster.Local, with no other nodes) and a
// Redis-backed cluster.
package link

import (
	"context"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/cluster"
	"poosms.org/poosms/stanza"
)

// Chat is what the link does to this node's chat service
// (*chat.Service) on behalf of the other nodes. The other way, chat
// tells the link about this node's sessions through chat.Publisher,
// which Link implements: the link is made from chat, then set as its
// publisher.
type Chat interface {
	// The mirror of the sessions other nodes serve, and this node's
	// own sessions for a snapshot.
	SetRemote(sess chat.Session, st chat.ResourceState)
	DropRemote(ctx context.Context, sess chat.Session, announce bool)
	LocalStates(fn func(full jid.JID, st chat.ResourceState))
	// Delivery to this node's sessions of what other nodes route here,
	// and offline storage of what no session took.
	SendTo(sess chat.Session, el *stanza.Element) bool
	Undeliverable(ctx context.Context, el *stanza.Element) (queued bool)
	DrainOffline(ctx context.Context)
	DrainUser(ctx context.Context, bare jid.JID)
	// A blocklist another node changed.
	ReloadBlocklist(ctx context.Context, local string)
}

var _ chat.Publisher = (*Link)(nil)

// stopper is a session this node serves that can be ended (as
// *signaling.Session can): a login on another node that takes its full
// JID ends it with a conflict.
type stopper interface {
	Stop(condition, text string)
}

// Rooms is the room and conference service of this node: what runs the
// rooms this node hosts.
type Rooms interface {
	HandleStanza(ctx context.Context, sess chat.Session, el *stanza.Element)
	SessionClosed(ctx context.Context, sess chat.Session)
	// Adopt readies a room this node starts hosting (another node may
	// have hosted and changed it); Moved stops running one another node
	// hosts now, telling its occupants to rejoin.
	Adopt(ctx context.Context, room jid.JID)
	Moved(ctx context.Context, room jid.JID)
	// HostLost tells sess, a session of this node, that it is out of
	// room, where it was nick, because the node hosting the room is gone;
	// joining again places the room on a live node.
	HostLost(ctx context.Context, sess chat.Session, room jid.JID, nick string)
	// HandleRemote runs a stanza a user of another server sent to a
	// room or conference (its from checked by federation).
	HandleRemote(ctx context.Context, el *stanza.Element)
	// InUse reports whether anyone is in the room or its conference
	// here: a room in use keeps its placement however long it is quiet.
	InUse(ctx context.Context, room jid.JID) bool
}

// Config configures a Link.
type Config struct {
	// Chat and Rooms are this node's services.
	Chat  Chat
	Rooms Rooms
	// AccountsChanged, when set, is told that another node deleted an
	// account: the account journal has news (see chat/accounts).
	AccountsChanged func()
	// Hosted reports whether a domain is served by this server (the
	// domain and its services): a node may forward stanzas from users
	// of other servers, never from addresses of these. Nil: forwarded
	// stanzas from users of other servers are refused.
	Hosted func(domain string) bool
	// SendTimeout bounds one send to another node (default 5s).
	SendTimeout time.Duration
	// RoomIdle is how long a room this node hosts keeps its placement
	// after its last stanza once nobody is in it (default
	// DefaultRoomIdle); then it is given back (see idle.go).
	RoomIdle time.Duration
	Logger   *slog.Logger
}

// Link is one node's side of the cluster. Create it with New from this
// node's chat service and make it that service's publisher
// (chat.Service.SetPublisher) before any session binds: chat tells it of
// the sessions this node serves, as they bind and close. Pass its
// methods as the cluster's callbacks, then Attach the cluster.
//
// The cluster tells Handle which node sent a payload, and only passes on
// payloads signed with the cluster secret. Beyond that, a node is
// believed only about the sessions it serves: a payload that announces a
// session's state, forwards a stanza from a session to a room, or ends a
// session for a conflict is acted on only for full JIDs the session
// directory says the sending node serves (see claimed). Anything else is
// dropped and reported to the cluster's Reject.
type Link struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	cl      cluster.Cluster
	rej     rejecter
	self    cluster.NodeID
	peers   map[cluster.NodeID]struct{}
	remotes map[string]*remoteSession                    // full JID → session another node serves
	byNode  map[cluster.NodeID]map[string]*remoteSession // node → its sessions known here
	gen     map[cluster.NodeID]uint64                    // snapshot generation being received
	joined  map[string]map[string]roomSeat               // local full JID → room → seat on another node
	hosted  map[string]time.Time                         // rooms this node hosts (adopted) → last used
	busy    map[string]int                               // room → stanzas for it running now
	// releasing holds the rooms whose placement is being given back; the
	// channel closes when that is done.
	releasing map[string]chan struct{}
	kicked    map[string]bool // local sessions told to end: a login elsewhere took their JID
	// locals are the sessions this node serves (full JID → session),
	// from Bound to Closed.
	locals map[string]chat.Session

	// bindLocks serialise Bound and Closed for one full JID, so a
	// session closing while a new login takes its JID cannot unbind the
	// new one.
	bindLocks [64]sync.Mutex

	// out queues this node's announcements for the other nodes (see
	// outbox.go).
	out outbox

	wg     sync.WaitGroup // HealthChanged's catch-up work, releaseIdle and the outbox's flusher
	stop   context.Context
	cancel context.CancelFunc
}

// rejecter counts and logs what the link refuses to believe; the Redis
// cluster implements it (cluster.Rejects), so its refusals share the
// poosms_cluster_rejected_total counter.
type rejecter interface {
	Reject(reason string, attrs ...any)
}

// roomSeat is a local session's place in a room another node hosts.
type roomSeat struct {
	nick string
	host cluster.NodeID
}

// New returns a link not yet attached to a cluster.
func New(cfg Config) *Link {
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 5 * time.Second
	}
	if cfg.RoomIdle <= 0 {
		cfg.RoomIdle = DefaultRoomIdle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Link{
		cfg:       cfg,
		log:       cfg.Logger,
		rej:       cluster.NewRejects(cfg.Logger, nil),
		peers:     map[cluster.NodeID]struct{}{},
		remotes:   map[string]*remoteSession{},
		byNode:    map[cluster.NodeID]map[string]*remoteSession{},
		gen:       map[cluster.NodeID]uint64{},
		joined:    map[string]map[string]roomSeat{},
		hosted:    map[string]time.Time{},
		busy:      map[string]int{},
		releasing: map[string]chan struct{}{},
		kicked:    map[string]bool{},
		locals:    map[string]chat.Session{},
	}
	l.out.wake = make(chan struct{}, 1)
	l.stop, l.cancel = context.WithCancel(context.Background())
	return l
}

// Close stops the catch-up work HealthChanged started, the release of
// idle rooms and the outbox's flusher (which sends what is queued), and
// waits for them. Announcements after Close go out at once.
func (l *Link) Close() {
	l.cancel()
	l.wg.Wait()
}

// Attach gives the link its started cluster: it learns the other nodes
// and asks each for the state of its sessions, and starts giving back
// the placements of idle rooms. Call it once.
func (l *Link) Attach(ctx context.Context, cl cluster.Cluster) {
	l.mu.Lock()
	l.cl, l.self = cl, cl.Self()
	if rj, ok := cl.(rejecter); ok {
		l.rej = rj
	}
	l.mu.Unlock()
	if l.stop.Err() == nil {
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			l.releaseIdle(l.stop)
		}()
		l.out.mu.Lock()
		l.out.running = true
		l.out.mu.Unlock()
		go func() {
			defer l.wg.Done()
			l.flusher(l.stop)
		}()
	}
	l.greet(ctx)
}

// reject reports a payload or part of one that the link refused.
func (l *Link) reject(reason string, attrs ...any) {
	l.mu.Lock()
	rj := l.rej
	l.mu.Unlock()
	rj.Reject(reason, attrs...)
}

// cluster returns the attached cluster, or nil before Attach.
func (l *Link) cluster() cluster.Cluster {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cl
}

// greet refreshes the list of other nodes, sends each this node's
// sessions and asks for theirs.
func (l *Link) greet(ctx context.Context) {
	cl := l.cluster()
	if cl == nil {
		return
	}
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		l.log.Warn("cluster: list nodes", "err", err)
		return
	}
	for _, n := range nodes {
		if n.ID == cl.Self() {
			continue
		}
		l.addPeer(n.ID)
		l.sendSnapshot(ctx, n.ID)
		l.send(ctx, n.ID, []byte{kindHello})
	}
}

func (l *Link) addPeer(id cluster.NodeID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id != l.self {
		l.peers[id] = struct{}{}
	}
}

func (l *Link) peerList() []cluster.NodeID {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]cluster.NodeID, 0, len(l.peers))
	for id := range l.peers {
		out = append(out, id)
	}
	return out
}

func (l *Link) hasPeers() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.peers) > 0
}

// send queues payload for node to, after the announcements queued
// before it (see outbox.go).
func (l *Link) send(ctx context.Context, to cluster.NodeID, payload []byte) error {
	l.flush(ctx)
	return l.sendNow(ctx, to, payload)
}

// sendNow queues payload for node to, ahead of any announcement still in
// the outbox.
func (l *Link) sendNow(ctx context.Context, to cluster.NodeID, payload []byte) error {
	cl := l.cluster()
	if cl == nil {
		return cluster.ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.SendTimeout)
	defer cancel()
	err := cl.Send(ctx, to, payload)
	if err != nil {
		l.log.Debug("cluster: send", "to", string(to), "err", err)
	}
	return err
}

// broadcast queues payload for every other node, after the
// announcements queued before it.
func (l *Link) broadcast(ctx context.Context, payload []byte) {
	l.flush(ctx)
	for _, id := range l.peerList() {
		l.sendNow(ctx, id, payload)
	}
}

// SessionChanged implements chat.Publisher: it tells the other nodes
// the new state of one of this node's sessions, in a batch with other
// announcements when the link is busy (see outbox.go).
func (l *Link) SessionChanged(full jid.JID, st chat.ResourceState) {
	if l.hasPeers() {
		f := full.String()
		l.announce(stateChange(f, st))
	}
}

// SessionEnded implements chat.Publisher: it tells the other nodes that
// one of this node's sessions ended, as SessionChanged does.
func (l *Link) SessionEnded(full jid.JID) {
	if l.hasPeers() {
		l.announce(goneChange(full.String()))
	}
}

// BlocklistChanged implements chat.Publisher: the other nodes read the
// user's blocklist again.
func (l *Link) BlocklistChanged(local string) {
	if l.hasPeers() {
		l.broadcast(context.Background(), addressed(kindBlocklist, local, nil))
	}
}

// AccountDeleted tells the other nodes that this one deleted an account,
// for them to read the account journal now.
func (l *Link) AccountDeleted() {
	if l.hasPeers() {
		l.broadcast(context.Background(), []byte{kindAccounts})
	}
}

// snapshotChunk bounds the sessions in one kindState payload.
const snapshotChunk = maxEntries

// sendSnapshot sends node to the state of every session this node
// serves, in order with the announcements (see exclusive).
func (l *Link) sendSnapshot(ctx context.Context, to cluster.NodeID) {
	l.exclusive(ctx, func() {
		var all []entry
		l.cfg.Chat.LocalStates(func(full jid.JID, st chat.ResourceState) {
			all = append(all, entry{full: full.String(), st: st})
		})
		flags := snapFirst
		for {
			n := min(len(all), snapshotChunk)
			if n == len(all) {
				flags |= snapLast
			}
			if err := l.sendNow(ctx, to, states(flags, all[:n])); err != nil {
				return
			}
			all = all[n:]
			if len(all) == 0 {
				return
			}
			flags = 0
		}
	})
}

// Bound implements chat.Publisher: it records a session binding here,
// which replaces any earlier one with its full JID, and takes that JID
// in the cluster's directory; a session with the same full JID on
// another node is told to end.
func (l *Link) Bound(ctx context.Context, sess chat.Session) {
	full := sess.JID()
	lk := l.bindLock(full)
	lk.Lock()
	defer lk.Unlock()
	l.mu.Lock()
	l.locals[full.String()] = sess
	l.mu.Unlock()
	cl := l.cluster()
	if cl == nil {
		return
	}
	l.mu.Lock()
	delete(l.kicked, full.String())
	l.mu.Unlock()
	prev, err := cl.Bind(ctx, full, cl.Self())
	if err != nil {
		l.log.Debug("cluster: bind", "jid", full.String(), "err", err)
		return
	}
	if prev != "" && prev != cl.Self() {
		l.send(ctx, prev, addressed(kindKick, full.String(), nil))
	}
}

// Closed implements chat.Publisher: it forgets a local session that
// ended and gives its full JID back in the directory. If a new login
// here has taken its full JID meanwhile (Bound), the directory entry is
// the new session's and stays.
func (l *Link) Closed(ctx context.Context, sess chat.Session) {
	full := sess.JID()
	lk := l.bindLock(full)
	lk.Lock()
	defer lk.Unlock()
	l.mu.Lock()
	if cur := l.locals[full.String()]; cur != nil && cur != sess {
		l.mu.Unlock()
		return
	}
	delete(l.locals, full.String())
	delete(l.joined, full.String())
	delete(l.kicked, full.String())
	l.mu.Unlock()
	if cl := l.cluster(); cl != nil {
		if err := cl.Unbind(ctx, full, cl.Self()); err != nil {
			l.log.Debug("cluster: unbind", "jid", full.String(), "err", err)
		}
	}
}

// local returns the session this node serves with the full JID full, or
// nil.
func (l *Link) local(full jid.JID) chat.Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.locals[full.String()]
}

func (l *Link) bindLock(full jid.JID) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(full.String()))
	return &l.bindLocks[h.Sum32()%uint32(len(l.bindLocks))]
}

// Handle is the cluster's Handler: it takes what another node sent.
func (l *Link) Handle(ctx context.Context, from cluster.NodeID, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	l.addPeer(from)
	d := &decoder{b: payload[1:]}
	switch payload[0] {
	case kindDeliver:
		full, el, err := decodeAddressed(d, true)
		if err != nil {
			l.log.Warn("cluster: unreadable payload dropped", "from", string(from), "err", err)
			return nil
		}
		l.deliver(ctx, full, el)
	case kindRoom:
		full, el, err := decodeAddressed(d, true)
		if err != nil {
			l.log.Warn("cluster: unreadable payload dropped", "from", string(from), "err", err)
			return nil
		}
		if f := el.From(); f != "" && f != full {
			l.reject(cluster.RejectNotOwner, "from", string(from), "kind", "room", "jid", full, "stanza_from", f)
			return nil
		}
		ok, err := l.claimed(ctx, from, "room", []string{full}, nil)
		if err != nil {
			return err
		}
		if ok[0] {
			l.roomStanza(ctx, from, full, el)
		}
	case kindFedRoom:
		full, el, err := decodeAddressed(d, true)
		if err != nil {
			l.log.Warn("cluster: unreadable payload dropped", "from", string(from), "err", err)
			return nil
		}
		l.fedRoomStanza(ctx, from, full, el)
	case kindState:
		flags, es, err := decodeStates(d)
		if err != nil {
			l.log.Warn("cluster: unreadable payload dropped", "from", string(from), "err", err)
			return nil
		}
		fulls := make([]string, len(es))
		for i, e := range es {
			fulls[i] = e.full
		}
		ok, err := l.claimed(ctx, from, "state", fulls, nil)
		if err != nil {
			return err
		}
		kept := es[:0]
		for i, e := range es {
			if ok[i] {
				kept = append(kept, e)
			}
		}
		l.states(ctx, from, flags, kept)
	case kindStates:
		us, err := decodeBatch(d)
		if err != nil {
			l.log.Warn("cluster: unreadable payload dropped", "from", string(from), "err", err)
			return nil
		}
		return l.changes(ctx, from, us)
	case kindGone:
		full, _, err := decodeAddressed(d, false)
		if err == nil {
			l.gone(ctx, from, full)
		}
	case kindKick:
		full, _, err := decodeAddressed(d, false)
		if err != nil {
			return nil
		}
		j, err := jid.Parse(full)
		if err != nil {
			return nil
		}
		// Only the node that now serves the JID ends the session here.
		owner, err := l.owners(ctx, []string{full})
		if err != nil {
			return err
		}
		if owner[0] != from {
			l.reject(cluster.RejectNotOwner, "from", string(from), "kind", "kick", "jid", full, "served_by", string(owner[0]))
			return nil
		}
		l.kick(j)
	case kindHello:
		l.sendSnapshot(ctx, from)
	case kindBlocklist:
		local, _, err := decodeAddressed(d, false)
		if err == nil {
			l.cfg.Chat.ReloadBlocklist(ctx, local)
		}
	case kindAccounts:
		if l.cfg.AccountsChanged != nil {
			l.cfg.AccountsChanged()
		}
	case kindDrain:
		bare, _, err := decodeAddressed(d, false)
		if err != nil {
			return nil
		}
		if j, err := jid.Parse(bare); err == nil {
			l.cfg.Chat.DrainUser(ctx, j)
		}
	default:
		l.log.Warn("cluster: unknown payload dropped", "from", string(from), "kind", payload[0])
	}
	return nil
}

// deliver hands a stanza another node routed to a local session; a
// session that ended meanwhile leaves it to chat's offline storage.
func (l *Link) deliver(ctx context.Context, full string, el *stanza.Element) {
	j, err := jid.Parse(full)
	if err == nil {
		if sess := l.local(j); sess != nil {
			if l.cfg.Chat.SendTo(sess, el) {
				return
			}
		}
	}
	l.offline(ctx, el)
}

// offline stores a message no session took and tells the nodes where its
// recipient may be online to deliver it from there.
func (l *Link) offline(ctx context.Context, el *stanza.Element) {
	if !l.cfg.Chat.Undeliverable(ctx, el) {
		return
	}
	if to, err := el.ToJID(); err == nil {
		l.broadcast(ctx, addressed(kindDrain, to.Bare().String(), nil))
	}
}

// kick ends the local session bound to full: a newer login elsewhere
// took its full JID.
func (l *Link) kick(full jid.JID) {
	if sess := l.local(full); sess != nil {
		l.mu.Lock()
		l.kicked[full.String()] = true
		l.mu.Unlock()
		l.log.Info("cluster: session replaced by a login on another node", "jid", full.String())
		if st, ok := sess.(stopper); ok {
			st.Stop("conflict", "replaced by a new connection")
		}
	}
}

// SessionLost is the cluster's SessionLost: another node took full while
// this one could not reach Redis.
func (l *Link) SessionLost(ctx context.Context, full jid.JID) { l.kick(full) }

// Undeliverable is the cluster's Undeliverable: a payload a dead node
// never took. Messages among them go to offline storage.
func (l *Link) Undeliverable(ctx context.Context, to, from cluster.NodeID, payload []byte) {
	if len(payload) == 0 || payload[0] != kindDeliver {
		return
	}
	_, el, err := decodeAddressed(&decoder{b: payload[1:]}, true)
	if err != nil {
		l.log.Warn("cluster: unreadable payload dropped", "to", string(to), "err", err)
		return
	}
	l.offline(ctx, el)
}

// NodeJoined is the cluster's NodeJoined: the new node learns this one's
// sessions.
func (l *Link) NodeJoined(ctx context.Context, id cluster.NodeID) {
	l.addPeer(id)
	l.sendSnapshot(ctx, id)
}

// NodeGone is the cluster's NodeGone: the sessions that node served are
// gone (local users who saw them get unavailable presence) and so are the
// rooms it hosted (local occupants are told to join again).
func (l *Link) NodeGone(ctx context.Context, id cluster.NodeID) {
	l.mu.Lock()
	delete(l.peers, id)
	var sessions []*remoteSession
	for _, r := range l.byNode[id] {
		sessions = append(sessions, r)
		l.unlistLocked(r)
	}
	delete(l.byNode, id)
	delete(l.gen, id)
	l.mu.Unlock()
	for _, r := range sessions {
		l.drop(ctx, r, true)
	}
	l.roomsGone(ctx, id)
}

// HealthChanged is the cluster's HealthChanged. When the shared state is
// back, the nodes exchange their sessions again and messages stored
// offline meanwhile reach the local users who are online.
func (l *Link) HealthChanged(healthy bool) {
	if !healthy {
		return
	}
	if l.stop.Err() != nil {
		return
	}
	l.wg.Add(1)
	go func() {
		// Not on the caller's goroutine: the cluster reports health from
		// inside its own Redis work.
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(l.stop, time.Minute)
		defer cancel()
		l.greet(ctx)
		l.cfg.Chat.DrainOffline(ctx)
	}()
}
