package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"mellium.im/xmpp/jid"
)

// logBuffer collects a node's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), sub)
}

// An attacker who can write to Redis but does not know the cluster secret
// cannot read what nodes send each other, nor make a node act: entries written straight into its stream with
// no signature, a wrong one, a forged sender, a changed payload, another
// secret's, one signed for another node, one too old or a replayed copy
// of a real one are dropped, counted and logged (once per reason per ten
// seconds), while the real payloads around them still arrive.
func TestForgedPayloadsAreIgnored(t *testing.T) {
	const holdMsg = "<message><body>hold: what only the nodes may read</body></message>"
	h := newHarness(t)
	ctx := context.Background()
	box := newInbox()
	held, release := make(chan struct{}), make(chan struct{})
	var logs logBuffer
	cb := h.config("b")
	cb.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	var first sync.Once
	cb.Handler = func(ctx context.Context, from NodeID, p []byte) error {
		if string(p) == holdMsg {
			first.Do(func() {
				close(held)
				<-release
			})
		}
		return box.handle(ctx, from, p)
	}
	a, b := h.start(h.config("a")), h.start(cb)
	boxC := newInbox()
	cc := h.config("c")
	cc.Handler = boxC.handle
	c := h.start(cc)

	// A real payload, captured while b holds it unacknowledged.
	if err := a.Send(ctx, "b", []byte(holdMsg)); err != nil {
		t.Fatal(err)
	}
	<-held
	streamB, streamC := h.prefix+"stream:b", h.prefix+"stream:c"
	msgs, err := h.admin.XRange(ctx, streamB, "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("capture: %v %v", msgs, err)
	}
	real := msgs[0].Values
	if p, _ := real["p"].(string); strings.Contains(p, "only the nodes") || len(p) != len(holdMsg) {
		t.Errorf("the payload stored in Redis is %q, want %q encrypted", p, holdMsg)
	}
	close(release)
	if p := recv(t, box.ch, "b taking the real payload"); p != holdMsg {
		t.Fatalf("b took %q", p)
	}

	with := func(changes map[string]any) map[string]any {
		v := map[string]any{}
		for k, x := range real {
			v[k] = x
		}
		for k, x := range changes {
			v[k] = x
		}
		return v
	}
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	junk := make([]byte, authLen)
	rand.Read(junk)
	other := make([]byte, MinSecretLen)
	rand.Read(other)
	otherSign, _ := newSigner(other, h.prefix)
	sign, _ := newSigner(h.secret, h.prefix)
	signed := func(s signer, to NodeID, stamp int64, p string) map[string]any {
		e := envelope{from: "a", stamp: stamp, boot: 7, seq: 1}
		sealed, auth := s.sealPayload(to, e, []byte(p))
		return map[string]any{"f": "a", "t": strconv.FormatInt(stamp, 10), "p": sealed, "a": auth}
	}
	forged := []map[string]any{
		real, // replayed
		{"f": "a", "t": now, "p": "no signature"},
		{"f": "a", "t": now, "p": "junk signature", "a": junk},
		with(map[string]any{"f": "c"}),        // claims another sender
		with(map[string]any{"p": "tampered"}), // changes the payload
		with(map[string]any{"t": now}),        // changes the send time
		signed(otherSign, "b", time.Now().UnixNano(), "another secret"),
		signed(sign, "c", time.Now().UnixNano(), "signed for c"),
		signed(sign, "b", time.Now().Add(-time.Hour).UnixNano(), "an hour old"),
		{"p": "nothing else"},
	}
	for _, v := range forged {
		if err := h.admin.XAdd(ctx, &redis.XAddArgs{Stream: streamB, Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The real one copied into c's stream is not c's either.
	if err := h.admin.XAdd(ctx, &redis.XAddArgs{Stream: streamC, Values: real}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ctx, "b", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ctx, "c", []byte("to c")); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, box.ch, "b taking the next real payload"); p != "after" {
		t.Fatalf("b took %q after the forgeries, want only the real payloads", p)
	}
	if p := recv(t, boxC.ch, "c taking its real payload"); p != "to c" {
		t.Fatalf("c took %q, want only the real payload", p)
	}
	if got, _ := box.snapshot(); !slices.Equal(got, []string{holdMsg, "after"}) {
		t.Errorf("b took %q", got)
	}
	for reason, want := range map[string]float64{RejectSignature: 8, RejectReplay: 1, RejectStale: 1} {
		if got := b.Rejects().Count(reason); got != want {
			t.Errorf("b counted %v refusals for %s, want %v", got, reason, want)
		}
	}
	if got := c.Rejects().Count(RejectSignature); got != 1 {
		t.Errorf("c counted %v bad signatures, want 1", got)
	}
	for reason, want := range map[string]int{RejectSignature: 1, RejectReplay: 1, RejectStale: 1} {
		if got := logs.count("reason=" + reason); got != want {
			t.Errorf("b logged %d lines for %s, want %d (rate-limited)", got, reason, want)
		}
	}
	waitFor(t, 5*time.Second, "b's stream to be emptied of the forgeries", func() bool {
		n, _ := h.admin.XLen(ctx, streamB).Result()
		return n == 0
	})
}

// A node whose secret differs is not believed: its payloads are dropped,
// its record does not make it a live node, its directory entries do not
// count; and it believes none of the others.
func TestNodeWithAnotherSecretIsNotBelieved(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	box := newInbox()
	cb := h.config("b")
	cb.Handler = box.handle
	joined := make(chan NodeID, 8)
	cb.NodeJoined = func(ctx context.Context, id NodeID) { joined <- id }
	a, b := h.start(h.config("a")), h.start(cb)
	cm := h.config("mallory")
	cm.Secret = make([]byte, MinSecretLen)
	rand.Read(cm.Secret)
	m := h.start(cm)

	if err := m.Send(ctx, "b", []byte("believe me")); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ctx, "b", []byte("from a")); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, box.ch, "b taking a's payload"); p != "from a" {
		t.Fatalf("b took %q", p)
	}
	waitFor(t, 5*time.Second, "b to refuse mallory's record", func() bool {
		return b.Rejects().Count(RejectNodeRecord) > 0
	})
	if got := b.Rejects().Count(RejectSignature); got != 1 {
		t.Errorf("b counted %v bad signatures, want 1", got)
	}
	nodes, err := b.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].ID != "a" || nodes[1].ID != "b" {
		t.Errorf("b lists %v %v, want a and b", nodes, err)
	}
	if _, err := b.Node(ctx, "mallory"); err == nil {
		t.Error("b believes mallory's record")
	}
	if ids, err := m.Nodes(ctx); err != nil || len(ids) != 1 || ids[0].ID != "mallory" {
		t.Errorf("mallory lists %v %v, want only itself", ids, err)
	}
	select {
	case id := <-joined:
		t.Errorf("b was told %s joined", id)
	default:
	}

	// Mallory binds alice's phone: b does not believe it, and a's login
	// with that JID replaces nothing.
	phone := mustJID(t, "alice@example.org/phone")
	if _, err := m.Bind(ctx, phone, "mallory"); err != nil {
		t.Fatal(err)
	}
	if e, err := b.Resources(ctx, phone.Bare()); err != nil || len(e) != 0 {
		t.Errorf("b lists alice's sessions as %v %v", e, err)
	}
	if o, err := b.Owners(ctx, []jid.JID{phone}); err != nil || o[0] != "" {
		t.Errorf("b says alice's phone is served by %v %v", o, err)
	}
	if prev, err := a.Bind(ctx, phone, "a"); err != nil || prev != "" {
		t.Errorf("a's bind replaced %q %v, want nothing", prev, err)
	}
	if o, err := b.Owners(ctx, []jid.JID{phone}); err != nil || o[0] != "a" {
		t.Errorf("after a's login b says alice's phone is served by %v %v, want a", o, err)
	}
}

