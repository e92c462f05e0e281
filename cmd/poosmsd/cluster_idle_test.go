package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
)

// TestClusterIdleRoomsLeaveRedis: two users on two nodes address 10,000
// random room names (joining and leaving at once, groupchat messages,
// disco#info, conference joins), and a persistent room is created and
// left. Each name places a room lease in Redis; once the rooms have been
// empty and idle for --cluster-room-idle, the nodes give the leases back:
// the cluster's key count under its prefix returns to what it was before,
// and so does the number of leases each node renews at its heartbeat.
// The persistent room is still there afterwards, found from the other
// node, which takes its placement and reads it from the store.
func TestClusterIdleRoomsLeaveRedis(t *testing.T) {
	redisURL := sharedRedisURL(t)
	bin := testenv.BuildPoosmsd(t)
	c := newCluster(t, bin, redisURL, 2, "--cluster-room-idle", "1s")
	c.addUsers("alice", "bob")
	alice := dialPeer(t, c.nodes[0], "alice", "desk", true)
	bob := dialPeer(t, c.nodes[1], "bob", "desk", true)
	alice.ping("settled")
	bob.ping("settled")
	base := c.keyCount()

	const lasting = "lasting@conference.localhost"
	createRoom(alice, lasting, "alice")
	configureRoom(alice, lasting, field("muc#roomconfig_persistentroom", "1"), field("muc#roomconfig_roomname", "Lasting"))
	alice.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", lasting+"/alice").SetAttr("type", "unavailable"))

	const names = 10000
	peak := base
	prefix := fmt.Sprintf("r%x", time.Now().UnixNano())
	for i := range names {
		p := alice
		if i%2 == 1 {
			p = bob
		}
		room := fmt.Sprintf("%s-%d@conference.localhost", prefix, i)
		switch i % 8 {
		case 0, 1: // enter (creating, within the hourly allowance) and leave at once
			p.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", room+"/x").Append(stanza.New(nsMUC, "x")))
			p.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", room+"/x").SetAttr("type", "unavailable"))
		case 2, 3:
			p.send(stanza.New(stanza.NSClient, "message").SetAttr("to", room).SetAttr("type", "groupchat").
				Append(stanza.New(stanza.NSClient, "body").SetText("anyone?")))
		case 4, 5:
			p.send(stanza.NewIQ(stanza.GetIQ).SetAttr("to", room).SetAttr("id", fmt.Sprint("info", i)).
				Append(stanza.New("http://jabber.org/protocol/disco#info", "query")))
		default:
			p.send(stanza.NewIQ(stanza.SetIQ).SetAttr("to", room).SetAttr("id", fmt.Sprint("call", i)).
				Append(stanza.New("urn:poosms:conference:0", "join")))
		}
		if i%1000 == 999 {
			// Read the answers so far, so neither stream backs up.
			alice.ping(fmt.Sprint("batch", i))
			bob.ping(fmt.Sprint("batch", i))
			alice.kept, bob.kept = nil, nil
			peak = max(peak, c.keyCount())
		}
	}
	if peak < base+500 {
		t.Fatalf("while the rooms were fresh Redis held %d keys under the prefix (%d before): the stanzas did not place rooms", peak, base)
	}
	t.Logf("keys under the prefix: %d before, at most %d seen while addressing %d room names", base, peak, names)

	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := c.keyCount(); n != base; n = c.keyCount() {
		if time.Now().After(deadline) {
			t.Fatalf("Redis still holds %d keys under the prefix 60s after the rooms went idle, %d before them (leases left: %d)", n, base, len(c.leases()))
		}
		<-tick.C
	}
	for _, n := range c.nodes {
		n.waitMetric(t, "poosms_cluster_leases", 10*time.Second, "no leases renewed at the heartbeat", func(v float64, ok bool) bool { return ok && v == 0 })
	}

	// The persistent room outlived its lease: bob, on the other node,
	// finds it as alice left it, and his node hosts it now.
	info := bob.must("get", "lasting-info", lasting, stanza.New("http://jabber.org/protocol/disco#info", "query"))
	id := info.Child("http://jabber.org/protocol/disco#info", "query").Child("http://jabber.org/protocol/disco#info", "identity")
	if id == nil || id.Attr("name") != "Lasting" {
		t.Fatalf("disco#info of %s after its lease went: %s", lasting, info)
	}
	self := joinRoom(bob, lasting, "bob")
	if hasStatus(self, 201) {
		t.Fatalf("joining %s created it anew: %s", lasting, self)
	}
	if host := c.leases()[lasting]; host != "n2" {
		t.Fatalf("%s is placed on %q, want n2 (where bob's stanza arrived)", lasting, host)
	}
}

// keyCount counts the keys under the cluster's prefix.
func (c *testCluster) keyCount() int {
	c.t.Helper()
	rc := c.redis()
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	iter := rc.Scan(ctx, 0, c.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		c.t.Fatalf("count keys under %s: %v", c.prefix, err)
	}
	return n
}
