package link

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/cluster"
	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
)

// hub is an in-memory cluster of nodes: Send hands the payload to the
// target's handler on a goroutine of the hub's own, in order per target.
type hub struct {
	mu      sync.Mutex
	nodes   map[cluster.NodeID]*fakeNode
	placed  map[string]cluster.NodeID
	bound   map[string]cluster.NodeID // the session directory
	sent    map[byte]int              // payloads sent, by kind
	lookups int                       // Owners calls
	trace   []string                  // "from>to kind" of every payload sent, in order
}

type fakeNode struct {
	h     *hub
	id    cluster.NodeID
	link  *Link
	queue chan func()
	dead  bool
	// qmu guards queue against sends after it closed (a link's Close
	// sends what its outbox holds, maybe after another node stopped).
	qmu    sync.RWMutex
	closed bool

	rejMu    sync.Mutex
	rejected []string // "reason kind jid" of what this node refused
}

// Reject records what the node's link refused.
func (n *fakeNode) Reject(reason string, attrs ...any) {
	kv := map[string]string{}
	for i := 0; i+1 < len(attrs); i += 2 {
		kv[fmt.Sprint(attrs[i])] = fmt.Sprint(attrs[i+1])
	}
	n.rejMu.Lock()
	defer n.rejMu.Unlock()
	n.rejected = append(n.rejected, reason+" "+kv["kind"]+" "+kv["jid"])
}

func (n *fakeNode) refused() []string {
	n.rejMu.Lock()
	defer n.rejMu.Unlock()
	return slices.Clone(n.rejected)
}

func newHub() *hub {
	return &hub{nodes: map[cluster.NodeID]*fakeNode{}, placed: map[string]cluster.NodeID{}, bound: map[string]cluster.NodeID{},
		sent: map[byte]int{}}
}

func (h *hub) add(t *testing.T, id cluster.NodeID, l *Link) *fakeNode {
	n := &fakeNode{h: h, id: id, link: l, queue: make(chan func(), 1024)}
	h.mu.Lock()
	h.nodes[id] = n
	h.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range n.queue {
			f()
		}
	}()
	t.Cleanup(func() {
		n.qmu.Lock()
		n.closed = true
		close(n.queue)
		n.qmu.Unlock()
		<-done
	})
	return n
}

// settle waits until every node has sent what its outbox holds and
// handled what was queued for it.
func (h *hub) settle(t *testing.T) {
	t.Helper()
	for range 3 { // handlers may send on
		h.mu.Lock()
		var ns []*fakeNode
		for _, n := range h.nodes {
			ns = append(ns, n)
		}
		h.mu.Unlock()
		for _, n := range ns {
			n.link.flush(context.Background())
		}
		for _, n := range ns {
			done := make(chan struct{})
			n.queue <- func() { close(done) }
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("node queue stuck")
			}
		}
	}
}

