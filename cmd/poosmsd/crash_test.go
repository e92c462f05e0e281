package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// TestKilledServerLosesNothingAcknowledged sends messages to an offline
// user with stream management on, kills the server with SIGKILL in the
// middle, restarts it, and checks that every message the server
// acknowledged reaches the user.
func TestKilledServerLosesNothingAcknowledged(t *testing.T) {
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t))
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

	// The reader records the server's acknowledgements.
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
	kill := func() {
		defer close(killed)
		d.Kill()
	}
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
			// Once a good part is acknowledged, kill the server while the
			// rest is still flowing.
			waitFor(t, func() bool { return acked.Load() >= total/4 })
			go kill()
		}
	}
	<-readerDone
	<-killed
	h := int(acked.Load())
	t.Logf("sent %d messages, the server acknowledged %d before it was killed", sent, h)
	if h == 0 {
		t.Fatal("nothing was acknowledged")
	}

	d.Start(t)
	bob, err := xmppclient.Dial(context.Background(), opts("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	bob.Send(stanza.New(stanza.NSClient, "presence"))
	bob.Send(stanza.New(stanza.NSClient, "iq").SetAttr("type", "get").SetAttr("id", "sync").SetAttr("to", "localhost").
		Append(stanza.New("urn:xmpp:ping", "ping")))
	got := map[string]int{}
	for {
		el, err := bob.RecvTimeout(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if el.Local == "message" {
			got[el.ChildText("", "body")]++
		}
		if el.ID() == "sync" {
			break
		}
	}
	for i := 0; i < h; i++ {
		if n := got[fmt.Sprintf("m%d", i)]; n != 1 {
			t.Fatalf("acknowledged message m%d arrived %d times after the crash (bob got %d messages)", i, n, len(got))
		}
	}
	t.Logf("bob received all %d acknowledged messages (%d in all)", h, len(got))
}
