package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/confclient"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// The multi-node tests: several poosmsd processes share one MySQL database
// and one Redis and must behave as one server. Helpers are in
// cluster_helpers_test.go.

// TestClusterRefusesSQLite: a cluster needs the shared MySQL store; asking
// for Redis with the node's own SQLite file is a configuration error
// (exit 2) that names --redis and says what to use instead.
func TestClusterRefusesSQLite(t *testing.T) {
	bin := testenv.BuildPoosmsd(t)
	run := func(env []string, args ...string) (int, string) { return runPoosmsd(t, bin, env, args...) }
	check := func(what string, code int, stderr string) {
		t.Helper()
		if code != 2 || !strings.Contains(stderr, "--redis") || !strings.Contains(strings.ToLower(stderr), "mysql") {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 naming --redis and saying a cluster needs MySQL", what, code, stderr)
		}
	}
	// Nothing listens on port 1: the refusal must come before any connection.
	const redisURL = "redis://127.0.0.1:1"
	code, stderr := run(nil, "config", "check", "--redis", redisURL, "--data-dir", t.TempDir())
	check("config check --redis", code, stderr)
	code, stderr = run([]string{"POOSMS_REDIS=" + redisURL}, "config", "check", "--data-dir", t.TempDir())
	check("config check with POOSMS_REDIS", code, stderr)
	yaml := filepath.Join(t.TempDir(), "poosms.yaml")
	if err := os.WriteFile(yaml, []byte("redis: "+redisURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr = run(nil, "config", "check", "--config", yaml, "--data-dir", t.TempDir())
	check("config check with redis: in the YAML file", code, stderr)
	d := testenv.NewDaemon(t, bin, "--redis", redisURL, "--node-id", "n1")
	code, stderr = run(nil, d.Args...)
	check("serve --redis", code, stderr)
}

// TestClusterChatAndPresence: alice on n1 and bob on n2 subscribe to each
// other, see each other's presence (also through the probe at login), chat
// both ways in order, and a login with alice's resource on n2 ends her
// stream on n1 with a conflict.
func TestClusterChatAndPresence(t *testing.T) {
	redisURL := sharedRedisURL(t)
	bin := testenv.BuildPoosmsd(t)
	c := newCluster(t, bin, redisURL, 2)
	c.addUsers("alice", "bob")
	n1, n2 := c.node("n1"), c.node("n2")
	alice := dialPeer(t, n1, "alice", "desk", true)
	bob := dialPeer(t, n2, "bob", "phone", true)
	subscribe(t, alice, bob)
	aliceFull, bobFull := "alice@localhost/desk", "bob@localhost/phone"

	// A presence change is broadcast across nodes.
	alice.send(stanza.New(stanza.NSClient, "presence").Append(stanza.New(stanza.NSClient, "status").SetText("at n1")))
	bob.expect(10*time.Second, "alice's presence with status 'at n1'", func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == aliceFull && e.PresenceType() == stanza.AvailablePresence && e.ChildText("", "status") == "at n1"
	})

	// bob leaves: alice sees him go. He comes back: the probe his node
	// sends gets alice's current presence from n1, and alice sees him.
	bob.close()
	alice.expectPresence(10*time.Second, bobFull, "unavailable")
	bob = dialPeer(t, n2, "bob", "phone", true)
	bob.expect(10*time.Second, "alice's current presence (probe answer) after logging in again", func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == aliceFull && e.PresenceType() == stanza.AvailablePresence && e.ChildText("", "status") == "at n1"
	})
	alice.expectPresence(10*time.Second, bobFull, "")

	// 50 messages each way, interleaved; each side gets them in order.
	const count = 50
	for i := 0; i < count; i++ {
		alice.chat("bob@localhost", fmt.Sprintf("a2b %d", i))
		bob.chat("alice@localhost", fmt.Sprintf("b2a %d", i))
	}
	inOrder := func(p *peer, from, prefix string) {
		t.Helper()
		for i := 0; i < count; i++ {
			m := p.expect(10*time.Second, fmt.Sprintf("message %s%d from %s", prefix, i, from), func(e *stanza.Element) bool {
				return e.Local == "message" && strings.HasPrefix(e.ChildText("", "body"), prefix)
			})
			if got, want := m.ChildText("", "body"), fmt.Sprintf("%s%d", prefix, i); got != want || m.From() != from {
				t.Fatalf("%s: got %q from %s, want %q from %s (out of order or lost)", p, got, m.From(), want, from)
			}
		}
	}
	inOrder(bob, aliceFull, "a2b ")
	inOrder(alice, bobFull, "b2a ")

	// The same the other way: alice comes back on n1 and her probe gets
	// bob's presence from n2.
	alice.close()
	bob.expectPresence(10*time.Second, aliceFull, "unavailable")
	alice = dialPeer(t, n1, "alice", "desk", true)
	alice.expectPresence(10*time.Second, bobFull, "")
	bob.expectPresence(10*time.Second, aliceFull, "")

	// The cluster metrics are there and count the routed stanzas.
	m1, err := n1.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"poosms_cluster_sessions", "poosms_cluster_routed_sent_total", "poosms_cluster_routed_received_total",
		"poosms_cluster_routing_latency_seconds_count", "poosms_cluster_redis_errors_total", "poosms_cluster_redis_healthy"} {
		if _, ok := m1[name]; !ok {
			t.Errorf("node n1: /metrics has no %s", name)
		}
	}
	if v := m1["poosms_cluster_redis_healthy"]; v != 1 {
		t.Errorf("node n1: poosms_cluster_redis_healthy = %v, want 1", v)
	}
	if v := m1["poosms_cluster_routed_sent_total"]; v < count {
		t.Errorf("node n1: poosms_cluster_routed_sent_total = %v after %d messages to n2", v, count)
	}
	n2.waitMetric(t, "poosms_cluster_routed_received_total", 5*time.Second, "at least 50 routed stanzas received",
		func(v float64, _ bool) bool { return v >= count })
	n2.waitMetric(t, "poosms_cluster_routing_latency_seconds_count", 5*time.Second, "at least 50 routing latencies observed",
		func(v float64, _ bool) bool { return v >= count })
	for _, n := range c.nodes {
		n.waitMetric(t, "poosms_cluster_sessions", 5*time.Second, "one session bound", func(v float64, _ bool) bool { return v == 1 })
	}
	for _, n := range c.nodes {
		if m, err := n.metrics(); err == nil && m["poosms_cluster_routing_latency_seconds_count"] > 0 {
			t.Logf("node %s: %v stanzas routed in, mean routing latency %.2f ms", n.id, m["poosms_cluster_routed_received_total"],
				1000*m["poosms_cluster_routing_latency_seconds_sum"]/m["poosms_cluster_routing_latency_seconds_count"])
		}
	}

	// bob logs out: alice gets his unavailable presence.
	bob.close()
	alice.expectPresence(10*time.Second, bobFull, "unavailable")
	n2.waitMetric(t, "poosms_cluster_sessions", 5*time.Second, "no session bound after bob left", func(v float64, _ bool) bool { return v == 0 })

	// alice/desk logs in on n2 while alice/desk is on n1: the old stream
	// ends with a conflict stream error; the new one is served.
	alice2 := dialPeer(t, n2, "alice", "desk", true)
	alice.expect(10*time.Second, "<conflict/> stream error on n1", func(e *stanza.Element) bool {
		return e.Local == "error" && e.Child(nsStreams, "conflict") != nil
	})
	if _, err := alice.next(5*time.Second, func(*stanza.Element) bool { return false }); err == nil || !strings.Contains(err.Error(), "stream ended") {
		t.Errorf("alice's stream on n1 still open after the conflict: %v", err)
	}
	alice2.ping("after-conflict")
}