// Directory values and node records written straight into Redis, or
// copied from one key to another, or too old, are not believed.
func TestForgedDirectoryAndNodeRecords(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ca := h.config("a")
	joined := make(chan NodeID, 8)
	ca.NodeJoined = func(ctx context.Context, id NodeID) { joined <- id }
	a := h.start(ca)
	b := h.start(h.config("b"))
	recv(t, joined, "a seeing b join")

	carol := mustJID(t, "carol@example.org/desk")
	if _, err := b.Bind(ctx, carol, "b"); err != nil {
		t.Fatal(err)
	}
	carolEntry, err := h.admin.HGet(ctx, h.prefix+"sess:carol@example.org", "desk").Result()
	if err != nil {
		t.Fatal(err)
	}
	bob := mustJID(t, "bob@example.org/phone")
	for _, v := range []string{"b", "b 00", carolEntry} {
		if err := h.admin.HSet(ctx, h.prefix+"sess:bob@example.org", "phone", v).Err(); err != nil {
			t.Fatal(err)
		}
		if e, err := a.Resources(ctx, bob.Bare()); err != nil || len(e) != 0 {
			t.Errorf("directory value %q: a lists %v %v", v, e, err)
		}
		if o, err := a.Owners(ctx, []jid.JID{bob, carol}); err != nil || o[0] != "" || o[1] != "b" {
			t.Errorf("directory value %q: owners %v %v, want none and b", v, o, err)
		}
	}
	if got := a.Rejects().Count(RejectSessionEntry); got != 6 {
		t.Errorf("a counted %v bad directory values, want 6", got)
	}

	recB, err := h.admin.Get(ctx, h.prefix+"node:b").Result()
	if err != nil {
		t.Fatal(err)
	}
	sign, _ := newSigner(h.secret, h.prefix)
	old, err := sign.sealRecord(Node{ID: "old"}, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for id, v := range map[string]string{
		"ghost":  `{"id":"ghost","c2s":"203.0.113.66:5222","media":"203.0.113.66:7882"}`,
		"copied": recB,
		"old":    string(old),
	} {
		if err := h.admin.Set(ctx, h.prefix+"node:"+id, v, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if err := h.admin.SAdd(ctx, h.prefix+"nodes", id).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "a to refuse the three forged records in a sweep", func() bool {
		return a.Rejects().Count(RejectNodeRecord) >= 3
	})
	nodes, err := a.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Errorf("a lists %v %v, want a and b only", nodes, err)
	}
	for _, id := range []NodeID{"ghost", "copied", "old"} {
		if _, err := a.Node(ctx, id); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Node(%s) = %v, want it refused", id, err)
		}
	}
	select {
	case id := <-joined:
		t.Errorf("a was told %s joined", id)
	default:
	}
}

