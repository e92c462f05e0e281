package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"poosms.org/poosms/internal/testenv"
)

// TestS2SAgainstTwoPoosmsd runs a short load across two poosmsd servers
// federating over loopback and checks the report: every message crossed
// and was timed, in each step.
func TestS2SAgainstTwoPoosmsd(t *testing.T) {
	bin := testenv.BuildPoosmsd(t)
	s2sA, s2sB := testenv.FreeAddr(t), testenv.FreeAddr(t)
	a := testenv.NewDaemon(t, bin, "--domain", "a.test", "--s2s-addr", s2sA, "--s2s-tls-addr", "", "--s2s-route", "b.test="+s2sB)
	b := testenv.NewDaemon(t, bin, "--domain", "b.test", "--s2s-addr", s2sB, "--s2s-tls-addr", "", "--s2s-route", "a.test="+s2sA)
	for _, d := range []*testenv.Daemon{a, b} {
		for i := range 3 {
			d.Run(t, "bench-password\n", "user", "add", "bench"+strconv.Itoa(i))
		}
		d.Start(t)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"s2s", "--from-addr", a.C2S, "--from-domain", "a.test", "--to-addr", b.C2S, "--to-domain", "b.test",
		"--pairs", "3", "--rates", "30,60", "--duration", "1s", "--json", "--pids", strconv.Itoa(a.PID()) + "," + strconv.Itoa(b.PID())}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r s2sResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(r.Steps) != 2 || r.WarmupSec <= 0 {
		t.Fatalf("report %+v: want two steps after a warm-up", r)
	}
	for _, s := range r.Steps {
		if s.Sent < int64(s.OfferedRate/2) || s.Delivered != s.Sent || s.Errors != 0 || s.LatencyP99ms <= 0 || s.Throughput <= 0 || s.ServerCPUSecs <= 0 {
			t.Errorf("step %+v: want every message delivered and timed", s)
		}
	}
}