func (n *fakeNode) Self() cluster.NodeID { return n.id }
func (n *fakeNode) Healthy() bool        { return true }
func (n *fakeNode) Start(context.Context) error {
	return nil
}
func (n *fakeNode) Stop() {}
func (n *fakeNode) Nodes(context.Context) ([]cluster.Node, error) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	var out []cluster.Node
	for id, m := range n.h.nodes {
		if !m.dead {
			out = append(out, cluster.Node{ID: id})
		}
	}
	return out, nil
}
func (n *fakeNode) Node(ctx context.Context, id cluster.NodeID) (cluster.Node, error) {
	return cluster.Node{ID: id}, nil
}
func (n *fakeNode) Bind(ctx context.Context, full jid.JID, node cluster.NodeID) (cluster.NodeID, error) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	prev := n.h.bound[full.String()]
	n.h.bound[full.String()] = node
	return prev, nil
}
func (n *fakeNode) Unbind(ctx context.Context, full jid.JID, node cluster.NodeID) error {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	if n.h.bound[full.String()] == node {
		delete(n.h.bound, full.String())
	}
	return nil
}
func (n *fakeNode) Resources(context.Context, jid.JID) ([]cluster.Entry, error) {
	return nil, nil
}
func (n *fakeNode) Owners(ctx context.Context, fulls []jid.JID) ([]cluster.NodeID, error) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	n.h.lookups++
	out := make([]cluster.NodeID, len(fulls))
	for i, f := range fulls {
		out[i] = n.h.bound[f.String()]
	}
	return out, nil
}
func (n *fakeNode) Send(ctx context.Context, to cluster.NodeID, payload []byte) error {
	n.h.mu.Lock()
	dst := n.h.nodes[to]
	if len(payload) > 0 {
		n.h.sent[payload[0]]++
		n.h.trace = append(n.h.trace, fmt.Sprintf("%s>%s %d", n.id, to, payload[0]))
	}
	n.h.mu.Unlock()
	if dst == nil || dst.dead {
		return cluster.ErrNodeGone
	}
	p := slices.Clone(payload)
	from := n.id
	dst.qmu.RLock()
	defer dst.qmu.RUnlock()
	if dst.closed {
		return cluster.ErrNodeGone
	}
	dst.queue <- func() { dst.link.Handle(context.Background(), from, p) }
	return nil
}
func (n *fakeNode) Place(ctx context.Context, key string) (cluster.NodeID, bool, error) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	if h, ok := n.h.placed[key]; ok && !n.h.nodes[h].dead {
		return h, false, nil
	}
	n.h.placed[key] = n.id
	return n.id, false, nil
}
func (n *fakeNode) Release(ctx context.Context, key string) error {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	if n.h.placed[key] == n.id {
		delete(n.h.placed, key)
	}
	return nil
}

// fakeChat records what the link asks of chat.
type fakeChat struct {
	mu       sync.Mutex
	remote   map[string]chat.ResourceState
	local    map[string]chat.ResourceState
	dropped  []string // "full announce"
	offline  []string
	drained  []string
	reloaded []string
}

func newFakeChat() *fakeChat {
	return &fakeChat{remote: map[string]chat.ResourceState{}, local: map[string]chat.ResourceState{}}
}

func (c *fakeChat) SetRemote(sess chat.Session, st chat.ResourceState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.remote[sess.JID().String()] = st
}
func (c *fakeChat) DropRemote(ctx context.Context, sess chat.Session, announce bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.remote, sess.JID().String())
	c.dropped = append(c.dropped, fmt.Sprintf("%s %v", sess.JID(), announce))
}
func (c *fakeChat) LocalStates(fn func(jid.JID, chat.ResourceState)) {
	c.mu.Lock()
	all := maps(c.local)
	c.mu.Unlock()
	for k, v := range all {
		fn(jid.MustParse(k), v)
	}
}
func (c *fakeChat) SendTo(sess chat.Session, el *stanza.Element) bool { return sess.Send(el) == nil }
func (c *fakeChat) Undeliverable(ctx context.Context, el *stanza.Element) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offline = append(c.offline, el.To())
	return true
}
func (c *fakeChat) DrainOffline(context.Context) {}
func (c *fakeChat) ReloadBlocklist(ctx context.Context, local string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reloaded = append(c.reloaded, local)
}
func (c *fakeChat) DrainUser(ctx context.Context, bare jid.JID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drained = append(c.drained, bare.String())
}

