package link

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/stanza"
)

// hold keeps l's outbox from sending, as if a batch were being sent,
// until the returned function is called: announcements queue up.
func hold(l *Link) (release func()) {
	c := make(chan struct{})
	l.out.mu.Lock()
	l.out.inflight = c
	l.out.mu.Unlock()
	return func() {
		l.out.mu.Lock()
		l.out.inflight = nil
		l.out.mu.Unlock()
		close(c)
	}
}

func (h *hub) sentOf(kind byte) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent[kind]
}

// Logins on one node while a batch is being sent reach the others in
// one payload, each session once with its latest state, checked against
// the directory with one look-up; and a free-running burst from several
// goroutines is mirrored whole, in fewer payloads than changes.
func TestAnnouncementsBatched(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a, b := ns["a"], ns["b"]
	const n = maxEntries
	release := hold(a.link)
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				s := a.login(fmt.Sprintf("u%d@x/r", i))
				a.link.SessionChanged(s.JID(), chat.ResourceState{})
				a.link.SessionChanged(s.JID(), chat.ResourceState{Available: true, Priority: i % 100})
			}
		})
	}
	wg.Wait()
	h.mu.Lock()
	h.lookups = 0
	h.mu.Unlock()
	release()
	h.settle(t)
	h.mu.Lock()
	lookups := h.lookups
	h.mu.Unlock()
	if got := h.sentOf(kindStates); got != 1 {
		t.Errorf("%d logins with two changes each while a batch was being sent took %d payloads, want 1", n, got)
	}
	if lookups != 1 {
		t.Errorf("%d directory look-ups for one payload", lookups)
	}
	if len(b.chat.remote) != n {
		t.Fatalf("b mirrors %d sessions, want %d", len(b.chat.remote), n)
	}
	for i := range n {
		st := b.chat.remote[fmt.Sprintf("u%d@x/r", i)]
		if !st.Available || st.Priority != i%100 {
			t.Fatalf("b's mirror of u%d: %+v, want the latest state", i, st)
		}
	}

	// Free-running: whatever the batches, every session arrives with its
	// latest state.
	const m = 2000
	before := h.sentOf(kindStates)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < m; i += workers {
				s := a.login(fmt.Sprintf("v%d@x/r", i))
				a.link.SessionChanged(s.JID(), chat.ResourceState{})
				a.link.SessionChanged(s.JID(), chat.ResourceState{Available: true, Priority: i % 100})
			}
		})
	}
	wg.Wait()
	h.settle(t)
	t.Logf("%d logins, %d changes, from %d goroutines: %d payloads", m, 2*m, workers, h.sentOf(kindStates)-before)
	if got := h.sentOf(kindStates) - before; got > 2*m {
		t.Errorf("%d payloads for %d changes", got, 2*m)
	}
	for i := range m {
		st := b.chat.remote[fmt.Sprintf("v%d@x/r", i)]
		if !st.Available || st.Priority != i%100 {
			t.Fatalf("b's mirror of v%d: %+v, want the latest state", i, st)
		}
	}
	if got := b.node.refused(); len(got) != 0 {
		t.Fatalf("b refused %q", got)
	}
}

// An idle link sends a lone announcement at once, without waiting for
// the flusher.
func TestIdleLinkSendsAtOnce(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a := ns["a"]
	s := a.login("amy@x/r")
	a.link.SessionChanged(s.JID(), chat.ResourceState{Available: true})
	if got := h.sentOf(kindStates); got != 1 {
		t.Fatalf("%d kindStates payloads sent right after the announcement on an idle link, want 1", got)
	}
}

