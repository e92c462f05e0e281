package cluster

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/testenv"
)

// nodeFactory returns a node of one cluster implementation, not started, the
// only node of its cluster; handler takes what is sent to it. The node is
// stopped when t ends.
type nodeFactory func(t *testing.T, node Node, handler Handler) Cluster

// runContract runs what every Cluster does seen from a node alone in its
// cluster: the single-node Local and a Redis cluster of one node must
// behave the same to the rest of poosms.
func runContract(t *testing.T, newNode nodeFactory) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, newNode nodeFactory)
	}{
		{"StartStop", testContractStartStop},
		{"Membership", testContractMembership},
		{"Directory", testContractDirectory},
		{"Owners", testContractOwners},
		{"SendToSelf", testContractSendToSelf},
		{"SendToUnknownNode", testContractSendToUnknownNode},
		{"Place", testContractPlace},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newNode) })
	}
}

func TestLocalContract(t *testing.T) {
	runContract(t, func(t *testing.T, node Node, handler Handler) Cluster {
		l, err := NewLocal(node, handler)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Stop)
		return l
	})
}

func TestRedisContract(t *testing.T) {
	testenv.RedisAddr(t)
	runContract(t, func(t *testing.T, node Node, handler Handler) Cluster {
		h := newHarness(t)
		cfg := h.config(node.ID)
		cfg.Node = node
		cfg.Handler = handler
		r, err := NewRedis(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		return r
	})
}

var contractNode = Node{ID: "solo", C2S: "127.0.0.1:5222", HTTP: "127.0.0.1:5280", Media: "127.0.0.1:3478"}

// started is a new node, started.
func started(t *testing.T, newNode nodeFactory, handler Handler) Cluster {
	t.Helper()
	c := newNode(t, contractNode, handler)
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

func testContractStartStop(t *testing.T, newNode nodeFactory) {
	ctx := t.Context()
	c := newNode(t, contractNode, nil)
	if c.Self() != contractNode.ID {
		t.Errorf("Self() = %q, want %q", c.Self(), contractNode.ID)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if !c.Healthy() {
		t.Error("a started node is not healthy")
	}
	c.Stop()
	c.Stop()
	if err := c.Start(ctx); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

func testContractMembership(t *testing.T, newNode nodeFactory) {
	ctx := t.Context()
	before := time.Now()
	c := started(t, newNode, nil)
	after := time.Now()
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("Nodes() = %+v, %v; want this node alone", nodes, err)
	}
	n := nodes[0]
	if n.ID != contractNode.ID || n.C2S != contractNode.C2S || n.HTTP != contractNode.HTTP || n.Media != contractNode.Media {
		t.Errorf("Nodes()[0] = %+v, want what the node advertises, %+v", n, contractNode)
	}
	if n.Started.Before(before.Truncate(time.Millisecond)) || n.Started.After(after) {
		t.Errorf("Started = %v, want the time of Start (between %v and %v)", n.Started, before, after)
	}
	if n.Started.Location() != time.UTC {
		t.Errorf("Started is in %v, want UTC", n.Started.Location())
	}
	self, err := c.Node(ctx, contractNode.ID)
	if err != nil {
		t.Fatalf("Node(self): %v", err)
	}
	if self.ID != n.ID || self.C2S != n.C2S || self.HTTP != n.HTTP || self.Media != n.Media || !self.Started.Equal(n.Started) {
		t.Errorf("Node(self) = %+v, want %+v as Nodes has it", self, n)
	}
	if _, err := c.Node(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Node(nobody) = %v, want ErrNotFound", err)
	}
}

func testContractDirectory(t *testing.T, newNode nodeFactory) {
	ctx := t.Context()
	c := started(t, newNode, nil)
	self := c.Self()
	phone := mustJID(t, "alice@example.org/phone")
	laptop := mustJID(t, "alice@example.org/laptop")
	tablet := mustJID(t, "alice@example.org/tablet")

	if got, err := c.Resources(ctx, mustJID(t, "alice@example.org")); err != nil || len(got) != 0 {
		t.Fatalf("Resources before any bind = %v, %v; want none", got, err)
	}
	if prev, err := c.Bind(ctx, phone, self); err != nil || prev != "" {
		t.Fatalf("first Bind = %q, %v; want no previous holder", prev, err)
	}
	if prev, err := c.Bind(ctx, phone, self); err != nil || prev != self {
		t.Fatalf("Bind of a resource this node holds = %q, %v; want %q", prev, err, self)
	}
	for _, full := range []string{"alice@example.org/tablet", "alice@example.org/laptop"} {
		if _, err := c.Bind(ctx, mustJID(t, full), self); err != nil {
			t.Fatalf("Bind(%s): %v", full, err)
		}
	}
	if _, err := c.Bind(ctx, mustJID(t, "alice@example.org"), self); err == nil {
		t.Error("binding a bare JID succeeded")
	}
	if _, err := c.Bind(ctx, mustJID(t, "bob@example.org/phone"), self); err != nil {
		t.Fatal(err)
	}

	resources := func(of string) []string {
		t.Helper()
		got, err := c.Resources(ctx, mustJID(t, of))
		if err != nil {
			t.Fatalf("Resources(%s): %v", of, err)
		}
		var out []string
		for _, e := range got {
			out = append(out, fmt.Sprintf("%s@%s", e.Full, e.Node))
		}
		return out
	}
	// Any JID of the user lists its sessions, sorted by resource.
	want := []string{"alice@example.org/laptop@solo", "alice@example.org/phone@solo", "alice@example.org/tablet@solo"}
	for range 5 { // an order that held by chance would not hold five times
		if got := resources("alice@example.org/whatever"); !slices.Equal(got, want) {
			t.Fatalf("Resources(alice) = %q, want %q", got, want)
		}
	}

	// An unbind from a node that does not hold the session leaves it.
	if err := c.Unbind(ctx, phone, "other"); err != nil {
		t.Fatalf("Unbind by another node: %v", err)
	}
	if got := resources("alice@example.org"); len(got) != 3 {
		t.Fatalf("after an unbind by another node: %q, want all three", got)
	}
	if err := c.Unbind(ctx, phone, self); err != nil {
		t.Fatal(err)
	}
	if err := c.Unbind(ctx, phone, self); err != nil {
		t.Errorf("Unbind of a resource no longer bound: %v", err)
	}
	if err := c.Unbind(ctx, mustJID(t, "nobody@example.org/x"), self); err != nil {
		t.Errorf("Unbind of a user never bound: %v", err)
	}
	if got := resources("alice@example.org"); !slices.Equal(got, []string{"alice@example.org/laptop@solo", "alice@example.org/tablet@solo"}) {
		t.Errorf("after Unbind(phone): %q, want laptop and tablet", got)
	}
	for _, full := range []jid.JID{laptop, tablet} {
		if err := c.Unbind(ctx, full, self); err != nil {
			t.Fatal(err)
		}
	}
	if got := resources("alice@example.org"); len(got) != 0 {
		t.Errorf("after every session ended: %q, want none", got)
	}
	if got := resources("bob@example.org"); !slices.Equal(got, []string{"bob@example.org/phone@solo"}) {
		t.Errorf("Resources(bob) = %q, want his phone alone", got)
	}
}

func testContractOwners(t *testing.T, newNode nodeFactory) {
	ctx := t.Context()
	c := started(t, newNode, nil)
	self := c.Self()
	phone := mustJID(t, "alice@example.org/phone")
	if got, err := c.Owners(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Owners(none) = %v, %v; want none", got, err)
	}
	if _, err := c.Bind(ctx, phone, self); err != nil {
		t.Fatal(err)
	}
	asked := []jid.JID{
		mustJID(t, "alice@example.org/laptop"), phone, mustJID(t, "alice@example.org"),
		mustJID(t, "bob@example.org/phone"), phone,
	}
	got, err := c.Owners(ctx, asked)
	if err != nil {
		t.Fatalf("Owners: %v", err)
	}
	if want := []NodeID{"", self, "", "", self}; !slices.Equal(got, want) {
		t.Errorf("Owners(%v) = %q, want %q", asked, got, want)
	}
	if err := c.Unbind(ctx, phone, self); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Owners(ctx, []jid.JID{phone}); err != nil || !slices.Equal(got, []NodeID{""}) {
		t.Errorf("Owners after Unbind = %q, %v; want none", got, err)
	}
}

// A node may send to itself: the payloads reach its handler, in order,
// from itself.
func testContractSendToSelf(t *testing.T, newNode nodeFactory) {
	ctx := t.Context()
	box := newInbox()
	c := started(t, newNode, box.handle)
	const n = 50
	for i := range n {
		if err := c.Send(ctx, c.Self(), fmt.Appendf(nil, "p%d", i)); err != nil {
			t.Fatalf("Send %d to self: %v", i, err)
		}
	}
	for range n {
		recv(t, box.ch, "a payload sent to self")
	}
	got, from := box.snapshot()
	for i := range n {
		if want := fmt.Sprint("p", i); got[i] != want || from[i] != c.Self() {
			t.Fatalf("payload %d = %q from %q, want %q from %q", i, got[i], from[i], want, c.Self())
		}
	}
	select {
	case p := <-box.ch:
		t.Errorf("payload %q delivered twice", p)
	default:
	}
}

func testContractSendToUnknownNode(t *testing.T, newNode nodeFactory) {
	box := newInbox()
	c := started(t, newNode, box.handle)
	if err := c.Send(t.Context(), "nobody", []byte("x")); !errors.Is(err, ErrNodeGone) {
		t.Errorf("Send to a node that never joined = %v, want ErrNodeGone", err)
	}
	if got, _ := box.snapshot(); len(got) != 0 {
		t.Errorf("this node's handler took %q sent to another node", got)
	}
}

// Alone in its cluster, a node hosts every room itself, and never takes
// one over from another.
func testContractPlace(t *testing.T, newNode nodeFactory) {
	ctx := t.Context()
	c := started(t, newNode, nil)
	for _, key := range []string{"room@conference.example.org", "room@conference.example.org", "other@conference.example.org"} {
		host, moved, err := c.Place(ctx, key)
		if err != nil || host != c.Self() || moved {
			t.Errorf("Place(%s) = %q, %v, %v; want this node, not moved", key, host, moved, err)
		}
	}
	if err := c.Release(ctx, "room@conference.example.org"); err != nil {
		t.Errorf("Release: %v", err)
	}
	if err := c.Release(ctx, "room@conference.example.org"); err != nil {
		t.Errorf("Release of a room no longer placed: %v", err)
	}
	if err := c.Release(ctx, "never@conference.example.org"); err != nil {
		t.Errorf("Release of a room never placed: %v", err)
	}
	if host, moved, err := c.Place(ctx, "room@conference.example.org"); err != nil || host != c.Self() || moved {
		t.Errorf("Place after Release = %q, %v, %v; want this node, not moved", host, moved, err)
	}
}