func maps(m map[string]chat.ResourceState) map[string]chat.ResourceState {
	out := make(map[string]chat.ResourceState, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// fakeSession is a local session collecting what it is sent.
type fakeSession struct{ *testfake.Session }

func (s *fakeSession) received() []string {
	var out []string
	for _, el := range s.Received() {
		out = append(out, el.String())
	}
	return out
}

// fakeRooms records the room stanzas it runs and the sessions it seats.
type fakeRooms struct {
	mu      sync.Mutex
	seen    []string // "from stanza-name"
	closed  []string
	adopted []string
	moved   []string
	lost    []string // "session room/nick" told their host is gone
	seats   map[string]chat.Session
	inUse   map[string]bool // rooms someone is in
}

func (r *fakeRooms) HandleStanza(ctx context.Context, sess chat.Session, el *stanza.Element) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, sess.JID().String()+" "+el.Local)
	if r.seats == nil {
		r.seats = map[string]chat.Session{}
	}
	r.seats[sess.JID().String()] = sess
}
func (r *fakeRooms) HandleRemote(ctx context.Context, el *stanza.Element) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, "remote "+el.From()+" "+el.Local)
}
func (r *fakeRooms) Adopt(ctx context.Context, room jid.JID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.adopted = append(r.adopted, room.String())
}
func (r *fakeRooms) Moved(ctx context.Context, room jid.JID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.moved = append(r.moved, room.String())
}
func (r *fakeRooms) HostLost(ctx context.Context, sess chat.Session, room jid.JID, nick string) {
	r.mu.Lock()
	r.lost = append(r.lost, sess.JID().String()+" "+room.String()+"/"+nick)
	r.mu.Unlock()
	// What the session hears is the rooms' (conference.Service.HostLost);
	// here, just that it hears.
	sess.Send(stanza.New(stanza.NSClient, "presence").SetAttr("from", room.String()+"/"+nick).
		SetAttr("to", sess.JID().String()).SetAttr("type", "unavailable"))
}
func (r *fakeRooms) InUse(ctx context.Context, room jid.JID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inUse[room.String()]
}
func (r *fakeRooms) SessionClosed(ctx context.Context, sess chat.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = append(r.closed, sess.JID().String())
}

type testNode struct {
	chat   *fakeChat
	rooms  *fakeRooms
	link   *Link
	node   *fakeNode
	nudged atomic.Int32 // AccountsChanged calls
}

func (tn *testNode) session(full string) *fakeSession {
	return &fakeSession{testfake.NewSession(full)}
}

// login is a session that binds, as chat tells the link of a login: the
// link serves it here and takes its JID in the cluster's directory.
func (tn *testNode) login(full string) *fakeSession {
	s := tn.session(full)
	tn.link.Bound(context.Background(), s)
	return s
}

func startNodes(t *testing.T, h *hub, ids ...cluster.NodeID) map[cluster.NodeID]*testNode {
	return startNodesIdle(t, h, 0, ids...)
}

// startNodesIdle is startNodes with the links' RoomIdle set (0: the
// default).
func startNodesIdle(t *testing.T, h *hub, idle time.Duration, ids ...cluster.NodeID) map[cluster.NodeID]*testNode {
	out := map[cluster.NodeID]*testNode{}
	for _, id := range ids {
		tn := &testNode{chat: newFakeChat(), rooms: &fakeRooms{}}
		tn.link = New(Config{Chat: tn.chat, Rooms: tn.rooms, AccountsChanged: func() { tn.nudged.Add(1) },
			Hosted:   func(d string) bool { return d == "x" || d == "conf.x" },
			RoomIdle: idle})
		tn.node = h.add(t, id, tn.link)
		// Before the node's queue closes: Close sends what is queued.
		t.Cleanup(tn.link.Close)
		out[id] = tn
	}
	for _, id := range ids {
		out[id].link.Attach(context.Background(), out[id].node)
	}
	h.settle(t)
	return out
}