func TestReplayGuard(t *testing.T) {
	now := time.Now()
	stamp := now.UnixNano()
	g := newReplayGuard(time.Minute)
	take := func(from NodeID, boot, seq uint64) bool {
		if g.seen(from, boot, seq) {
			return false
		}
		g.mark(now, from, boot, seq, stamp)
		return true
	}
	for i, tc := range []struct {
		from      NodeID
		boot, seq uint64
		want      bool
	}{
		{"a", 1, 5, true},
		{"a", 1, 5, false}, // again
		{"a", 1, 3, true},  // overtaken, not yet seen
		{"a", 1, 3, false},
		{"b", 1, 3, true}, // another sender
		{"a", 2, 3, true}, // another boot
		{"a", 1, 200, true},
		{"a", 1, 4, true},
		{"a", 1, 5, false},
		{"a", 1, replayWindow + 300, true},
		{"a", 1, 299, false}, // too far behind to tell: refused
		{"a", 1, 301, true},
		{"a", 1, 200, false},
	} {
		if got := take(tc.from, tc.boot, tc.seq); got != tc.want {
			t.Errorf("%d: take(%s, %d, %d) = %v, want %v", i, tc.from, tc.boot, tc.seq, got, tc.want)
		}
	}
	// A boot nothing fresh came from for longer than the window is
	// forgotten; its payloads are refused as stale by then.
	later := now.Add(2 * time.Minute)
	g.prune(later)
	if len(g.senders) != 0 {
		t.Errorf("after the window: %d senders remembered", len(g.senders))
	}
	if g.fresh(later, stamp) {
		t.Error("a payload older than the window counts as fresh")
	}
	if !g.fresh(later, later.Add(30*time.Second).UnixNano()) {
		t.Error("a payload from a clock 30s ahead is refused")
	}
}

// When a node binds its sessions again (after its record vanished, as
// after an outage), a forged entry naming another live node does not end
// its session: only a signed one, a real newer login, does.
func TestForgedEntryDoesNotEndASession(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	lost := make(chan jid.JID, 4)
	ca := h.config("a")
	ca.SessionLost = func(ctx context.Context, full jid.JID) { lost <- full }
	a := h.start(ca)
	h.start(h.config("b"))
	phone, desk := mustJID(t, "alice@example.org/phone"), mustJID(t, "alice@example.org/desk")
	for _, j := range []jid.JID{phone, desk} {
		if _, err := a.Bind(ctx, j, "a"); err != nil {
			t.Fatal(err)
		}
	}
	sign, _ := newSigner(h.secret, h.prefix)
	key := h.prefix + "sess:alice@example.org"
	if err := h.admin.HSet(ctx, key, "phone", "b forged", "desk", sign.sealSession(desk.String(), "b")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := h.admin.Del(ctx, h.prefix+"node:a").Err(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, lost, "a ending the session a signed entry says b took"); !got.Equal(desk) {
		t.Fatalf("a ended %s, want only %s", got, desk)
	}
	waitFor(t, 5*time.Second, "a's phone bound again over the forgery", func() bool {
		o, err := a.Owners(ctx, []jid.JID{phone})
		return err == nil && o[0] == "a"
	})
	select {
	case j := <-lost:
		t.Errorf("a ended %s on a forged entry", j)
	default:
	}
}
