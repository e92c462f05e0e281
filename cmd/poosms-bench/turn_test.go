package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"poosms.org/poosms/turn"
)

// TestTURNAgainstRelay runs a short load through poosms's relay over
// loopback and checks the report: every allocation was made, packets
// went through to the peer and back, and the server's CPU was read.
func TestTURNAgainstRelay(t *testing.T) {
	srv, err := turn.New(turn.Config{
		Realm:        "bench.test",
		UDPAddr:      "127.0.0.1:0",
		Secret:       []byte("bench-test-secret"),
		AllowPeers:   []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		AllowSelf:    true,
		UDPListeners: 1,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"turn", "--server", srv.UDPAddr().String(), "--realm", "bench.test",
		"--secret", "bench-test-secret", "--allocations", "3", "--rate", "200", "--duration", "500ms",
		"--progress", "0", "--json", "--pid", strconv.Itoa(os.Getpid())}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var res turnResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.Allocations != 3 || res.AllocateErrors != 0 {
		t.Errorf("allocations %d (%d failed), want 3", res.Allocations, res.AllocateErrors)
	}
	// 3 × 200 pkts/s for 0.5 s: about 300 sent, each relayed there and back.
	if res.Sent < 150 || res.AtPeer < res.Sent*9/10 || res.Echoed < res.Sent*9/10 {
		t.Errorf("sent %d, at peer %d, echoed %d: want most packets through both ways", res.Sent, res.AtPeer, res.Echoed)
	}
	if res.RelayedPerSec <= 0 || res.ServerCPUSecs < 0 {
		t.Errorf("relayed %.0f pkts/s, server CPU %.2f s", res.RelayedPerSec, res.ServerCPUSecs)
	}
}