func TestSessionsMirrorAcrossNodes(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a, b := ns["a"], ns["b"]
	bob := b.login("bob@x/phone")
	pres := stanza.New(stanza.NSClient, "presence").SetAttr("from", "bob@x/phone")
	b.link.SessionChanged(bob.JID(), chat.ResourceState{Available: true, Priority: 5, Presence: pres, Carbons: true})
	h.settle(t)
	st, ok := a.chat.remote["bob@x/phone"]
	if !ok || !st.Available || st.Priority != 5 || !st.Carbons || st.Presence == nil || st.Presence.From() != "bob@x/phone" {
		t.Fatalf("a's mirror of bob = %+v, %v", st, ok)
	}

	// What a's chat sends the mirrored session reaches bob on b.
	r := ns["a"].link.remotes["bob@x/phone"]
	msg := stanza.New(stanza.NSClient, "message").SetAttr("to", "bob@x/phone").SetAttr("from", "alice@x/pc")
	msg.Append(stanza.New(stanza.NSClient, "body").SetText("hello"))
	if err := r.Send(msg); err != nil {
		t.Fatal(err)
	}
	h.settle(t)
	if got := bob.received(); len(got) != 1 || !strings.Contains(got[0], "hello") {
		t.Fatalf("bob got %q", got)
	}

	// A session that ended on b meanwhile: the message goes offline on b,
	// and every node is told to drain the recipient's queue.
	bob.SetGone(errors.New("gone"))
	r.Send(msg)
	h.settle(t)
	if len(b.chat.offline) != 1 || b.chat.offline[0] != "bob@x/phone" {
		t.Fatalf("offline on b: %q", b.chat.offline)
	}
	if len(a.chat.drained) != 1 || a.chat.drained[0] != "bob@x" {
		t.Fatalf("a drained %q", a.chat.drained)
	}

	// Gone: the mirror forgets it without announcing (b announced).
	b.link.SessionEnded(bob.JID())
	h.settle(t)
	if _, ok := a.chat.remote["bob@x/phone"]; ok || !slices.Contains(a.chat.dropped, "bob@x/phone false") {
		t.Fatalf("after gone: mirror %v, dropped %q", a.chat.remote, a.chat.dropped)
	}
}

func TestSnapshotOnJoinAndStaleDropped(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a")
	a := ns["a"]
	a.chat.local["alice@x/pc"] = chat.ResourceState{Available: true}
	a.chat.local["alice@x/phone"] = chat.ResourceState{}
	a.login("alice@x/pc")
	a.login("alice@x/phone")

	// b joins: it asks a for its sessions.
	ns2 := startNodes(t, h, "b")
	b := ns2["b"]
	if len(b.chat.remote) != 2 || !b.chat.remote["alice@x/pc"].Available {
		t.Fatalf("b's mirror after joining: %v", b.chat.remote)
	}

	// A later full snapshot without alice/phone drops it, announcing.
	delete(a.chat.local, "alice@x/phone")
	a.link.NodeJoined(context.Background(), "b")
	h.settle(t)
	if _, ok := b.chat.remote["alice@x/phone"]; ok || !slices.Contains(b.chat.dropped, "alice@x/phone true") {
		t.Fatalf("stale session kept: %v, dropped %q", b.chat.remote, b.chat.dropped)
	}
	if _, ok := b.chat.remote["alice@x/pc"]; !ok {
		t.Fatal("current session dropped")
	}
}