// Changes of one session queued together travel once, the latest; its
// end replaces a change still queued, and a new login with the same full
// JID after that end stays after it, in the same payload and across
// flushes.
func TestBatchKeepsOrderPerSession(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a, b := ns["a"], ns["b"]
	x := a.login("xan@x/r")
	a.link.SessionChanged(x.JID(), chat.ResourceState{Priority: 1})
	h.settle(t)
	if st, ok := b.chat.remote["xan@x/r"]; !ok || st.Priority != 1 {
		t.Fatalf("b's mirror of xan: %+v, %v", st, ok)
	}

	before := h.sentOf(kindStates)
	release := hold(a.link)
	a.link.SessionChanged(x.JID(), chat.ResourceState{Priority: 2})
	a.link.SessionEnded(x.JID()) // replaces the change to 2
	a.link.Closed(context.Background(), x)
	x2 := a.login("xan@x/r")
	a.link.SessionChanged(x2.JID(), chat.ResourceState{Priority: 3})
	a.link.SessionChanged(x2.JID(), chat.ResourceState{Priority: 4}) // replaces 3
	y := a.login("yul@x/r")
	a.link.SessionChanged(y.JID(), chat.ResourceState{Available: true})
	a.link.SessionEnded(y.JID())
	a.link.out.mu.Lock()
	var queued []string
	for _, c := range a.link.out.entries {
		queued = append(queued, fmt.Sprintf("%s %v", c.full, c.gone))
	}
	a.link.out.mu.Unlock()
	if want := []string{"xan@x/r true", "xan@x/r false", "yul@x/r true"}; !slices.Equal(queued, want) {
		t.Fatalf("outbox holds %q, want %q", queued, want)
	}
	release()
	h.settle(t)
	if got := h.sentOf(kindStates) - before; got != 1 {
		t.Fatalf("%d payloads for one batch", got)
	}
	if st, ok := b.chat.remote["xan@x/r"]; !ok || st.Priority != 4 {
		t.Fatalf("b's mirror of xan after end and new login: %+v, %v; want priority 4", st, ok)
	}
	if !slices.Contains(b.chat.dropped, "xan@x/r false") {
		t.Fatalf("b dropped %q, want xan's end", b.chat.dropped)
	}
	if _, ok := b.chat.remote["yul@x/r"]; ok {
		t.Fatal("yul, who ended, is mirrored")
	}

	// Across flushes: a state, sent; then its end in the next batch.
	release = hold(a.link)
	a.link.SessionEnded(x2.JID())
	release()
	a.link.flush(context.Background())
	h.settle(t)
	if _, ok := b.chat.remote["xan@x/r"]; ok {
		t.Fatal("xan is mirrored after his end")
	}
	if got := b.node.refused(); len(got) != 0 {
		t.Fatalf("b refused %q", got)
	}
}

// Any other payload waits for the announcements queued before it: a
// message for a session that just bound reaches the other node after the
// session's state, and so does a kick.
func TestPayloadsDoNotOvertakeAnnouncements(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a, b := ns["a"], ns["b"]
	alice := a.login("alice@x/pc")
	a.link.SessionChanged(alice.JID(), chat.ResourceState{Available: true})
	bob := b.login("bob@x/phone")
	b.link.SessionChanged(bob.JID(), chat.ResourceState{Available: true})
	h.settle(t)
	h.mu.Lock()
	h.trace = nil
	h.mu.Unlock()

	// Each announcement waits in the outbox (a batch is being sent), and
	// the next payload comes when nothing is being sent any more.
	release := hold(b.link)
	ben := b.login("ben@x/r")
	b.link.SessionChanged(ben.JID(), chat.ResourceState{Available: true})
	release()
	msg := stanza.New(stanza.NSClient, "message").SetAttr("to", "alice@x/pc").SetAttr("from", "ben@x/r")
	if err := b.link.remotes["alice@x/pc"].Send(msg); err != nil {
		t.Fatal(err)
	}
	release = hold(b.link)
	b.link.SessionChanged(ben.JID(), chat.ResourceState{Available: true, Priority: 2})
	release()
	b.link.Bound(context.Background(), b.session("alice@x/pc")) // kicks a's alice
	h.settle(t)
	h.mu.Lock()
	trace := slices.Clone(h.trace)
	h.mu.Unlock()
	want := []string{
		fmt.Sprintf("b>a %d", kindStates), fmt.Sprintf("b>a %d", kindDeliver),
		fmt.Sprintf("b>a %d", kindStates), fmt.Sprintf("b>a %d", kindKick),
	}
	if !slices.Equal(trace, want) {
		t.Fatalf("b sent %q, want %q", trace, want)
	}
	if got := alice.received(); len(got) != 1 || !strings.Contains(got[0], "ben@x/r") {
		t.Fatalf("alice got %q", got)
	}
	if alice.Stopped() != "conflict" {
		t.Fatalf("alice's session stopped with %q", alice.Stopped())
	}
}

