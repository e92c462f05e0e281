package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// inbox collects what a node's handler takes, in order.
type inbox struct {
	mu   sync.Mutex
	got  []string
	from []NodeID
	ch   chan string
}

func newInbox() *inbox { return &inbox{ch: make(chan string, 10000)} }

func (b *inbox) handle(ctx context.Context, from NodeID, p []byte) error {
	b.mu.Lock()
	b.got = append(b.got, string(p))
	b.from = append(b.from, from)
	b.mu.Unlock()
	b.ch <- string(p)
	return nil
}

func (b *inbox) snapshot() ([]string, []NodeID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got), slices.Clone(b.from)
}

// goneWatch records NodeGone reports.
func goneWatch(cfg *Config) chan NodeID {
	ch := make(chan NodeID, 16)
	cfg.NodeGone = func(ctx context.Context, id NodeID) { ch <- id }
	return ch
}

func TestMembershipAndDeath(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ca, cb, cc := h.config("a"), h.config("b"), h.config("c")
	goneA, goneB := goneWatch(&ca), goneWatch(&cb)
	joinedA := make(chan NodeID, 4)
	ca.NodeJoined = func(ctx context.Context, id NodeID) { joinedA <- id }
	cc.Node.Media = "127.0.0.1:4000"
	a := h.start(ca)
	b, c := h.start(cb), h.start(cc)
	seen := []NodeID{recv(t, joinedA, "a noticing a node joined"), recv(t, joinedA, "a noticing another node joined")}
	slices.Sort(seen)
	if !slices.Equal(seen, []NodeID{"b", "c"}) {
		t.Errorf("a saw %v join, want b and c", seen)
	}

	var nodes []Node
	waitFor(t, 5*time.Second, "three live nodes", func() bool {
		nodes, _ = a.Nodes(ctx)
		return len(nodes) == 3
	})
	if nodes[2].ID != "c" || nodes[2].Media != "127.0.0.1:4000" || nodes[2].Started.IsZero() {
		t.Errorf("node c advertises %+v", nodes[2])
	}
	if n, err := b.Node(ctx, "c"); err != nil || n.Media != "127.0.0.1:4000" {
		t.Errorf("Node(c) = %+v, %v", n, err)
	}
	if _, err := b.Node(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Node(nobody): %v, want ErrNotFound", err)
	}

	carol := mustJID(t, "carol@example.org/desk")
	if _, err := c.Bind(ctx, carol, "c"); err != nil {
		t.Fatal(err)
	}
	crash(c)
	if id := recv(t, goneA, "a noticing c is gone"); id != "c" {
		t.Errorf("a reports %q gone, want c", id)
	}
	if id := recv(t, goneB, "b noticing c is gone"); id != "c" {
		t.Errorf("b reports %q gone, want c", id)
	}
	waitFor(t, 5*time.Second, "c's session to be cleaned up", func() bool {
		e, err := a.Resources(ctx, carol)
		return err == nil && len(e) == 0
	})
	nodes, err := b.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].ID != "a" || nodes[1].ID != "b" {
		t.Errorf("nodes after c died: %v %v", nodes, err)
	}
	waitFor(t, 5*time.Second, "c to leave the node set", func() bool {
		ok, _ := h.admin.SIsMember(ctx, h.prefix+"nodes", "c").Result()
		return !ok
	})

	// A node that leaves cleanly is reported too, and its sessions go.
	if _, err := b.Bind(ctx, mustJID(t, "bob@example.org/x"), "b"); err != nil {
		t.Fatal(err)
	}
	b.Stop()
	if id := recv(t, goneA, "a noticing b left"); id != "b" {
		t.Errorf("a reports %q gone, want b", id)
	}
	if e, err := a.Resources(ctx, mustJID(t, "bob@example.org")); err != nil || len(e) != 0 {
		t.Errorf("bob's session after b left: %v %v", e, err)
	}
}