func TestRoomForwardedToHostAndHostDeath(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a, b := ns["a"], ns["b"]
	alice := a.login("alice@x/pc")
	bob := b.login("bob@x/phone")
	join := func(s *fakeSession, nick string) *stanza.Element {
		return stanza.New(stanza.NSClient, "presence").SetAttr("from", s.JID().String()).SetAttr("to", "room@conf.x/"+nick)
	}
	ctx := context.Background()
	a.link.Room(ctx, alice, join(alice, "al")) // places the room on a
	b.link.Room(ctx, bob, join(bob, "bo"))     // forwarded to a
	h.settle(t)
	if len(b.rooms.seen) != 0 {
		t.Fatalf("b ran room stanzas itself: %q", b.rooms.seen)
	}
	if want := []string{"alice@x/pc presence", "bob@x/phone presence"}; !slices.Equal(a.rooms.seen, want) {
		t.Fatalf("a's rooms saw %q, want %q", a.rooms.seen, want)
	}
	// The room replies to the remote seat; it reaches bob on b.
	a.rooms.seats["bob@x/phone"].Send(stanza.New(stanza.NSClient, "presence").SetAttr("from", "room@conf.x/bo").SetAttr("to", "bob@x/phone"))
	h.settle(t)
	if got := bob.received(); len(got) != 1 || !strings.Contains(got[0], "room@conf.x/bo") {
		t.Fatalf("bob got %q", got)
	}

	// bob's session ends: a's rooms let the seat go.
	b.link.SessionEnded(bob.JID())
	h.settle(t)
	if !slices.Equal(a.rooms.closed, []string{"bob@x/phone"}) {
		t.Fatalf("a's rooms closed %q", a.rooms.closed)
	}

	// bob joins again, then a dies: b tells bob he is out (110, 332),
	// and drops a's sessions from its mirror, announcing them gone.
	a.link.SessionChanged(alice.JID(), chat.ResourceState{Available: true})
	b.link.Room(ctx, bob, join(bob, "bo"))
	h.settle(t)
	h.mu.Lock()
	h.nodes["a"].dead = true
	h.mu.Unlock()
	b.link.NodeGone(ctx, "a")
	if _, ok := b.chat.remote["alice@x/pc"]; ok || !slices.Contains(b.chat.dropped, "alice@x/pc true") {
		t.Fatalf("after a died: b's mirror %v, dropped %q", b.chat.remote, b.chat.dropped)
	}
	// b asks its rooms to tell bob; what he hears (110, 332) is theirs to
	// build (conference.TestHostLost checks it).
	if want := []string{"bob@x/phone room@conf.x/bo"}; !slices.Equal(b.rooms.lost, want) {
		t.Fatalf("b's rooms told %q their host is gone, want %q", b.rooms.lost, want)
	}
	got := bob.received()
	last := got[len(got)-1]
	for _, want := range []string{"type='unavailable'", "room@conf.x/bo"} {
		if !strings.Contains(last, want) {
			t.Fatalf("bob's last stanza %s lacks %s", last, want)
		}
	}
	// The next join places the room on b, which reads it afresh once.
	b.link.Room(ctx, bob, join(bob, "bo"))
	b.link.Room(ctx, bob, join(bob, "bo"))
	if !slices.Equal(b.rooms.seen, []string{"bob@x/phone presence", "bob@x/phone presence"}) {
		t.Fatalf("b's rooms saw %q", b.rooms.seen)
	}
	if !slices.Equal(b.rooms.adopted, []string{"room@conf.x"}) || !slices.Equal(a.rooms.adopted, []string{"room@conf.x"}) {
		t.Fatalf("adopted: a %q, b %q", a.rooms.adopted, b.rooms.adopted)
	}

	// b loses the room (another node took it while b was cut off): its
	// occupants are told, and the next stanza adopts it again.
	b.link.PlacementLost(ctx, "room@conf.x")
	if !slices.Equal(b.rooms.moved, []string{"room@conf.x"}) {
		t.Fatalf("b's rooms moved %q", b.rooms.moved)
	}
	b.link.Room(ctx, bob, join(bob, "bo"))
	if len(b.rooms.adopted) != 2 {
		t.Fatalf("b adopted %q after losing the room", b.rooms.adopted)
	}
}

func TestBlocklistChangeReachesOtherNodes(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b", "c")
	ns["a"].link.BlocklistChanged("alice")
	h.settle(t)
	for _, id := range []cluster.NodeID{"b", "c"} {
		if got := ns[id].chat.reloaded; !slices.Equal(got, []string{"alice"}) {
			t.Errorf("node %s reloaded %q", id, got)
		}
	}
	if got := ns["a"].chat.reloaded; len(got) != 0 {
		t.Errorf("the changing node reloaded %q", got)
	}
}