// A batch is checked entry by entry against the directory, in one
// look-up: an entry for a session the sender does not serve is refused
// and the rest applies, ends included.
func TestForgedEntryInBatchRefusedAlone(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b", "c")
	a, b, c := ns["a"], ns["b"], ns["c"]
	b.login("bob@x/phone")
	c.login("dave@x/d")
	c.login("dora@x/d")
	cy := c.login("cy@x/d")
	c.link.SessionChanged(cy.JID(), chat.ResourceState{})
	h.settle(t)
	if _, ok := a.chat.remote["cy@x/d"]; !ok {
		t.Fatal("cy not mirrored")
	}
	h.mu.Lock()
	h.lookups = 0
	h.mu.Unlock()
	p := batchPayload([]change{
		stateChange("dave@x/d", chat.ResourceState{Available: true}),
		stateChange("bob@x/phone", chat.ResourceState{Available: true, Priority: 9}),
		goneChange("cy@x/d"),
		stateChange("dora@x/d", chat.ResourceState{Priority: 3}),
		goneChange("bob@x/phone"), // only ever c's own: nothing of b's goes
	})
	if err := c.node.Send(context.Background(), "a", p); err != nil {
		t.Fatal(err)
	}
	h.settle(t)
	if _, ok := a.chat.remote["bob@x/phone"]; ok {
		t.Fatal("a mirrored bob from a node that does not serve him")
	}
	if st, ok := a.chat.remote["dave@x/d"]; !ok || !st.Available {
		t.Fatalf("a's mirror of dave: %+v, %v", st, ok)
	}
	if st, ok := a.chat.remote["dora@x/d"]; !ok || st.Priority != 3 {
		t.Fatalf("a's mirror of dora: %+v, %v", st, ok)
	}
	if _, ok := a.chat.remote["cy@x/d"]; ok {
		t.Fatal("cy's end in the batch was not applied")
	}
	if want := []string{"not_owner state bob@x/phone"}; !slices.Equal(a.node.refused(), want) {
		t.Fatalf("a refused %q, want %q", a.node.refused(), want)
	}
	h.mu.Lock()
	lookups := h.lookups
	h.mu.Unlock()
	if lookups != 1 {
		t.Fatalf("%d directory look-ups for one payload, want 1", lookups)
	}

	// A batch that ends a session and then announces it again is checked
	// in the directory again, not believed because the mirror held it:
	// here b took dave's JID meanwhile.
	b.login("dave@x/d")
	forged := batchPayload([]change{goneChange("dave@x/d"), stateChange("dave@x/d", chat.ResourceState{Priority: 5})})
	if err := c.node.Send(context.Background(), "a", forged); err != nil {
		t.Fatal(err)
	}
	h.settle(t)
	if _, ok := a.chat.remote["dave@x/d"]; ok {
		t.Fatal("a mirrored dave from c after b took his JID")
	}
}

// A payload with more entries than maxEntries is refused whole, and
// changes nothing.
func TestBatchOverCapRefused(t *testing.T) {
	var cs []change
	var es []entry
	for i := range maxEntries + 1 {
		cs = append(cs, stateChange(fmt.Sprintf("u%d@x/r", i), chat.ResourceState{}))
		es = append(es, entry{full: fmt.Sprintf("u%d@x/r", i)})
	}
	if _, err := decodeBatch(&decoder{b: batchPayload(cs)[1:]}); !errors.Is(err, errTooMany) {
		t.Fatalf("decoding %d entries: %v, want errTooMany", len(cs), err)
	}
	if _, _, err := decodeStates(&decoder{b: states(0, es)[1:]}); !errors.Is(err, errTooMany) {
		t.Fatalf("decoding a snapshot chunk of %d entries: %v, want errTooMany", len(es), err)
	}
	if us, err := decodeBatch(&decoder{b: batchPayload(cs[:maxEntries])[1:]}); err != nil || len(us) != maxEntries {
		t.Fatalf("decoding %d entries: %d, %v", maxEntries, len(us), err)
	}

	h := newHub()
	ns := startNodes(t, h, "a", "c")
	a, c := ns["a"], ns["c"]
	for i := range maxEntries + 1 {
		c.login(fmt.Sprintf("u%d@x/r", i))
	}
	if err := c.node.Send(context.Background(), "a", batchPayload(cs)); err != nil {
		t.Fatal(err)
	}
	h.settle(t)
	if len(a.chat.remote) != 0 {
		t.Fatalf("a mirrored %d sessions from an oversized payload", len(a.chat.remote))
	}
}

