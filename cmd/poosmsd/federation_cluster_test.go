package main

import (
	"testing"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
)

// befriend makes a and b (full JIDs aFull, bFull) subscribed to each
// other's presence, and waits until each sees the other online.
func befriend(t *testing.T, a *xmppclient.Client, aFull string, b *xmppclient.Client, bFull string) {
	t.Helper()
	aBare, bBare := bareOf(aFull), bareOf(bFull)
	for _, p := range []struct {
		from, to                 *xmppclient.Client
		fromBare, toBare, toFull string
	}{{a, b, aBare, bBare, bFull}, {b, a, bBare, aBare, aFull}} {
		p.from.Send(presenceTo(p.toBare, "subscribe"))
		want(t, p.to, "a subscription request from "+p.fromBare, isPresence(p.fromBare, "subscribe"))
		p.to.Send(presenceTo(p.fromBare, "subscribed"))
		wantAll(t, p.from, "the approval and presence of "+p.toFull, isPresence(p.toBare, "subscribed"), isPresence(p.toFull, ""))
	}
}

// TestFederationInCluster: two poosmsd nodes serve alpha.test as one
// cluster (MySQL, Redis, a shared dialback secret) and federate with
// beta.test, another poosmsd, which reaches alpha.test only through node
// n2. Stanzas for beta.test leave from whichever node their sender is
// on: n1's outgoing stream is authenticated by beta.test calling n2 back,
// which checks the key n1 made. beta.test's own stream arrives at n2,
// which delivers to users on either node and forwards stanzas for a room
// n1 hosts there. When beta.test dies, its user's presence is withdrawn
// from the users of both nodes, and he leaves the room.
func TestFederationInCluster(t *testing.T) {
	bin := testenv.BuildPoosmsd(t)
	redisURL := sharedRedisURL(t)
	s2s1, s2s2, betaS2S := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	secret := randomSecret()
	c := newCluster(t, bin, redisURL, 0)
	common := []string{"--domain", "alpha.test", "--s2s-tls-addr", "", "--s2s-dialback-secret", secret,
		"--s2s-route", "beta.test=" + betaS2S, "--s2s-timeout", "3s"}
	n1 := c.addNode("n1", append(common, "--s2s-addr", s2s1)...)
	n2 := c.addNode("n2", append(common, "--s2s-addr", s2s2)...)
	n1.start(t)
	n2.start(t)
	c.addUsers("alice", "carol")

	beta := testenv.NewDaemon(t, bin, "--domain", "beta.test", "--s2s-addr", betaS2S, "--s2s-tls-addr", "",
		"--s2s-route", "alpha.test="+s2s2, "--s2s-timeout", "3s")
	beta.Run(t, "bob-password\n", "user", "add", "bob")
	beta.Start(t)

	side := func(n *clusterNode) fedSide { return fedSide{domain: "alpha.test", addr: n.d.C2S} }
	far := fedSide{domain: "beta.test", addr: beta.C2S}
	alice := side(n1).login(t, "alice", "desk")
	carol := side(n2).login(t, "carol", "desk")
	bob := far.login(t, "bob", "phone")
	befriend(t, alice, "alice@alpha.test/desk", bob, "bob@beta.test/phone")
	befriend(t, carol, "carol@alpha.test/desk", bob, "bob@beta.test/phone")
	alice.Send(chatMessage("bob@beta.test", "from n1"))
	want(t, bob, "alice's message from n1", isMessage("alice@alpha.test/desk", "from n1"))
	bob.Send(chatMessage("alice@alpha.test", "to n1 through n2"))
	want(t, alice, "bob's message", isMessage("bob@beta.test/phone", "to n1 through n2"))

	// n1 sends on its own outgoing stream; only n2 takes beta's.
	n1.waitMetric(t, `poosms_s2s_streams{direction="out",peer="beta.test"}`, fedWait, "n1's outgoing stream", func(v float64, ok bool) bool { return v >= 1 })
	n2.waitMetric(t, `poosms_s2s_streams{direction="in",peer="beta.test"}`, fedWait, "n2's incoming stream", func(v float64, ok bool) bool { return v >= 1 })
	if m, err := n1.metrics(); err != nil || m[`poosms_s2s_streams{direction="in",peer="beta.test"}`] != 0 {
		t.Errorf("n1 has incoming streams from beta.test, which only reaches n2: %v %v", m[`poosms_s2s_streams{direction="in",peer="beta.test"}`], err)
	}

	// A room on n1 (alice made it), entered by bob through n2.
	lobby := "lobby@conference.alpha.test"
	createFedRoom(t, alice, lobby, "Alice")
	if self := enterFedRoom(t, bob, lobby, "Bob"); self.IsError() {
		t.Fatalf("bob cannot enter a room n1 hosts: %s", self)
	}
	bob.Send(groupMessage(lobby, "hello n1"))
	want(t, alice, "bob's message in the room", isGroupchat(lobby+"/Bob", "hello n1"))

	// beta.test dies: both nodes' users see bob go, and the room lets him go.
	beta.Kill()
	want(t, carol, "bob going offline (carol, on n2)", isPresence("bob@beta.test/phone", "unavailable"))
	wantAll(t, alice, "bob going offline (alice, on n1) and out of the room",
		isPresence("bob@beta.test/phone", "unavailable"), isRoomPresence(lobby+"/Bob", "unavailable", 333))
}