// TestAccountDeletionNudgesOtherNodes: a node that deleted an account has
// the others read the account journal at once.
func TestAccountDeletionNudgesOtherNodes(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b", "c")
	ns["a"].link.AccountDeleted()
	h.settle(t)
	for id, want := range map[cluster.NodeID]int32{"a": 0, "b": 1, "c": 1} {
		if got := ns[id].nudged.Load(); got != want {
			t.Errorf("node %s nudged %d times, want %d", id, got, want)
		}
	}
}

func TestKickEndsTheOldSession(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	ctx := context.Background()
	old := ns["a"].login("carol@x/r")
	// A login on b with carol's full JID tells a to end the old session.
	ns["b"].link.Bound(ctx, ns["b"].session("carol@x/r"))
	h.settle(t)
	if old.Stopped() != "conflict" {
		t.Fatalf("old session stopped with %q, want conflict", old.Stopped())
	}
	if h.bound["carol@x/r"] != "b" {
		t.Fatalf("directory: carol@x/r on %q, want b", h.bound["carol@x/r"])
	}
}

// A late report from another node about a JID a login here has taken
// since does not replace the local session in chat; a report that comes
// after this node was told to end its session does.
func TestLocalSessionOutranksLateReports(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a, b := ns["a"], ns["b"]
	a.login("erin@x/r")
	b.link.SessionChanged(jid.MustParse("erin@x/r"), chat.ResourceState{Available: true})
	h.settle(t)
	if _, ok := a.chat.remote["erin@x/r"]; ok {
		t.Fatal("a late report replaced the local session")
	}
	b.login("erin@x/r") // a login on b takes the JID
	b.node.Send(context.Background(), "a", addressed(kindKick, "erin@x/r", nil))
	b.link.SessionChanged(jid.MustParse("erin@x/r"), chat.ResourceState{Available: true})
	h.settle(t)
	if _, ok := a.chat.remote["erin@x/r"]; !ok {
		t.Fatal("the new session on b is not mirrored on a while a's old one ends")
	}
}

func TestClosingSessionKeepsItsSuccessorBound(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a")
	a, ctx := ns["a"], context.Background()
	s := a.login("dan@x/r")
	// A new login with the same JID replaces it here before the old
	// one's end is reported: the directory keeps the new one.
	s2 := a.login("dan@x/r")
	a.link.Closed(ctx, s)
	if h.bound["dan@x/r"] != "a" {
		t.Fatal("the old session's end unbound its successor")
	}
	a.link.Closed(ctx, s2)
	if _, ok := h.bound["dan@x/r"]; ok {
		t.Fatal("a session that ended stayed in the directory")
	}
}

