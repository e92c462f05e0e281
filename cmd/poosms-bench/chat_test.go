package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

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
		"--duration", "1s", "--json", "--pid", strconv.Itoa(d.PID()), "--sources", "127.0.0.1-127.0.0.3", "--presence"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r chatResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(r.Steps) != 1 {
		t.Fatalf("report %+v: want one step", r)
	}
	s := r.Steps[0]
	if r.LoginErrors != 0 || s.Sent < 30 || s.Delivered != s.Sent || s.Lost != 0 || s.LatencyP50ms <= 0 || r.ServerCPUSecs <= 0 || r.ServerPeakRSS <= 0 ||
		s.DeliveryWindow < s.SendWindow || s.DeliveredRate <= 0 || s.CPUPer1000 <= 0 {
		t.Fatalf("report %+v: want every message delivered and measured", r)
	}
	// --presence: three pairs subscribed to each other and each client
	// saw its contact come online.
	if p := r.Presence; p == nil || p.Clients != 6 || p.SawOnline != 6 || p.P99ms <= 0 {
		t.Fatalf("presence %+v: want all 6 clients to see their contact online", r.Presence)
	}
}

// A server that delivers everything late shows its real rate: the rates
// are over the delivery window, and the step is not delivered in full.
func TestMeasureStep(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	lat := func(d time.Duration, n int) []time.Duration { return slices.Repeat([]time.Duration{d}, n) }

	// 6,000 msgs/s offered for 15 s, all 90,000 delivered, the last 250 s
	// after the first send (the ejabberd run of issue 15).
	late := measureStep(stepCounts{offered: 6000, sent: 90000, delivered: 90000, sendStart: t0, sendEnd: t0.Add(15 * time.Second),
		lastDelivery: t0.Add(250 * time.Second), latencies: lat(124*time.Second, 100), cpuSeconds: 45})
	if late.SendWindow != 15 || late.SentRate != 6000 || late.DeliveryWindow != 250 || late.DeliveredRate != 360 || late.Lost != 0 ||
		late.InFull || late.CPUPer1000 != 0.5 || late.LatencyP99ms != 124000 {
		t.Errorf("late delivery: %+v", late)
	}

	// Kept up: everything delivered within 40 ms of the send window.
	ok := measureStep(stepCounts{offered: 2000, sent: 30000, delivered: 30000, sendStart: t0, sendEnd: t0.Add(15 * time.Second),
		lastDelivery: t0.Add(15*time.Second + 40*time.Millisecond), latencies: append(lat(10*time.Millisecond, 990), lat(40*time.Millisecond, 10)...)})
	if !ok.InFull || ok.DeliveryWindow != 15.04 || ok.LatencyP50ms != 10 || ok.LatencyP99ms != 10 || ok.LatencyP999ms != 40 {
		t.Errorf("kept up: %+v", ok)
	}

	// Lost messages, an error, a slow load tool or a p99 over 1 s: not in full.
	for name, c := range map[string]stepCounts{
		"lost":      {offered: 1000, sent: 10000, delivered: 9999},
		"error":     {offered: 1000, sent: 10000, delivered: 10000, stanzaErrs: 1},
		"slow tool": {offered: 1000, sent: 9000, delivered: 9000},
		"p99":       {offered: 1000, sent: 10000, delivered: 10000, latencies: lat(1001*time.Millisecond, 10)},
	} {
		c.sendStart, c.sendEnd, c.lastDelivery = t0, t0.Add(10*time.Second), t0.Add(10*time.Second)
		s := measureStep(c)
		if s.InFull {
			t.Errorf("%s: %+v counted as delivered in full", name, s)
		}
		if name == "lost" && s.Lost != 1 {
			t.Errorf("lost: %d, want 1", s.Lost)
		}
	}

	steps := []chatStep{{OfferedRate: 1000, InFull: true}, {OfferedRate: 2000, InFull: true}, {OfferedRate: 4000}}
	if c := ceiling(steps); c != 2000 {
		t.Errorf("ceiling %v, want 2000", c)
	}
}

func TestBenchBody(t *testing.T) {
	at := time.Unix(0, 1765000000123456789)
	step, sentAt, ok := parseBenchBody(benchBody(at, 3, 42))
	if !ok || step != 3 || sentAt != at.UnixNano() {
		t.Fatalf("got %d %d %v", step, sentAt, ok)
	}
	for _, bad := range []string{"hello", "bench 12", "bench x 1 2", "bench 1 -1 2"} {
		if _, _, ok := parseBenchBody(bad); ok {
			t.Errorf("%q parsed", bad)
		}
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
// ran and met its defence, and the server still serves. Loopback is not
// exempt from the per-address caps, set low: the connection attacks come
// from 127.0.0.1, everyone else from 127.0.0.2–4.
func TestAbuseAgainstPoosmsd(t *testing.T) {
	d := testenv.NewDaemon(t, testenv.BuildPoosmsd(t), "--conn-limit-exempt", "", "--max-negotiating-per-address", "4",
		"--http-max-conns-per-address", "2", "--http-read-timeout", "1s")
	// 3 chatters, 2 for the check, 7 XMPP attackers, 2 sinks, the victim.
	for i := range 15 {
		d.Run(t, "bench-password\n", "user", "add", "bench"+strconv.Itoa(i))
	}
	d.Start(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"abuse", "--addr", d.C2S, "--http-addr", d.HTTP, "--chatters", "3", "--rate", "20",
		"--baseline", "1s", "--duration", "3s", "--stanza-bytes", "300000", "--depth", "100", "--wide-elements", "5000",
		"--sinks", "2", "--sink-stanza-bytes", "20000", "--pep-item-bytes", "1000", "--offline-rate", "50", "--media-sections", "40",
		"--slow-conns", "3", "--conns", "20", "--sources", "127.0.0.2-127.0.0.4", "--flood-source", "127.0.0.1",
		"--json", "--server-pid", strconv.Itoa(d.PID())}, &out, &errOut)
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
		case "slowhttp":
			// 2 of the 3 get in and are ended by the 1 s read timeout; the
			// third is answered 429.
			if a.Ended == 0 || a.EndedAfterMaxS <= 0 || a.EndedAfterMaxS > 2.5 || a.Refused == 0 {
				t.Errorf("attack %s: %+v, want slow bodies ended within the read timeout and connections past the cap refused", a.Kind, a)
			}
		case "connflood":
			// 4 may negotiate; the other 16 are refused, again each second.
			if a.Refused < 16 || a.Failed != 0 {
				t.Errorf("attack %s: %+v, want the connections past the cap refused", a.Kind, a)
			}
		}
	}
	if t.Failed() {
		t.Logf("report: %s\n%s", out.String(), errOut.String())
	}
}
