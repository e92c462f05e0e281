package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"poosms.org/poosms/internal/testenv"
)

// TestChatAgainstPoosmsd runs a short chat load against a real poosmsd and
// checks the report: every message sent was delivered and measured.
func TestChatAgainstPoosmsd(t *testing.T) {
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t))
	for i := 0; i < 6; i++ {
		d.Run(t, "bench-password\n", "user", "add", "bench"+strconv.Itoa(i))
	}
	d.Start(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"chat", "--addr", d.C2S, "--clients", "6", "--rate", "60",
		"--duration", "1s", "--json", "--pid", strconv.Itoa(d.PID()), "--sources", "127.0.0.1-127.0.0.3"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r chatResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.LoginErrors != 0 || r.Sent < 30 || r.Delivered != r.Sent || r.LatencyP50ms <= 0 || r.ServerCPUSecs <= 0 || r.ServerPeakRSS <= 0 ||
		r.DeliverySecs < r.DurationSecond || r.Throughput <= 0 {
		t.Fatalf("report %+v: want every message delivered and measured", r)
	}
}

func TestSourceRange(t *testing.T) {
	got, err := sourceRange("127.0.0.1-127.0.0.4")
	if err != nil || len(got) != 4 || got[3].String() != "127.0.0.4" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"10.0.0.1-10.0.0.2", "127.0.0.5-127.0.0.1", "x"} {
		if _, err := sourceRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestTURNAgainstPoosmsd relays packets through poosmsd's TURN server with
// REST credentials made from its secret.
func TestTURNAgainstPoosmsd(t *testing.T) {
	turnAddr := testenv.FreeAddr(t)
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t))
	d.Args = append(d.Args, "--turn-addr", turnAddr, "--turn-secret", "bench-secret", "--turn-allow-peers", "127.0.0.0/8", "--turn-allow-self")
	d.Start(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"turn", "--server", turnAddr, "--secret", "bench-secret", "--allocations", "2",
		"--rate", "100", "--duration", "1s", "--json", "--pid", strconv.Itoa(d.PID())}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r turnResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Allocations != 2 || r.Sent < 100 || r.Echoed < r.Sent*9/10 || r.RelayedPerSec <= 0 {
		t.Fatalf("report %+v: want both allocations relaying nearly every packet", r)
	}
}

// TestMediaAgainstPoosmsd runs a small conference load through a real
// poosmsd's SFU and checks that media flowed to everyone.
func TestMediaAgainstPoosmsd(t *testing.T) {
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t))
	for i := 0; i < 3; i++ {
		d.Run(t, "bench-password\n", "user", "add", "bench"+strconv.Itoa(i))
	}
	d.Start(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"media", "--addr", d.C2S, "--publishers", "2", "--subscribers", "1",
		"--duration", "2s", "--json", "--pid", strconv.Itoa(d.PID())}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r mediaResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	// 2 publishers + 1 listener: 2 + 2 + 4 = 8 streams of 50 packets/s.
	// How much of it arrives within the 2 s depends on how long the joins
	// took on a busy machine (loss is the bench's figure, not this test's):
	// media must flow.
	if r.Participants != 3 || r.JoinErrors != 0 || r.Received == 0 || r.ForwardedPerSec <= 0 || r.JoinP50ms <= 0 {
		t.Fatalf("report %+v: want media to every participant", r)
	}
}

// TestFloodAgainstPoosmsd floods sessions that never read, directly and
// through a room, while others chat, and checks the report: the chatters
// lost nothing, the server kept serving and was measured.
func TestFloodAgainstPoosmsd(t *testing.T) {
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t), "--write-queue-bytes", "65536", "--unacked-bytes", "131072")
	for i := 0; i < 8; i++ {
		d.Run(t, "bench-password\n", "user", "add", "bench"+strconv.Itoa(i))
	}
	d.Start(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"flood", "--addr", d.C2S, "--sinks", "4", "--senders", "1", "--chatters", "3",
		"--stanza-bytes", "60000", "--rate", "20", "--duration", "2s", "--settle", "0s", "--json", "--pid", strconv.Itoa(d.PID())}, &out, &errOut)
	var r floodResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("exit %d, %v: %s\n%s", code, err, out.String(), errOut.String())
	}
	if code != 0 || r.ChatLost != 0 || r.ChatDelivered == 0 || r.AttackSent == 0 || !r.ServerSurvived || r.RSSPeak <= 0 || r.SinksDisconnect == 0 {
		t.Fatalf("exit %d, report %+v: want the attack sent, sinks disconnected, nothing lost by the chatters\n%s", code, r, errOut.String())
	}
}

// TestAbuseAgainstPoosmsd runs every attack of the abuse command for a
// few seconds, small, against a real poosmsd while three clients chat,
// and checks the report: nothing the chatters sent was lost, each attack
// ran and met its defence, and the server still serves.
func TestAbuseAgainstPoosmsd(t *testing.T) {
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t))
	// 3 chatters, 2 for the check, 7 XMPP attackers, 2 sinks, the victim.
	for i := range 15 {
		d.Run(t, "bench-password\n", "user", "add", "bench"+strconv.Itoa(i))
	}
	d.Start(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"abuse", "--addr", d.C2S, "--http-addr", d.HTTP, "--chatters", "3", "--rate", "20",
		"--baseline", "1s", "--duration", "3s", "--stanza-bytes", "300000", "--depth", "100", "--wide-elements", "5000",
		"--sinks", "2", "--sink-stanza-bytes", "20000", "--pep-item-bytes", "1000", "--offline-rate", "50", "--media-sections", "40",
		"--slow-conns", "3", "--conns", "20", "--json", "--server-pid", strconv.Itoa(d.PID())}, &out, &errOut)
	var r abuseResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("exit %d, %v: %s\n%s", code, err, out.String(), errOut.String())
	}
	if code != 0 || r.ChatLost != 0 || r.ChatDelivered == 0 || !r.ServerServes || r.RSSPeak <= 0 || len(r.Attacks) != len(abuseKinds) {
		t.Fatalf("exit %d, report %+v: want the chat intact and the server serving\n%s", code, r, errOut.String())
	}
	for _, a := range r.Attacks {
		if a.Sent == 0 {
			t.Errorf("attack %s sent nothing: %+v", a.Kind, a)
		}
		switch a.Kind {
		case "oversized", "nested", "wide":
			if a.Ended == 0 || a.Accepted != 0 {
				t.Errorf("attack %s: %+v, want every stream ended by the server", a.Kind, a)
			}
		case "offers":
			if a.Errors == 0 || a.Accepted != 0 {
				t.Errorf("attack %s: %+v, want every hostile offer refused", a.Kind, a)
			}
		case "pep":
			if a.Errors+a.Accepted == 0 {
				t.Errorf("attack %s: %+v, want answers", a.Kind, a)
			}
		}
	}
	if t.Failed() {
		t.Logf("report: %s\n%s", out.String(), errOut.String())
	}
}