func TestPayloadsRoundTrip(t *testing.T) {
	p := stanza.New(stanza.NSClient, "presence").SetAttr("from", "a@x/r")
	p.Append(stanza.New(stanza.NSClient, "show").SetText("away"))
	in := []entry{
		{full: "a@x/r", st: chat.ResourceState{Available: true, Priority: -3, Presence: p, Interested: true,
			Notify: []string{"urn:xmpp:avatar:metadata+notify", "eu.siacs.conversations.axolotl.devicelist+notify"}}},
		{full: "b@x/s", st: chat.ResourceState{Carbons: true, BlockPush: true}},
	}
	b := states(snapFirst|snapLast, in)
	flags, out, err := decodeStates(&decoder{b: b[1:]})
	if err != nil || flags != snapFirst|snapLast || len(out) != 2 {
		t.Fatalf("decode: %v %v %d", err, flags, len(out))
	}
	if out[0].st.Priority != -3 || !out[0].st.Interested || out[0].st.Presence.String() != p.String() || !out[1].st.Carbons || !out[1].st.BlockPush || out[0].st.BlockPush ||
		!slices.Equal(out[0].st.Notify, in[0].st.Notify) || out[1].st.Notify != nil {
		t.Fatalf("decoded %+v", out)
	}
	// Truncated payloads are refused, not misread.
	for i := 1; i < len(b); i++ {
		if _, _, err := decodeStates(&decoder{b: b[1:i]}); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
	if _, _, err := decodeAddressed(&decoder{b: addressed(kindDeliver, "a@x/r", p)[1:5]}, true); err == nil {
		t.Fatal("truncated stanza payload decoded")
	}
}

// Every field of chat.ResourceState travels in a state entry, alone
// and unchanged: a field added there and not to the encoding fails here.
func TestStateEntryCarriesEveryField(t *testing.T) {
	typ := reflect.TypeFor[chat.ResourceState]()
	for i := range typ.NumField() {
		var in chat.ResourceState
		f := reflect.ValueOf(&in).Elem().Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int:
			f.SetInt(-7)
		case reflect.Pointer:
			f.Set(reflect.ValueOf(stanza.New(stanza.NSClient, "presence").SetAttr("from", "a@x/r")))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"urn:xmpp:avatar:metadata+notify"}))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", typ.Field(i).Name, f.Kind())
		}
		_, out, err := decodeStates(&decoder{b: states(0, []entry{{full: "a@x/r", st: in}})[1:]})
		if err != nil || len(out) != 1 {
			t.Fatalf("field %s: decode: %v, %d entries", typ.Field(i).Name, err, len(out))
		}
		got, want := reflect.ValueOf(out[0].st), reflect.ValueOf(in)
		for j := range typ.NumField() {
			g, w := got.Field(j).Interface(), want.Field(j).Interface()
			if el, ok := w.(*stanza.Element); ok {
				gel := g.(*stanza.Element)
				if (el == nil) != (gel == nil) || el != nil && el.String() != gel.String() {
					t.Errorf("field %s set: %s decoded as %v, want %v", typ.Field(i).Name, typ.Field(j).Name, gel, el)
				}
				continue
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("field %s set: %s decoded as %#v, want %#v", typ.Field(i).Name, typ.Field(j).Name, g, w)
			}
		}
	}
}

// A node is believed only about the sessions the directory says it
// serves: another node's state reports, kicks and room stanzas for them
// are refused and reported.
func TestClaimsOnlyForSessionsTheSenderServes(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b", "c")
	a, b, c := ns["a"], ns["b"], ns["c"]
	ctx := context.Background()
	bob := b.login("bob@x/phone")
	carol := a.login("carol@x/r")
	dave := c.login("dave@x/d")
	forge := func(p []byte) {
		if err := c.node.Send(ctx, "a", p); err != nil {
			t.Fatal(err)
		}
		h.settle(t)
	}

	// c announces bob, whom b serves: a does not mirror him.
	forge(states(0, []entry{{full: "bob@x/phone", st: chat.ResourceState{Available: true, Priority: 9}}}))
	if _, ok := a.chat.remote["bob@x/phone"]; ok {
		t.Fatal("a mirrored bob from a node that does not serve him")
	}
	// b's own report is believed; c's later one does not take him over.
	b.link.SessionChanged(bob.JID(), chat.ResourceState{Available: true, Priority: 1})
	h.settle(t)
	forge(states(0, []entry{{full: "bob@x/phone", st: chat.ResourceState{Available: true, Priority: 9}},
		{full: "dave@x/d", st: chat.ResourceState{Available: true}}}))
	if st, ok := a.chat.remote["bob@x/phone"]; !ok || st.Priority != 1 || a.link.remotes["bob@x/phone"].node != "b" {
		t.Fatalf("a's mirror of bob = %+v, %v; want b's report", st, ok)
	}
	if _, ok := a.chat.remote["dave@x/d"]; !ok {
		t.Fatal("c's report of its own session dave was refused with the forged one")
	}

	// c tells a to end carol's session, which a serves: refused.
	forge(addressed(kindKick, "carol@x/r", nil))
	if carol.Stopped() != "" {
		t.Fatalf("carol's session ended (%q) on a kick from a node that does not serve her", carol.Stopped())
	}

	// Room stanzas: c may forward dave's, not bob's, and not one whose
	// from is someone else.
	a.link.Room(ctx, carol, stanza.New(stanza.NSClient, "presence").SetAttr("from", "carol@x/r").SetAttr("to", "room@conf.x/ca"))
	join := func(from, nick string) *stanza.Element {
		return stanza.New(stanza.NSClient, "presence").SetAttr("from", from).SetAttr("to", "room@conf.x/"+nick)
	}
	forge(addressed(kindRoom, "bob@x/phone", join("bob@x/phone", "bo")))
	forge(addressed(kindRoom, "dave@x/d", join("bob@x/phone", "bo")))
	c.link.Room(ctx, dave, join("dave@x/d", "da"))
	h.settle(t)
	if want := []string{"carol@x/r presence", "dave@x/d presence"}; !slices.Equal(a.rooms.seen, want) {
		t.Fatalf("a's rooms saw %q, want %q", a.rooms.seen, want)
	}

	want := []string{
		"not_owner state bob@x/phone", "not_owner state bob@x/phone",
		"not_owner kick carol@x/r", "not_owner room bob@x/phone", "not_owner room dave@x/d",
	}
	if got := a.node.refused(); !slices.Equal(got, want) {
		t.Fatalf("a refused %q, want %q", got, want)
	}
	// The legitimate kick still works: a login on b takes carol's JID.
	b.login("carol@x/r")
	h.settle(t)
	if carol.Stopped() != "conflict" {
		t.Fatalf("carol's session stopped with %q after a login on b, want conflict", carol.Stopped())
	}
}

