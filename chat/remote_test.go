package chat

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// A session another node serves, mirrored with SetRemote, is routed to
// like a local one; dropping it with announce tells the local contacts.
func TestRemoteSessions(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	alice := h.online("alice@localhost/desk", 0)

	// bob is online on another node, with priority 3 and a status.
	bob := newFakeSession("bob@localhost/phone")
	pres := stanza.New(stanza.NSClient, "presence").SetAttr("from", "bob@localhost/phone")
	pres.Append(stanza.New(stanza.NSClient, "status").SetText("elsewhere"))
	h.svc.SetRemote(bob, ResourceState{Available: true, Priority: 3, Presence: pres, Carbons: true})

	// A message to bob's bare JID reaches the mirrored session.
	h.send(alice, `<message type='chat' to='bob@localhost'><body>hi</body></message>`)
	expect(t, "bob (remote)", bob, "message type=chat from=alice@localhost/desk to=bob@localhost body=hi")

	// A new login of alice's is answered with bob's presence from the mirror.
	laptop := h.bind("alice@localhost/laptop")
	h.send(laptop, `<presence/>`)
	got := laptop.take()
	if !slices.Contains(got, "presence from=bob@localhost/phone to=alice@localhost/laptop status=elsewhere") {
		t.Fatalf("laptop's probe answers: %q", got)
	}
	bob.take() // alice's new presence reached bob too
	alice.take()

	// The remote node dies: alice's sessions hear bob go; bob's mirror
	// gets nothing more, and a message for him waits offline.
	h.svc.DropRemote(context.Background(), bob, true)
	expect(t, "alice after bob's node died", alice, "presence type=unavailable from=bob@localhost/phone to=alice@localhost")
	h.send(alice, `<message type='chat' to='bob@localhost'><body>later</body></message>`)
	if len(bob.take()) != 0 || h.st.Queued("bob") != 1 {
		t.Fatalf("after the drop: bob's mirror still routed to, or not queued offline (%d)", h.st.Queued("bob"))
	}
}

// publisherFunc is a Publisher that calls itself with each session
// change (gone: the session ended).
type publisherFunc func(full jid.JID, st ResourceState, gone bool)

func (f publisherFunc) Bound(context.Context, Session)                {}
func (f publisherFunc) SessionChanged(full jid.JID, st ResourceState) { f(full, st, false) }
func (f publisherFunc) SessionEnded(full jid.JID)                     { f(full, ResourceState{}, true) }
func (f publisherFunc) Closed(context.Context, Session)               {}
func (f publisherFunc) BlocklistChanged(string)                       {}

// The publisher hears of local sessions' changes, and only changes;
// LocalStates lists local sessions without the mirrored ones.
func TestPublishAndLocalStates(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	h := newHarness(t, Config{}, "alice", "bob")
	h.svc.SetPublisher(publisherFunc(func(full jid.JID, st ResourceState, gone bool) {
		mu.Lock()
		defer mu.Unlock()
		s := full.String()
		switch {
		case gone:
			s += " gone"
		case st.Available:
			s += " available"
		default:
			s += " bound"
		}
		if st.Interested {
			s += " interested"
		}
		seen = append(seen, s)
	}))
	a := h.online("alice@localhost/desk", 0)
	h.send(a, `<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`) // no change: no report
	h.svc.SetRemote(newFakeSession("bob@localhost/phone"), ResourceState{Available: true})
	var local []string
	h.svc.LocalStates(func(full jid.JID, st ResourceState) { local = append(local, full.String()) })
	h.close(a)
	want := []string{"alice@localhost/desk bound", "alice@localhost/desk bound interested",
		"alice@localhost/desk available interested", "alice@localhost/desk gone"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, want) {
		t.Errorf("published %q, want %q", seen, want)
	}
	if !slices.Equal(local, []string{"alice@localhost/desk"}) {
		t.Errorf("LocalStates listed %q", local)
	}
}

// Undeliverable keeps a message with content for later and drops the rest.
func TestUndeliverableGoesOffline(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	msg := func(raw string) *stanza.Element {
		el, err := stanza.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return el
	}
	ctx := context.Background()
	if !h.svc.Undeliverable(ctx, msg(`<message xmlns='jabber:client' type='chat' from='alice@localhost/a' to='bob@localhost/gone'><body>x</body></message>`)) {
		t.Fatal("a chat message was not queued")
	}
	for _, raw := range []string{
		`<message xmlns='jabber:client' type='headline' from='alice@localhost/a' to='bob@localhost/gone'><body>x</body></message>`,
		`<presence xmlns='jabber:client' from='alice@localhost/a' to='bob@localhost/gone'/>`,
	} {
		if h.svc.Undeliverable(ctx, msg(raw)) {
			t.Fatalf("queued %s", raw)
		}
	}
	if h.st.Queued("bob") != 1 {
		t.Fatalf("bob has %d offline messages, want 1", h.st.Queued("bob"))
	}
	// bob is online here when a message is queued behind his back (by
	// another node): DrainUser delivers it.
	bob := h.online("bob@localhost/phone", 0)
	if h.st.Queued("bob") != 0 {
		t.Fatal("login did not drain the queue")
	}
	h.st.PushOffline(ctx, "bob", "alice@localhost", h.now, []byte(`<message xmlns='jabber:client' type='chat' from='alice@localhost/a' to='bob@localhost'><body>y</body></message>`), 10)
	h.svc.DrainUser(ctx, jid.MustParse("bob@localhost"))
	expect(t, "bob after DrainUser", bob, "message type=chat from=alice@localhost/a to=bob@localhost body=y delay=localhost@2026-11-25T10:00:00Z")
}

