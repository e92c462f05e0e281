package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// TestKilledServerLosesNothingAcknowledged: alice sends bob messages with
// stream management on; the server is killed with SIGKILL while they flow
// and started again. Every message the server acknowledged must then be
// somewhere bob can see it: delivered before the crash, in his offline
// queue, or in his archive (XEP-0313). Once with bob offline, once online.
func TestKilledServerLosesNothingAcknowledged(t *testing.T) {
	bin := testenv.BuildPoosmsd(t)
	for _, bobOnline := range []bool{false, true} {
		t.Run(fmt.Sprintf("bob-online=%v", bobOnline), func(t *testing.T) {
			crashWhileSending(t, bin, bobOnline)
		})
	}
}

func crashWhileSending(t *testing.T, bin string, bobOnline bool) {
	d := testenv.NewDaemon(t, bin)
	for _, u := range []string{"alice", "bob"} {
		d.Run(t, u+"-password\n", "user", "add", u)
	}
	d.Start(t)
	opts := func(user string) xmppclient.Options {
		return xmppclient.Options{Addr: d.C2S, Domain: "localhost", Username: user, Password: user + "-password", Resource: "r", Timeout: 10 * time.Second}
	}
	alice, err := xmppclient.Dial(context.Background(), opts("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Conn().Close()
	alice.SendRaw("<enable xmlns='urn:xmpp:sm:3'/>")
	if el, err := alice.Recv(); err != nil || el.Local != "enabled" {
		t.Fatalf("enable: %v %v", el, err)
	}

	// bob, when online, records what reaches him before the crash.
	var mu sync.Mutex
	seen := map[string]bool{}
	bobDone := make(chan struct{})
	if bobOnline {
		bob, err := xmppclient.Dial(context.Background(), opts("bob"))
		if err != nil {
			t.Fatal(err)
		}
		defer bob.Conn().Close()
		bob.Send(stanza.New(stanza.NSClient, "presence"))
		go func() {
			defer close(bobDone)
			for {
				el, err := bob.RecvTimeout(30 * time.Second)
				if err != nil {
					return
				}
				if el.Local == "message" {
					mu.Lock()
					seen[el.ChildText("", "body")] = true
					mu.Unlock()
				}
			}
		}()
	} else {
		close(bobDone)
	}

	// alice's reader records the server's acknowledgements.
	var acked atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			el, err := alice.RecvTimeout(30 * time.Second)
			if err != nil {
				return
			}
			if el.Local == "a" {
				h, _ := strconv.ParseInt(el.Attr("h"), 10, 64)
				acked.Store(h)
			}
		}
	}()
	const total = 800 // under the offline limit (1000): none is bounced
	sent := 0
	killed := make(chan struct{})
	for ; sent < total; sent++ {
		m := stanza.New(stanza.NSClient, "message").SetAttr("to", "bob@localhost").SetAttr("type", "chat").
			Append(stanza.New(stanza.NSClient, "body").SetText(fmt.Sprintf("m%d", sent)))
		if err := alice.Send(m); err != nil {
			break
		}
		if sent%20 == 19 {
			alice.SendRaw("<r xmlns='urn:xmpp:sm:3'/>")
		}
		if sent == total/2 {
			// Once a good part is acknowledged (more than one archive
			// page of 250, so bob's archive query has to page), kill the
			// server while the rest is still flowing.
			waitFor(t, func() bool { return acked.Load() >= total*3/8 })
			go func() {
				defer close(killed)
				d.Kill()
			}()
		}
	}
	<-readerDone
	<-bobDone
	<-killed
	h := int(acked.Load())
	t.Logf("sent %d messages, the server acknowledged %d before it was killed; bob saw %d live", sent, h, len(seen))
	if h == 0 {
		t.Fatal("nothing was acknowledged")
	}

	d.Start(t)
	bob, err := xmppclient.Dial(context.Background(), opts("bob"))
	if err != nil {
		t.Fatal(err)
	}
	// Offline messages come at initial presence, the archive on request,
	// page by page (the server caps a page at 250).
	offline, archive := collectStored(newPeer(t, bob, "bob", nil))
	for _, b := range offline {
		seen[b] = true
	}
	for _, b := range archive {
		seen[b] = true
	}
	fromOffline, fromArchive := len(offline), len(archive)
	for i := 0; i < h; i++ {
		if !seen[fmt.Sprintf("m%d", i)] {
			t.Fatalf("acknowledged message m%d was lost (bob has %d: %d offline, %d in the archive)", i, len(seen), fromOffline, fromArchive)
		}
	}
	t.Logf("all %d acknowledged messages accounted for (%d offline, %d in the archive)", h, fromOffline, fromArchive)
}