// TestRemoteUsersReachTheRoomHost: a stanza from a user of another server
// reaches the node that hosts its room, whichever node federation
// received it on; a node may forward stanzas of users of other servers,
// never of a domain served here.
func TestRemoteUsersReachTheRoomHost(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a, b := ns["a"], ns["b"]
	ctx := context.Background()
	alice := a.login("alice@x/pc")
	a.link.Room(ctx, alice, stanza.New(stanza.NSClient, "presence").SetAttr("from", "alice@x/pc").SetAttr("to", "room@conf.x/al"))
	join := func(from, nick string) *stanza.Element {
		return stanza.New(stanza.NSClient, "presence").SetAttr("from", from).SetAttr("to", "room@conf.x/"+nick)
	}
	if err := b.link.RemoteRoom(ctx, join("zoe@far.example/z", "zo")); err != nil {
		t.Fatal(err)
	}
	h.settle(t)
	if len(b.rooms.seen) != 0 {
		t.Fatalf("b ran the room stanza itself: %q", b.rooms.seen)
	}
	if want := []string{"alice@x/pc presence", "remote zoe@far.example/z presence"}; !slices.Equal(a.rooms.seen, want) {
		t.Fatalf("a's rooms saw %q, want %q", a.rooms.seen, want)
	}

	// b forges stanzas of alice (a local user) and of the room service.
	for _, p := range [][]byte{
		addressed(kindFedRoom, "alice@x/pc", join("alice@x/pc", "al")),
		addressed(kindFedRoom, "conf.x", join("conf.x", "svc")),
		addressed(kindFedRoom, "zoe@far.example/z", join("alice@x/pc", "al")),
	} {
		if err := b.node.Send(ctx, "a", p); err != nil {
			t.Fatal(err)
		}
	}
	h.settle(t)
	if len(a.rooms.seen) != 2 {
		t.Fatalf("a's rooms ran forged stanzas: %q", a.rooms.seen)
	}
	want := []string{"not_owner fedroom alice@x/pc", "not_owner fedroom conf.x", "not_owner fedroom zoe@far.example/z"}
	if got := a.node.refused(); !slices.Equal(got, want) {
		t.Fatalf("a refused %q, want %q", got, want)
	}
}