// A request to a session whose node cannot be reached is answered with an
// error instead of left waiting.
func TestRequestToUnreachableSessionIsAnswered(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	alice := h.online("alice@localhost/desk", 0)
	bob := newFakeSession("bob@localhost/phone")
	bob.SetGone(ErrSessionGone)
	h.svc.SetRemote(bob, ResourceState{Available: true})
	h.send(alice, `<iq type='get' id='v1' to='bob@localhost/phone'><query xmlns='jabber:iq:version'/></iq>`)
	expect(t, "alice", alice, "iq type=error from=bob@localhost/phone to=alice@localhost/desk error=service-unavailable")
}

// PEP notifications reach a contact's session on another node by the
// +notify features mirrored with it, and the publisher hears of a
// session's features once its capabilities are known.
func TestRemoteSessionsHearPEPByNotifyFeatures(t *testing.T) {
	var mu sync.Mutex
	var notify [][]string
	h, _ := newDBHarness(t, Config{}, "alice", "bob", "carol")
	h.svc.SetPublisher(publisherFunc(func(full jid.JID, st ResourceState, gone bool) {
		mu.Lock()
		defer mu.Unlock()
		notify = append(notify, st.Notify)
	}))
	h.befriend("alice", "bob")
	h.befriend("alice", "carol")
	a, _ := h.onlineWithCaps("alice@localhost/a", true, nodeDevices+"+notify")
	mu.Lock()
	last := notify[len(notify)-1]
	mu.Unlock()
	if !slices.Equal(last, []string{nodeDevices + "+notify"}) {
		t.Fatalf("published notify features %q", last)
	}

	bob := newFakeSession("bob@localhost/phone")     // wants device lists
	carol := newFakeSession("carol@localhost/phone") // capabilities unknown
	h.svc.SetRemote(bob, ResourceState{Available: true, Notify: []string{nodeDevices + "+notify"}})
	h.svc.SetRemote(carol, ResourceState{Available: true})
	a.takeAll()
	h.iq(a, publish(nodeDevices, "current", `<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/></list>`, ""))
	if got := events(bob); !slices.Equal(got, []string{"alice@localhost " + nodeDevices + ":item:current"}) {
		t.Fatalf("bob (remote, +notify) got %q", got)
	}
	if got := events(carol); len(got) != 0 {
		t.Fatalf("carol (remote, features unknown) got %q", got)
	}
}

// equal tells apart two states that differ in any one field, so that a
// field added to ResourceState cannot be forgotten there.
func TestResourceStateEqual(t *testing.T) {
	if !(ResourceState{}).equal(ResourceState{}) {
		t.Fatal("the zero state differs from itself")
	}
	if (ResourceState{}).equal(ResourceState{Notify: []string{}}) {
		t.Fatal("unknown +notify features equal an empty list")
	}
	typ := reflect.TypeFor[ResourceState]()
	for i := range typ.NumField() {
		var st ResourceState
		f := reflect.ValueOf(&st).Elem().Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int:
			f.SetInt(1)
		case reflect.Pointer:
			f.Set(reflect.ValueOf(stanza.New(stanza.NSClient, "presence")))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"x"}))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", typ.Field(i).Name, f.Kind())
		}
		if st.equal(ResourceState{}) || (ResourceState{}).equal(st) {
			t.Errorf("equal ignores field %s", typ.Field(i).Name)
		}
	}
}

// blocklists is a Publisher that records whose blocklist changed.
type blocklists struct {
	publisherFunc
	mu      sync.Mutex
	changed []string
}

func (b *blocklists) BlocklistChanged(local string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.changed = append(b.changed, local)
}