// TestClusterRoomOnThreeNodes: three users, each on their own node, meet in
// one room: everyone sees everyone's presence and every message.
func TestClusterRoomOnThreeNodes(t *testing.T) {
	redisURL := sharedRedisURL(t)
	bin := testenv.BuildPoosmsd(t)
	c := newCluster(t, bin, redisURL, 3)
	names := []string{"alice", "bob", "carol"}
	c.addUsers(names...)
	var peers []*peer
	for i, name := range names {
		peers = append(peers, dialPeer(t, c.nodes[i], name, "desk", true))
	}
	const room = "lounge@conference.localhost"
	createRoom(peers[0], room, names[0])
	for i := 1; i < 3; i++ {
		joinRoom(peers[i], room, names[i])
	}
	t.Logf("room placement: %v", c.leases())
	for _, p := range peers {
		for _, nick := range names {
			if nick == p.user {
				continue
			}
			p.expectPresence(10*time.Second, room+"/"+nick, "")
		}
	}
	for _, p := range peers {
		groupchat(p, room, "hello from "+p.user+" on "+p.node.id)
	}
	for _, p := range peers {
		for _, q := range peers {
			body := "hello from " + q.user + " on " + q.node.id
			m := p.expect(10*time.Second, fmt.Sprintf("groupchat %q", body), func(e *stanza.Element) bool {
				return e.Local == "message" && e.ChildText("", "body") == body
			})
			if m.From() != room+"/"+q.user || m.MessageType() != stanza.GroupChatMessage {
				t.Errorf("%s: %q came as %s", p, body, m)
			}
		}
	}
}