func TestBatchRoundTrip(t *testing.T) {
	p := stanza.New(stanza.NSClient, "presence").SetAttr("from", "a@x/r")
	in := []change{
		stateChange("a@x/r", chat.ResourceState{Available: true, Priority: -3, Presence: p, Notify: []string{"n+notify"}}),
		goneChange("b@x/s"),
		stateChange("b@x/s", chat.ResourceState{Carbons: true}),
	}
	b := batchPayload(in)
	us, err := decodeBatch(&decoder{b: b[1:]})
	if err != nil || len(us) != 3 {
		t.Fatalf("decode: %v, %d", err, len(us))
	}
	if us[0].full != "a@x/r" || us[0].gone || us[0].st.Priority != -3 || us[0].st.Presence.String() != p.String() ||
		!slices.Equal(us[0].st.Notify, []string{"n+notify"}) || !us[1].gone || us[1].full != "b@x/s" || us[2].gone || !us[2].st.Carbons {
		t.Fatalf("decoded %+v", us)
	}
	for i := 1; i < len(b); i++ {
		if _, err := decodeBatch(&decoder{b: b[1:i]}); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
	bad := slices.Clone(b)
	bad[2] = 9 // the first entry's op
	if _, err := decodeBatch(&decoder{b: bad[1:]}); !errors.Is(err, errOp) {
		t.Fatalf("unknown op: %v", err)
	}
}

// The outbox holds at most one payload's worth: a caller that fills it
// waits for the batch being sent, then sends what is queued.
func TestOutboxBounded(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a, b := ns["a"], ns["b"]
	const n = maxEntries + 1
	for i := range n {
		a.login(fmt.Sprintf("u%d@x/r", i))
	}
	release := hold(a.link)
	for i := range maxEntries {
		a.link.SessionChanged(jid.MustParse(fmt.Sprintf("u%d@x/r", i)), chat.ResourceState{})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.link.SessionChanged(jid.MustParse(fmt.Sprintf("u%d@x/r", maxEntries)), chat.ResourceState{})
	}()
	a.link.out.mu.Lock()
	queued, size := len(a.link.out.entries), a.link.out.size
	a.link.out.mu.Unlock()
	if queued != maxEntries || size > maxBatchBytes {
		t.Fatalf("outbox holds %d entries, %d bytes; want %d", queued, size, maxEntries)
	}
	select {
	case <-done:
		t.Fatal("an announcement into a full outbox returned while a batch was being sent")
	default:
	}
	release()
	<-done
	h.settle(t)
	if got := h.sentOf(kindStates); got != 2 {
		t.Fatalf("%d payloads for %d announcements, want 2", got, n)
	}
	if len(b.chat.remote) != n {
		t.Fatalf("b mirrors %d sessions, want %d", len(b.chat.remote), n)
	}
}

// A send with nothing queued before it pays two atomic loads for the
// ordering, no lock and no allocation.
func TestFlushWithNothingQueuedAllocatesNothing(t *testing.T) {
	h := newHub()
	ns := startNodes(t, h, "a", "b")
	a := ns["a"]
	s := a.login("amy@x/r")
	a.link.SessionChanged(s.JID(), chat.ResourceState{})
	h.settle(t)
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { a.link.flush(ctx) }); n != 0 {
		t.Fatalf("flush with nothing queued: %v allocations", n)
	}
}