// A blocklist changed here is published, for other nodes to read it
// again; reading it is not.
func TestBlocklistChangePublished(t *testing.T) {
	pub := &blocklists{publisherFunc: func(jid.JID, ResourceState, bool) {}}
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	h.svc.SetPublisher(pub)
	a := h.online("alice@localhost/a", 0)
	if reply, _ := h.iq(a, `<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>`); reply.IQType() != stanza.ResultIQ {
		t.Fatalf("blocklist: %s", reply)
	}
	if reply, _ := h.iq(a, `<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>`); reply.IQType() != stanza.ResultIQ {
		t.Fatalf("block: %s", reply)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if !slices.Equal(pub.changed, []string{"alice"}) {
		t.Fatalf("published blocklist changes %q, want [alice]", pub.changed)
	}
}

// order is a Publisher that records what it hears of sessions, and what
// chat knows of them at that moment.
type order struct {
	svc    *Service
	bob    *fakeSession // a contact: did he see the unavailable presence yet?
	mu     sync.Mutex
	events []string
}

func (o *order) add(ev string, sess Session) {
	local := 0
	o.svc.LocalStates(func(full jid.JID, _ ResourceState) {
		if full.Equal(sess.JID()) {
			local++
		}
	})
	ev += fmt.Sprintf(" listed=%d", local)
	if o.bob != nil {
		ev += fmt.Sprintf(" bob=%d", len(o.bob.Received()))
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, ev)
}

func (o *order) Bound(_ context.Context, sess Session) { o.add("bound", sess) }
func (o *order) SessionChanged(full jid.JID, st ResourceState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, fmt.Sprintf("changed available=%v", st.Available))
}
func (o *order) SessionEnded(full jid.JID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "ended")
}
func (o *order) Closed(_ context.Context, sess Session) { o.add("closed", sess) }
func (o *order) BlocklistChanged(string)                {}

func (o *order) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ev := o.events
	o.events = nil
	return ev
}

// The publisher hears of a session in the order Publisher documents:
// Bound before chat records it, Closed last, after its unavailable
// presence went out, and also for a session whose JID a newer one took.
func TestPublisherOrder(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	o := &order{svc: h.svc}
	h.svc.SetPublisher(o)
	h.befriend("alice", "bob")
	o.bob = h.online("bob@localhost/phone", 0)
	o.take()
	a := h.online("alice@localhost/desk", 0)
	// Bound, the zero state, roster interest, available presence.
	want := []string{"bound listed=0 bob=0", "changed available=false", "changed available=false", "changed available=true"}
	if got := o.take(); !slices.Equal(got, want) {
		t.Fatalf("binding: publisher heard %q, want %q", got, want)
	}
	seen := len(o.bob.Received()) // bob has alice's available presence

	// A new session with alice's full JID replaces hers; the old one's
	// end then only tells the publisher it closed.
	a2 := h.bind("alice@localhost/desk")
	h.close(a)
	after := len(o.bob.Received()) // the replaced session's unavailable presence
	if after != seen+1 {
		t.Fatalf("bob received %d stanzas at the replacement, want 1", after-seen)
	}
	want = []string{fmt.Sprintf("bound listed=1 bob=%d", seen), "changed available=false", fmt.Sprintf("closed listed=1 bob=%d", after)}
	if got := o.take(); !slices.Equal(got, want) {
		t.Fatalf("replacing: publisher heard %q, want %q", got, want)
	}

	h.send(a2, `<presence/>`)
	o.take()
	seen = len(o.bob.Received())
	h.close(a2)
	want = []string{"ended", fmt.Sprintf("closed listed=0 bob=%d", seen+1)}
	if got := o.take(); !slices.Equal(got, want) {
		t.Fatalf("closing: publisher heard %q, want %q", got, want)
	}
}

// A message a session handed back (signaling stamps it with the time it
// was first queued) keeps that one stamp through the offline queue: the
// drain adds its own only to messages that have none from this server.
func TestHandedBackMessageKeepsItsStamp(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	el, err := stanza.Parse([]byte(`<message xmlns='jabber:client' type='chat' from='alice@localhost/a' to='bob@localhost/gone'><body>late</body>` +
		`<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2026-11-25T09:00:00Z'/></message>`))
	if err != nil {
		t.Fatal(err)
	}
	h.svc.Deliver(context.Background(), el)
	if h.st.Queued("bob") != 1 {
		t.Fatalf("bob has %d offline messages, want 1", h.st.Queued("bob"))
	}
	bob := h.bind("bob@localhost/phone")
	h.send(bob, `<presence/>`)
	var got []string
	for _, m := range bob.Take() {
		if m.Local != "message" {
			continue
		}
		for _, d := range m.Elements() {
			if d.Space == stanza.NSDelay && d.Local == "delay" {
				got = append(got, d.Attr("from")+"@"+d.Attr("stamp"))
			}
		}
	}
	if want := "localhost@2026-11-25T09:00:00Z"; len(got) != 1 || got[0] != want {
		t.Errorf("bob got the message with delay stamps %q, want only %q", got, want)
	}
}
