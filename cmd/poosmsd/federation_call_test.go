package main

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"poosms.org/poosms/config"
	"poosms.org/poosms/internal/confclient"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
)

// TestFederatedCall: bob of beta.test takes part in the call of a room on
// alpha.test, over his own server's stream (the conference protocol rides
// federation): he must be in the room first; once in, his join result
// gives him alpha's media server and TURN credentials for it, and audio
// and video flow both ways between him and alice of alpha.test, his
// through alpha's relay. Leaving ends his place in the call.
func TestFederatedCall(t *testing.T) {
	alphaS2S, betaS2S := testenv.FreeAddr(t), testenv.FreeAddr(t)
	alpha := fedNode(t, "alpha.test", alphaS2S, map[string]string{"beta.test": betaS2S}, func(c *config.Config) {
		// bob's client reaches alpha's media server, on this host,
		// through alpha's relay.
		c.TURNAllowPeers = append(c.TURNAllowPeers, mustPrefix("127.0.0.0/8"))
		c.TURNAllowSelf = true
		c.PublicIP = netip.MustParseAddr("127.0.0.1") // alpha.test is no name DNS knows

	})
	beta := fedNode(t, "beta.test", betaS2S, map[string]string{"alpha.test": alphaS2S}, nil)
	const room = "standup@conference.alpha.test"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ax := dialUser(t, alpha, "alice", "alice-password", "call")
	alice, err := confclient.Join(ctx, ax, confclient.Options{Room: room, Name: "alice", Audio: true, Video: true, Loopback: true})
	if err != nil {
		t.Fatalf("alice joins: %v", err)
	}
	t.Cleanup(alice.Close)

	// Not in the room, bob is refused the call.
	bx := dialUser(t, beta, "bob", "bob-password", "call")
	bx.Send(iq("set", room, "early", stanza.New(confclient.NS, "join")))
	if r := want(t, bx, "the answer to joining without entering", isIQ("early")); !r.IsError() {
		t.Fatalf("bob joined the call without entering the room: %s", r)
	}

	bob, err := confclient.Join(ctx, bx, confclient.Options{Room: room, Name: "bob", Audio: true, Video: true, Loopback: true, RelayOnly: true})
	if err != nil {
		t.Fatalf("bob of beta.test joins: %v", err)
	}
	t.Cleanup(bob.Close)
	turnCreds := false
	for _, s := range bob.ICEServers {
		if len(s.URLs) > 0 && s.Username != "" && s.Credential != "" {
			turnCreds = true
		}
	}
	if !turnCreds {
		t.Fatalf("bob's join result has no TURN credentials: %+v", bob.ICEServers)
	}
	for _, c := range []*confclient.Client{alice, bob} {
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		c.Publish(10)
	}
	for _, tc := range []struct {
		c    *confclient.Client
		from string
	}{{alice, "bob"}, {bob, "alice"}} {
		for _, kind := range []string{"audio", "video"} {
			if err := tc.c.WaitMedia(ctx, 20, kind, tc.from); err != nil {
				t.Fatalf("%s from %s: %v", kind, tc.from, err)
			}
		}
	}
	if typ := bob.SelectedCandidateType(); typ != "relay" {
		t.Errorf("bob's media went by %q, want alpha's relay", typ)
	}

	// bob's client goes away: his server tells the room he left, and the
	// call lets him go.
	bob.Close()
	if _, err := alice.WaitEvent(ctx, "participant-left", func(e *stanza.Element) bool { return e.Attr("id") == bob.Participant }); err != nil {
		t.Fatal(err)
	}
}
