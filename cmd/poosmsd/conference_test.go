package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"poosms.org/poosms/internal/confclient"
	"poosms.org/poosms/stanza"
)

// TestConferenceOverXMPP: three people in one room, each publishing audio
// and three-layer simulcast video, negotiated over their real XMPP streams
// (STARTTLS + SCRAM) with a real node; everyone receives everyone else
// through the one media port. Then the same with every client forced to
// relay through the embedded TURN server.
func TestConferenceOverXMPP(t *testing.T) {
	for _, relay := range []bool{false, true} {
		t.Run(fmt.Sprintf("relay-only=%v", relay), func(t *testing.T) {
			cfg := testConfig(t, "")
			// The relay-only clients reach the SFU, on this host, through
			// the relay: the test opens loopback and the host's own addresses.
			cfg.TURNAllowPeers = append(cfg.TURNAllowPeers, mustPrefix("127.0.0.0/8"))
			cfg.TURNAllowSelf = true
			n := startTestNode(t, cfg)
			names := []string{"alice", "bob", "carol"}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var clients []*confclient.Client
			for _, name := range names {
				addUser(t, cfg, name, name+"-password")
				x := dialUser(t, n, name, name+"-password", "call")
				c, err := confclient.Join(ctx, x, confclient.Options{
					Room: "standup@conference.localhost", Name: name,
					Audio: true, Video: true, Simulcast: true, RelayOnly: relay, Loopback: true,
				})
				if err != nil {
					t.Fatalf("%s joins: %v", name, err)
				}
				t.Cleanup(c.Close)
				clients = append(clients, c)
			}
			for _, c := range clients {
				if err := c.WaitConnected(ctx); err != nil {
					t.Fatal(err)
				}
				c.Publish(10)
			}
			for i, c := range clients {
				var others []string
				for j, name := range names {
					if j != i {
						others = append(others, name)
					}
				}
				if err := c.WaitMedia(ctx, 20, "audio", others...); err != nil {
					t.Fatal(err)
				}
				if err := c.WaitMedia(ctx, 20, "video", others...); err != nil {
					t.Fatal(err)
				}
				if relay {
					if typ := c.SelectedCandidateType(); typ != "relay" {
						t.Fatalf("%s: selected candidate %q, want relay", names[i], typ)
					}
				}
				for _, tr := range c.Tracks() {
					if tr.Packets > 0 && tr.Gaps > tr.Packets/10 {
						t.Errorf("%s: track %s has %d sequence gaps in %d packets", names[i], tr.ID, tr.Gaps, tr.Packets)
					}
				}
			}
			// carol leaves; the others are told and her tracks go.
			if err := clients[2].Leave(ctx); err != nil {
				t.Fatal(err)
			}
			for _, c := range clients[:2] {
				if _, err := c.WaitEvent(ctx, "participant-left", func(e *stanza.Element) bool {
					return e.Attr("id") == clients[2].Participant
				}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