func TestDirectoryConflict(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a, b := h.start(h.config("a")), h.start(h.config("b"))
	phone := mustJID(t, "alice@example.org/phone")
	laptop := mustJID(t, "alice@example.org/laptop")

	if prev, err := a.Bind(ctx, phone, "a"); err != nil || prev != "" {
		t.Fatalf("first bind: %q %v", prev, err)
	}
	// A second login with the same resource on b replaces a's session.
	prev, err := b.Bind(ctx, phone, "b")
	if err != nil || prev != "a" {
		t.Fatalf("conflicting bind on b: replaced %q err %v, want a", prev, err)
	}
	// a ends its session afterwards; that must not remove b's.
	if err := a.Unbind(ctx, phone, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Bind(ctx, laptop, "a"); err != nil {
		t.Fatal(err)
	}
	got, err := a.Resources(ctx, mustJID(t, "alice@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{laptop, "a"}, {phone, "b"}}
	if len(got) != 2 || !got[0].Full.Equal(want[0].Full) || got[0].Node != "a" || !got[1].Full.Equal(want[1].Full) || got[1].Node != "b" {
		t.Fatalf("resources %v, want %v", got, want)
	}
	if v := metricValue(t, a.m.sessions); v != 1 {
		t.Errorf("a's sessions gauge %v, want 1", v)
	}
	if v := metricValue(t, b.m.sessions); v != 1 {
		t.Errorf("b's sessions gauge %v, want 1", v)
	}
	if err := b.Unbind(ctx, phone, "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Resources(ctx, phone); len(got) != 1 {
		t.Errorf("after b unbinds: %v, want only the laptop", got)
	}
	// Binding a resource held by a node that is gone reports no conflict.
	if _, err := h.admin.HSet(ctx, h.prefix+"sess:dave@example.org", "x", "ghost").Result(); err != nil {
		t.Fatal(err)
	}
	if prev, err := a.Bind(ctx, mustJID(t, "dave@example.org/x"), "a"); err != nil || prev != "" {
		t.Errorf("bind over a dead node's entry: %q %v, want no conflict", prev, err)
	}
}

func TestRoutingInOrderAndAcknowledged(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	box := newInbox()
	cb := h.config("b")
	cb.Handler = box.handle
	b := h.start(cb)
	a, c := h.start(h.config("a")), h.start(h.config("c"))

	const n = 300
	var wg sync.WaitGroup
	for _, s := range []*Redis{a, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := s.Send(ctx, "b", fmt.Appendf(nil, "%s-%d", s.Self(), i)); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for range 2 * n {
		recv(t, box.ch, "routed payloads")
	}
	got, from := box.snapshot()
	next := map[NodeID]int{}
	for i, p := range got {
		want := fmt.Sprintf("%s-%d", from[i], next[from[i]])
		if p != want {
			t.Fatalf("payload %d from %s is %q, want %q (order per sender lost)", i, from[i], p, want)
		}
		next[from[i]]++
	}
	if next["a"] != n || next["c"] != n {
		t.Fatalf("got %v payloads per sender, want %d each", next, n)
	}
	// Taken payloads are acknowledged and removed from b's stream.
	waitFor(t, 5*time.Second, "b's stream to be empty and acknowledged", func() bool {
		l, _ := h.admin.XLen(ctx, h.prefix+"stream:b").Result()
		p, _ := h.admin.XPending(ctx, h.prefix+"stream:b", consumerGroup).Result()
		return l == 0 && p != nil && p.Count == 0
	})
	if v := metricValue(t, a.m.sent); v != n {
		t.Errorf("a's sent counter %v, want %d", v, n)
	}
	if v := metricValue(t, b.m.received); v != 2*n {
		t.Errorf("b's received counter %v, want %d", v, 2*n)
	}
	if v := metricValue(t, b.m.latency); v != 2*n {
		t.Errorf("b's latency samples %v, want %d", v, 2*n)
	}
}

func TestRedeliveryAfterRestart(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// A long TTL: b's restart must not look like a death to a.
	long := func(cfg Config) Config { cfg.NodeTTL, cfg.LeaseTTL = 5*time.Second, 5*time.Second; return cfg }
	a := h.start(long(h.config("a")))

	took := make(chan string, 1)
	cb := long(h.config("b"))
	cb.Handler = func(ctx context.Context, from NodeID, p []byte) error {
		took <- string(p)
		<-ctx.Done() // busy until the process dies: never acknowledged
		return ctx.Err()
	}
	b1 := h.start(cb)
	for i := range 5 {
		if err := a.Send(ctx, "b", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if p := recv(t, took, "first delivery"); p != "m0" {
		t.Fatalf("first delivery %q, want m0", p)
	}
	crash(b1)

	box := newInbox()
	cb2 := long(h.config("b"))
	cb2.Handler = box.handle
	h.start(cb2)
	for range 5 {
		recv(t, box.ch, "redelivery after restart")
	}
	got, _ := box.snapshot()
	if want := []string{"m0", "m1", "m2", "m3", "m4"}; !slices.Equal(got, want) {
		t.Fatalf("after restart got %q, want %q", got, want)
	}
	select {
	case p := <-box.ch:
		t.Fatalf("payload %q delivered twice", p)
	default:
	}
}

func TestHandlerRefusalGoesToFallback(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a := h.start(h.config("a"))
	var mu sync.Mutex
	tries := 0
	fallback := make(chan string, 4)
	cb := h.config("b")
	cb.MaxAttempts = 2
	cb.Handler = func(ctx context.Context, from NodeID, p []byte) error {
		if string(p) == "poison" {
			mu.Lock()
			tries++
			mu.Unlock()
			return errors.New("cannot take it")
		}
		fallback <- "handled " + string(p)
		return nil
	}
	cb.Undeliverable = func(ctx context.Context, to, from NodeID, p []byte) {
		fallback <- fmt.Sprintf("undeliverable %s->%s %s", from, to, p)
	}
	h.start(cb)
	for _, p := range []string{"poison", "fine"} {
		if err := a.Send(ctx, "b", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if got := recv(t, fallback, "poison handed over"); got != "undeliverable a->b poison" {
		t.Fatalf("got %q first, want the refused payload handed to the fallback", got)
	}
	if got := recv(t, fallback, "next payload"); got != "handled fine" {
		t.Fatalf("got %q, want the next payload handled", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if tries != 2 {
		t.Errorf("handler offered the payload %d times, want 2", tries)
	}
}

func TestSendToDeadNode(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ca := h.config("a")
	gone := goneWatch(&ca)
	a, b := h.start(ca), h.start(h.config("b"))
	if err := a.Send(ctx, "nobody", []byte("x")); !errors.Is(err, ErrNodeGone) {
		t.Errorf("send to a node that never joined: %v, want ErrNodeGone", err)
	}
	if err := a.Send(ctx, "b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	crash(b)
	recv(t, gone, "a noticing b died")
	if err := a.Send(ctx, "b", []byte("y")); !errors.Is(err, ErrNodeGone) {
		t.Errorf("send to a dead node: %v, want ErrNodeGone", err)
	}
}

func TestBacklogBound(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ca := h.config("a")
	ca.StreamMaxLen = 3
	a := h.start(ca)
	took := make(chan string, 1)
	cb := h.config("b")
	cb.Handler = func(ctx context.Context, from NodeID, p []byte) error {
		took <- string(p)
		<-ctx.Done() // stuck on the first payload
		return ctx.Err()
	}
	h.start(cb)
	for i := range 3 {
		if err := a.Send(ctx, "b", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	recv(t, took, "b stuck on the first payload")
	if err := a.Send(ctx, "b", []byte("one too many")); !errors.Is(err, ErrBacklog) {
		t.Errorf("send past the bound: %v, want ErrBacklog", err)
	}
}

func TestDeadNodesUnreadGoToFallback(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var mu sync.Mutex
	var handed []string
	fallback := func(ctx context.Context, to, from NodeID, p []byte) {
		mu.Lock()
		handed = append(handed, fmt.Sprintf("%s>%s:%s", from, to, p))
		mu.Unlock()
	}
	ca, cc := h.config("a"), h.config("c")
	ca.Undeliverable, cc.Undeliverable = fallback, fallback
	a, _ := h.start(ca), h.start(cc)

	took := make(chan string, 1)
	cb := h.config("b")
	cb.Handler = func(ctx context.Context, from NodeID, p []byte) error {
		took <- string(p)
		<-ctx.Done()
		return ctx.Err()
	}
	b := h.start(cb)
	for i := range 4 {
		if err := a.Send(ctx, "b", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	recv(t, took, "b busy with the first payload")
	crash(b)
	want := []string{"a>b:m0", "a>b:m1", "a>b:m2", "a>b:m3"}
	waitFor(t, 5*time.Second, "b's unread payloads handed to the fallback", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handed) >= len(want)
	})
	waitFor(t, 5*time.Second, "b's stream to be removed", func() bool {
		n, _ := h.admin.Exists(ctx, h.prefix+"stream:b").Result()
		return n == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(handed, want) {
		t.Errorf("fallback got %q, want %q exactly once", handed, want)
	}
}

func TestPlacementTakeover(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	cb := h.config("b")
	gone := goneWatch(&cb)
	a, b, c := h.start(h.config("a")), h.start(cb), h.start(h.config("c"))
	const room = "team@conference.example.org"

	host, moved, err := a.Place(ctx, room)
	if err != nil || host != "a" || moved {
		t.Fatalf("first place: %q %v %v, want a", host, moved, err)
	}
	if host, moved, err := b.Place(ctx, room); err != nil || host != "a" || moved {
		t.Fatalf("place from b: %q %v %v, want a", host, moved, err)
	}
	// The lease outlives its TTL while a renews it.
	start, err := h.admin.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "three lease lifetimes to pass on the server", func() bool {
		now, err := h.admin.Time(ctx).Result()
		return err == nil && now.Sub(start) > 3*h.config("x").LeaseTTL
	})
	if host, _, err := c.Place(ctx, room); err != nil || host != "a" {
		t.Fatalf("place after the lease ttl: %q %v, want a (renewed)", host, err)
	}

	crash(a)
	recv(t, gone, "b noticing a died")
	host, moved, err = b.Place(ctx, room)
	if err != nil || host != "b" || !moved {
		t.Fatalf("place after a died: %q moved=%v %v, want b and moved", host, moved, err)
	}
	if host, moved, err := c.Place(ctx, room); err != nil || host != "b" || moved {
		t.Fatalf("place from c after the move: %q %v %v, want b, not moved", host, moved, err)
	}
	if err := c.Release(ctx, room); err != nil {
		t.Fatal(err)
	}
	if host, _, _ := c.Place(ctx, room); host != "b" {
		t.Fatalf("release by a non-holder freed the room: host %q", host)
	}
	if err := b.Release(ctx, room); err != nil {
		t.Fatal(err)
	}
	if host, moved, err := c.Place(ctx, room); err != nil || host != "c" || moved {
		t.Fatalf("place after release: %q %v %v, want c, not moved", host, moved, err)
	}
}

func TestDegradedAndBack(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	px := newProxy(t, h.addr)

	health := make(chan bool, 8)
	lost := make(chan jid.JID, 4)
	box := newInbox()
	ca := h.config("a")
	ca.URL = "redis://" + px.addr()
	ca.Handler = box.handle
	ca.HealthChanged = func(ok bool) { health <- ok }
	ca.SessionLost = func(ctx context.Context, full jid.JID) { lost <- full }
	a := h.start(ca)
	if ok := recv(t, health, "a joining"); !ok {
		t.Fatal("a reported unhealthy on start")
	}
	cb := h.config("b")
	gone := goneWatch(&cb)
	joined := make(chan NodeID, 4)
	cb.NodeJoined = func(ctx context.Context, id NodeID) { joined <- id }
	b := h.start(cb)

	phone := mustJID(t, "alice@example.org/phone")
	desk := mustJID(t, "alice@example.org/desk")
	tablet := mustJID(t, "alice@example.org/tablet")
	for _, j := range []jid.JID{phone, desk} {
		if _, err := a.Bind(ctx, j, "a"); err != nil {
			t.Fatal(err)
		}
	}

	px.cut()
	if ok := recv(t, health, "a noticing redis is gone"); ok {
		t.Fatal("a reported healthy when redis went away")
	}
	if a.Healthy() || metricValue(t, a.m.healthy) != 0 {
		t.Error("a claims to be healthy while cut off")
	}
	if metricValue(t, a.m.redisErrors) == 0 {
		t.Error("no redis errors counted")
	}
	if err := a.Send(ctx, "b", []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("send while degraded: %v, want ErrUnavailable", err)
	}
	// A login on a while degraded is kept and written when redis returns.
	if _, err := a.Bind(ctx, tablet, "a"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("bind while degraded: %v, want ErrUnavailable", err)
	}
	// To b, a is dead: its sessions go, and a newer login takes the phone.
	if id := recv(t, gone, "b noticing a is gone"); id != "a" {
		t.Fatalf("b reports %q gone", id)
	}
	waitFor(t, 5*time.Second, "a's sessions cleaned up", func() bool {
		e, err := b.Resources(ctx, phone)
		return err == nil && len(e) == 0
	})
	if err := b.Send(ctx, "a", []byte("x")); !errors.Is(err, ErrNodeGone) {
		t.Errorf("send to the cut-off node: %v, want ErrNodeGone", err)
	}
	if _, err := b.Bind(ctx, phone, "b"); err != nil {
		t.Fatal(err)
	}

	px.restore()
	if ok := recv(t, health, "a rejoining"); !ok {
		t.Fatal("a reported unhealthy when redis came back")
	}
	if id := recv(t, joined, "b noticing a is back"); id != "a" {
		t.Errorf("b saw %q join, want a", id)
	}
	if got := recv(t, lost, "a told its phone session was taken"); !got.Equal(phone) {
		t.Errorf("session lost: %s, want %s", got, phone)
	}
	waitFor(t, 5*time.Second, "a's sessions bound again", func() bool {
		e, err := b.Resources(ctx, phone)
		return err == nil && len(e) == 3
	})
	e, _ := b.Resources(ctx, phone)
	want := map[string]NodeID{"desk": "a", "phone": "b", "tablet": "a"}
	for _, x := range e {
		if want[x.Full.Resourcepart()] != x.Node {
			t.Errorf("after rejoin %s is on %q, want %q", x.Full, x.Node, want[x.Full.Resourcepart()])
		}
	}
	waitFor(t, 5*time.Second, "b to route to a again", func() bool {
		return b.Send(ctx, "a", []byte("welcome back")) == nil
	})
	if p := recv(t, box.ch, "a receiving after rejoin"); p != "welcome back" {
		t.Errorf("a got %q", p)
	}
}

func TestShortOutageKeepsQueue(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	px := newProxy(t, h.addr)
	health := make(chan bool, 8)
	box := newInbox()
	ca := h.config("a")
	ca.URL = "redis://" + px.addr()
	ca.NodeTTL = 10 * time.Second // the outage is shorter than this
	ca.Handler = box.handle
	ca.HealthChanged = func(ok bool) { health <- ok }
	h.start(ca)
	recv(t, health, "a joining")
	b := h.start(h.config("b"))

	px.cut()
	if ok := recv(t, health, "a noticing redis is gone"); ok {
		t.Fatal("a healthy while cut off")
	}
	// a is not dead to b yet: stanzas for it wait in its stream.
	for i := range 3 {
		if err := b.Send(ctx, "a", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("send to a node briefly cut off: %v", err)
		}
	}
	px.restore()
	for range 3 {
		recv(t, box.ch, "queued stanzas after redis came back")
	}
	if got, _ := box.snapshot(); !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Errorf("a got %q after the outage, want m0 m1 m2", got)
	}
}

func TestRedisLosesData(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	box := newInbox()
	ca := h.config("a")
	ca.Handler = box.handle
	a, b := h.start(ca), h.start(h.config("b"))
	phone := mustJID(t, "alice@example.org/phone")
	if _, err := a.Bind(ctx, phone, "a"); err != nil {
		t.Fatal(err)
	}
	// As if Redis restarted without persistence: every key is gone.
	iter := h.admin.Scan(ctx, 0, h.prefix+"*", 500).Iterator()
	var ks []string
	for iter.Next(ctx) {
		ks = append(ks, iter.Val())
	}
	if len(ks) == 0 {
		t.Fatal("no keys to lose")
	}
	if err := h.admin.Del(ctx, ks...).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a's session bound again", func() bool {
		e, err := b.Resources(ctx, phone)
		return err == nil && len(e) == 1 && e[0].Node == "a"
	})
	waitFor(t, 5*time.Second, "b to route to a again", func() bool {
		return b.Send(ctx, "a", []byte("still here")) == nil
	})
	if p := recv(t, box.ch, "a reading its recreated stream"); p != "still here" {
		t.Errorf("a got %q", p)
	}
}

func TestCallerDeadlineIsNotAnOutage(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.config("a"))
	h.start(h.config("b"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Send(ctx, "b", []byte("x")); err == nil {
		t.Fatal("send with a cancelled context succeeded")
	}
	if _, err := a.Resources(ctx, mustJID(t, "alice@example.org")); err == nil {
		t.Fatal("resources with a cancelled context succeeded")
	}
	if !a.Healthy() || metricValue(t, a.m.redisErrors) != 0 {
		t.Error("a caller's cancelled context was taken for a Redis outage")
	}
}

func TestStartStopTwice(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := NewRedis(h.config("a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatalf("second start: %v", err)
	}
	r.Stop()
	r.Stop()
	if err := r.Start(ctx); err == nil {
		t.Error("start after stop succeeded")
	}
	if len(r.Collectors()) != 8 {
		t.Errorf("%d collectors, want 8", len(r.Collectors()))
	}

	// A node that cannot reach redis refuses to start.
	cfg := h.config("b")
	cfg.URL = "redis://127.0.0.1:1"
	cfg.OpTimeout = 200 * time.Millisecond
	dead, err := NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.Start(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("start without redis: %v, want ErrUnavailable", err)
	}
	dead.Stop()
}