// TestClusterConference: three participants signalling through three
// different nodes enter one room and join its conference, which runs on
// the room's host node; every participant's media goes straight to that
// node's media port (not through the node it signals through), and
// everyone receives everyone's audio and video. Someone on another node
// who is not in the room is refused the call: the host, where the room
// lives, knows its occupants wherever they log in.
func TestClusterConference(t *testing.T) {
	redisURL := sharedRedisURL(t)
	bin := testenv.BuildPoosmsd(t)
	c := newCluster(t, bin, redisURL, 3)
	names := []string{"alice", "bob", "carol"}
	c.addUsers(append(names, "dave")...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const room = "standup@conference.localhost"
	var clients []*confclient.Client
	for i, name := range names {
		node := c.nodes[i]
		x, err := xmppclient.Dial(ctx, xmppclient.Options{
			Addr: node.d.C2S, Domain: "localhost", Username: name, Password: name + "-password", Resource: "call", Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatalf("%s logs in on %s: %v", name, node, err)
		}
		t.Cleanup(func() { x.Close() })
		if err := x.Send(stanza.New(stanza.NSClient, "presence")); err != nil {
			t.Fatal(err)
		}
		cl, err := confclient.Join(ctx, x, confclient.Options{Room: room, Name: name, Audio: true, Video: true, Loopback: true})
		if err != nil {
			t.Fatalf("%s joins the conference through %s: %v", name, node, err)
		}
		t.Cleanup(cl.Close)
		clients = append(clients, cl)
	}
	hostID := c.leases()[room]
	if hostID == "" {
		t.Fatalf("no lease names %s in Redis: %v", room, c.leases())
	}
	mediaPort := map[string]string{} // node → media port in its record
	for _, n := range c.nodes {
		rec, err := c.nodeRecord(n.id)
		if err != nil {
			t.Fatal(err)
		}
		_, port, err := net.SplitHostPort(rec.Media)
		if err != nil || port == "" || port == "0" {
			t.Fatalf("node %s's record has media %q, want the bound host:port", n.id, rec.Media)
		}
		mediaPort[n.id] = port
	}
	t.Logf("conference on %s; media ports %v", hostID, mediaPort)
	for _, n := range c.nodes {
		if n.id == hostID {
			continue
		}
		dave := dialPeer(t, n, "dave", "call", true)
		dave.send(iqTo(room, "d1", stanza.New(nsConf, "join")))
		r := dave.expect(10*time.Second, "answer to dave's join", func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == "d1" })
		if errorCondition(r) != "forbidden" {
			t.Fatalf("dave, on %s and not in the room, joins its call on %s: %s", n.id, hostID, r)
		}
		enter(dave, room, "dave", "")
		dave.send(iqTo(room, "d2", stanza.New(nsConf, "join")))
		if j := dave.iqResult("d2").Child(nsConf, "joined"); j == nil {
			t.Fatalf("dave, on %s and in the room, cannot join its call", n.id)
		}
		dave.send(iqTo(room, "d3", stanza.New(nsConf, "leave")))
		dave.iqResult("d3")
		break
	}
	for i, cl := range clients {
		if err := cl.WaitConnected(ctx); err != nil {
			t.Fatalf("%s (through %s): %v", names[i], c.nodes[i].id, err)
		}
		remote, err := cl.SelectedRemoteAddr()
		if err != nil {
			t.Fatalf("%s (through %s): %v", names[i], c.nodes[i].id, err)
		}
		port := strconv.Itoa(int(remote.Port()))
		if port != mediaPort[hostID] {
			t.Errorf("%s (through %s): media goes to %s, not to the host %s's media port %s", names[i], c.nodes[i].id, remote, hostID, mediaPort[hostID])
		}
		for id, p := range mediaPort {
			if id != hostID && p == port {
				t.Errorf("%s (through %s): media goes to %s, the media port of %s, which does not host the conference", names[i], c.nodes[i].id, remote, id)
			}
		}
		cl.Publish(10)
	}
	for i, cl := range clients {
		var others []string
		for j, name := range names {
			if j != i {
				others = append(others, name)
			}
		}
		for _, kind := range []string{"audio", "video"} {
			if err := cl.WaitMedia(ctx, 20, kind, others...); err != nil {
				t.Fatalf("%s (through %s) waiting for %s of %v: %v\n%s", names[i], c.nodes[i].id, kind, others, err, cl.Summary())
			}
		}
	}
	// bob leaves: the others are told.
	if err := clients[1].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2} {
		if _, err := clients[i].WaitEvent(ctx, "participant-left", func(e *stanza.Element) bool {
			return e.Attr("id") == clients[1].Participant
		}); err != nil {
			t.Fatalf("%s was not told bob left: %v", names[i], err)
		}
	}
}

// oneSender lets one sender fill a whole offline queue: the kill tests
// have alice alone send bob 300 messages, and what is not delivered live
// must all wait offline for him.
var oneSender = []string{"--offline-limit-per-sender", "1000"}

// TestClusterNodeKilled: a node is killed with SIGKILL while alice, with
// stream management, sends bob messages across nodes; every message her
// node acknowledged must reach bob (live, offline at his next login, or in
// his archive), and contacts see the dead node's users go. Once killing
// bob's node (which also hosts a room), once killing alice's.
func TestClusterNodeKilled(t *testing.T) {
	redisURL := sharedRedisURL(t)
	bin := testenv.BuildPoosmsd(t)
	t.Run("recipient-node", func(t *testing.T) { killRecipientNode(t, bin, redisURL) })
	t.Run("sender-node", func(t *testing.T) { killSenderNode(t, bin, redisURL) })
}

// killRecipientNode: bob's node, which also hosts a room, dies while alice
// (on another node) sends to him. alice sees bob go; the room's occupants
// on the surviving nodes are told it moved (110 + 332) and can rejoin it;
// bob, logging in on a surviving node, has everything alice's node
// acknowledged.
func killRecipientNode(t *testing.T, bin, redisURL string) {
	c := newCluster(t, bin, redisURL, 3, oneSender...)
	c.addUsers("alice", "bob", "carol", "dave")
	const room = "doomed@conference.localhost"

	// dave creates the room through n2; whichever node it lands on is the
	// one to kill, and bob is put there.
	dave := dialPeer(t, c.node("n2"), "dave", "desk", true)
	createRoom(dave, room, "dave")
	hostID := ""
	leases := c.leases()
	for k, v := range leases {
		if strings.Contains(k, "doomed") {
			hostID = v
		}
	}
	if hostID == "" {
		t.Logf("no lease names the room in Redis (%v); assuming it is on n2, where it was created", leases)
		hostID = "n2"
	}
	host := c.node(hostID)
	var survivors []*clusterNode
	for _, n := range c.nodes {
		if n != host {
			survivors = append(survivors, n)
		}
	}
	t.Logf("room on %s; alice on %s, carol on %s, bob on %s (to be killed)", host.id, survivors[0].id, survivors[1].id, host.id)
	alice := dialPeer(t, survivors[0], "alice", "desk", true)
	carol := dialPeer(t, survivors[1], "carol", "desk", true)
	bob := dialPeer(t, host, "bob", "phone", true)
	subscribe(t, alice, bob)
	joinRoom(alice, room, "alice")
	joinRoom(carol, room, "carol")
	enableSM(alice)

	const total = 300
	sent, killedAt := 0, 0
	for ; sent < total; sent++ {
		alice.chat("bob@localhost", fmt.Sprintf("m%d", sent))
		if sent%20 == 19 {
			alice.sendRaw("<r xmlns='urn:xmpp:sm:3'/>")
		}
		if sent == total/2 {
			deadline := time.Now().Add(10 * time.Second)
			for alice.acked.Load() < total/4 {
				if time.Now().After(deadline) {
					t.Fatalf("alice's node acknowledged only %d of %d messages within 10s", alice.acked.Load(), sent)
				}
				time.Sleep(5 * time.Millisecond)
			}
			host.kill()
			killedAt = sent
			t.Logf("killed %s after %d messages (%d acknowledged)", host.id, sent+1, alice.acked.Load())
		}
	}
	alice.sendRaw("<r xmlns='urn:xmpp:sm:3'/>")
	deadline := time.Now().Add(15 * time.Second)
	for alice.acked.Load() < total && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	h := int(alice.acked.Load())
	if h < total {
		t.Errorf("alice's node (alive) acknowledged %d of %d messages within 15s", h, total)
	}

	// What reached bob live before his node died.
	seen := map[string]bool{}
	var liveSet []string
	live := 0
	for {
		el, err := bob.next(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
		if err != nil {
			break
		}
		seen[el.ChildText("", "body")] = true
		liveSet = append(liveSet, el.ChildText("", "body"))
		live++
	}

	// Contacts and occupants on the survivors are told.
	alice.expectPresence(15*time.Second, "bob@localhost/phone", "unavailable")
	for _, p := range []*peer{alice, carol} {
		el := p.expect(15*time.Second, "unavailable self-presence with 110 and 332 from "+room, func(e *stanza.Element) bool {
			return e.Local == "presence" && e.From() == room+"/"+p.user && e.PresenceType() == stanza.UnavailablePresence
		})
		if !hasStatus(el, 110) || !hasStatus(el, 332) {
			t.Errorf("%s: room-moved presence without status 110 and 332: %s", p, el)
		}
	}

	// Rejoining places the room on a live node and works.
	createRoom(alice, room, "alice")
	joinRoom(carol, room, "carol")
	alice.expectPresence(10*time.Second, room+"/carol", "")
	groupchat(carol, room, "still here")
	alice.expectBody(10*time.Second, room+"/carol", "still here")
	placed := false
	for k, v := range c.leases() {
		if strings.Contains(k, "doomed") {
			placed = true
			if v == host.id {
				t.Errorf("room lease %s still names the dead node %s", k, v)
			}
		}
	}
	if !placed {
		t.Logf("no lease names the room after the rejoin: %v", c.leases())
	}

	// bob logs in on a surviving node (not alice's): everything alice's
	// node acknowledged is his, one way or another.
	bob = dialPeer(t, survivors[1], "bob", "phone", false)
	offline, archive := collectStored(bob)
	// Offline delivery may go on after the archive query's answer: take
	// what keeps coming until it stops.
	afterLogin := append([]string(nil), offline...)
	for {
		el, err := bob.next(2*time.Second, func(e *stanza.Element) bool { return e.Local == "message" && e.MessageType() == stanza.ChatMessage })
		if err != nil {
			break
		}
		afterLogin = append(afterLogin, el.ChildText("", "body"))
	}
	delivered := map[string]bool{}
	for _, b := range afterLogin {
		seen[b] = true
		delivered[b] = true
	}
	inLive := len(seen)
	for _, b := range archive {
		seen[b] = true
	}
	t.Logf("sent %d, acknowledged %d; bob had %d live before the kill (%s), %d after logging in again (%d before the archive's answer; %s), %d in the archive",
		sent, h, live, ranges(liveSet), len(afterLogin), len(offline), ranges(afterLogin), len(archive))
	if n, prev, ok := firstDisorder(afterLogin); ok {
		// Not required by the spec; reported so it is seen.
		t.Logf("note: after the kill bob got alice's messages out of order (m%d after m%d)", n, prev)
	}
	// Messages alice sent after the kill cannot have reached bob's dead
	// session: the survivors must have stored each of them offline for him
	// (directly, or taken from the dead node's Redis stream); the archive
	// alone does not deliver them.
	var undelivered []string
	for i := killedAt + 1; i < h; i++ {
		if b := fmt.Sprintf("m%d", i); !delivered[b] {
			undelivered = append(undelivered, b)
		}
	}
	if len(undelivered) > 0 {
		t.Errorf("%d acknowledged messages sent after %s died were not delivered at bob's next login (only his archive has them; %d of %d acknowledged reached him): %s",
			len(undelivered), host.id, inLive, h, summarize(undelivered))
	}
	var lost []string
	for i := 0; i < h; i++ {
		if b := fmt.Sprintf("m%d", i); !seen[b] {
			lost = append(lost, b)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged messages lost: %s", len(lost), summarize(lost))
	}
	// alice sees bob back.
	alice.expectPresence(10*time.Second, "bob@localhost/phone", "")
}

// killSenderNode: alice's node dies while she sends to bob, who is online
// on another node. bob sees alice go, and has every message her node
// acknowledged, live or (logging in again) offline or in his archive.
func killSenderNode(t *testing.T, bin, redisURL string) {
	c := newCluster(t, bin, redisURL, 2, oneSender...)
	c.addUsers("alice", "bob")
	n1, n2 := c.node("n1"), c.node("n2")
	alice := dialPeer(t, n1, "alice", "desk", true)
	bob := dialPeer(t, n2, "bob", "phone", true)
	subscribe(t, alice, bob)
	enableSM(alice)

	const total = 300
	sent := 0
	for ; sent < total; sent++ {
		m := stanza.New(stanza.NSClient, "message").SetAttr("to", "bob@localhost").SetAttr("type", "chat").
			Append(stanza.New(stanza.NSClient, "body").SetText(fmt.Sprintf("m%d", sent)))
		if err := alice.x.Send(m); err != nil {
			break // the node is gone
		}
		if sent%20 == 19 {
			if err := alice.x.SendRaw("<r xmlns='urn:xmpp:sm:3'/>"); err != nil {
				break
			}
		}
		if sent == total/2 {
			deadline := time.Now().Add(10 * time.Second)
			for alice.acked.Load() < total/4 {
				if time.Now().After(deadline) {
					t.Fatalf("alice's node acknowledged only %d of %d messages within 10s", alice.acked.Load(), sent)
				}
				time.Sleep(5 * time.Millisecond)
			}
			n1.kill()
			t.Logf("killed n1 after %d messages (%d acknowledged)", sent+1, alice.acked.Load())
		}
	}
	// Her stream ends; what was acknowledged by then is final.
	select {
	case <-alice.done:
	case <-time.After(10 * time.Second):
		t.Fatal("alice's stream did not end after her node was killed")
	}
	h := int(alice.acked.Load())
	if h == 0 {
		t.Fatal("nothing was acknowledged")
	}

	// bob sees alice go once n2 declares n1 dead; the messages n1 had
	// routed came before.
	bob.expectPresence(15*time.Second, "alice@localhost/desk", "unavailable")
	seen := map[string]bool{}
	live := 0
	for {
		el, err := bob.next(time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
		if err != nil {
			break
		}
		seen[el.ChildText("", "body")] = true
		live++
	}
	bob.close()
	bob = dialPeer(t, n2, "bob", "phone", false)
	offline, archive := collectStored(bob)
	for _, b := range offline {
		seen[b] = true
	}
	for _, b := range archive {
		seen[b] = true
	}
	t.Logf("sent %d, acknowledged %d; bob had %d live, then %d offline and %d in the archive", sent, h, live, len(offline), len(archive))
	var lost []string
	for i := 0; i < h; i++ {
		if b := fmt.Sprintf("m%d", i); !seen[b] {
			lost = append(lost, b)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged messages lost: %s", len(lost), summarize(lost))
	}
}

// firstDisorder finds the first body mN that comes after a higher one.
func firstDisorder(bodies []string) (n, prev int, found bool) {
	prev = -1
	for _, b := range bodies {
		if _, err := fmt.Sscanf(b, "m%d", &n); err != nil {
			continue
		}
		if n < prev {
			return n, prev, true
		}
		prev = n
	}
	return 0, 0, false
}

// ranges writes bodies m0 m1 m2 m7 as "m0-m2 m7", in the given order.
func ranges(bodies []string) string {
	var b strings.Builder
	start, prev := -1, -1
	flush := func() {
		if start < 0 {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if start == prev {
			fmt.Fprintf(&b, "m%d", start)
		} else {
			fmt.Fprintf(&b, "m%d-m%d", start, prev)
		}
	}
	for _, body := range bodies {
		var n int
		if _, err := fmt.Sscanf(body, "m%d", &n); err != nil {
			continue
		}
		if start >= 0 && n == prev+1 {
			prev = n
			continue
		}
		flush()
		start, prev = n, n
	}
	flush()
	return b.String()
}

func summarize(list []string) string {
	if len(list) > 20 {
		return strings.Join(list[:20], " ") + fmt.Sprintf(" … (%d more)", len(list)-20)
	}
	return strings.Join(list, " ")
}

// TestClusterRedisRestart: the cluster's Redis is killed and started again.
// Meanwhile each node serves its own users and reports Redis unhealthy;
// afterwards the gauge recovers and cross-node chat and presence work
// again, and the message sent across nodes during the outage is not lost.
func TestClusterRedisRestart(t *testing.T) {
	if os.Getenv("POOSMS_TEST_MYSQL_DSN") == "" {
		testenv.Require(t, "POOSMS_TEST_MYSQL_DSN is not set")
	}
	r := startOwnRedis(t)
	bin := testenv.BuildPoosmsd(t)
	c := newCluster(t, bin, r.url(), 2)
	c.addUsers("alice", "bob", "carol")
	n1, n2 := c.node("n1"), c.node("n2")
	alice := dialPeer(t, n1, "alice", "desk", true)
	carol := dialPeer(t, n1, "carol", "desk", true)
	bob := dialPeer(t, n2, "bob", "phone", true)
	subscribe(t, alice, bob)
	alice.chat("bob@localhost", "before")
	bob.expectBody(10*time.Second, "alice@localhost/desk", "before")
	healthy := func(want float64) func(float64, bool) bool {
		return func(v float64, ok bool) bool { return ok && v == want }
	}
	for _, n := range c.nodes {
		n.waitMetric(t, "poosms_cluster_redis_healthy", 5*time.Second, "poosms_cluster_redis_healthy 1", healthy(1))
	}

	r.kill()
	for _, n := range c.nodes {
		n.waitMetric(t, "poosms_cluster_redis_healthy", 10*time.Second, "poosms_cluster_redis_healthy 0 with Redis down", healthy(0))
	}
	// Local users are still served.
	alice.chat("carol@localhost", "local during the outage")
	carol.expectBody(10*time.Second, "alice@localhost/desk", "local during the outage")
	carol.chat("alice@localhost", "local reply")
	alice.expectBody(10*time.Second, "carol@localhost/desk", "local reply")
	alice.chat("bob@localhost", "across during the outage")
	alice.ping("outage-ping") // n1 has taken it

	r.start(t)
	for _, n := range c.nodes {
		n.waitMetric(t, "poosms_cluster_redis_healthy", 10*time.Second, "poosms_cluster_redis_healthy back to 1", healthy(1))
	}
	if m, err := n1.metrics(); err == nil && m["poosms_cluster_redis_errors_total"] == 0 {
		t.Errorf("node n1: poosms_cluster_redis_errors_total is 0 after an outage")
	}

	// Cross-node chat and presence work again.
	alice.chat("bob@localhost", "after the outage")
	bob.expectBody(10*time.Second, "alice@localhost/desk", "after the outage")
	bob.chat("alice@localhost", "reply after the outage")
	alice.expectBody(10*time.Second, "bob@localhost/phone", "reply after the outage")
	bob.send(stanza.New(stanza.NSClient, "presence").Append(stanza.New(stanza.NSClient, "status").SetText("back")))
	alice.expect(10*time.Second, "bob's presence with status 'back'", func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == "bob@localhost/phone" && e.ChildText("", "status") == "back"
	})

	// The directory was rebuilt: a new login on n2 gets alice's presence
	// from n1 through the probe, and alice sees it.
	tablet := dialPeer(t, n2, "bob", "tablet", true)
	tablet.expectPresence(10*time.Second, "alice@localhost/desk", "")
	alice.expectPresence(10*time.Second, "bob@localhost/tablet", "")
	tablet.close()

	// The message sent across during the outage: live by now, or at bob's
	// next login.
	const outage = "across during the outage"
	if _, err := bob.next(3*time.Second, func(e *stanza.Element) bool {
		return e.Local == "message" && e.ChildText("", "body") == outage
	}); err == nil {
		t.Logf("the outage message reached bob live after Redis came back")
		return
	}
	bob.close()
	bob = dialPeer(t, n2, "bob", "phone", false)
	offline, archive := collectStored(bob)
	for _, b := range offline {
		if b == outage {
			t.Logf("the outage message reached bob offline at his next login")
			return
		}
	}
	for _, b := range archive {
		if b == outage {
			t.Fatalf("the outage message is only in bob's archive: it was neither delivered live nor offline (offline: %v)", offline)
		}
	}
	t.Fatalf("the message alice sent bob during the outage was lost (offline: %v, archive: %v)", offline, archive)
}
