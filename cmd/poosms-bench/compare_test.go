package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/compare holds what a compare.sh run leaves in its results
// folder: poosms, poosms-mysql and Prosody chat runs, an ejabberd run
// that failed before printing (an empty file), and the TURN runs.
const compareFixtures = "testdata/compare"

func TestCompareTable(t *testing.T) {
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"compare", "--results", compareFixtures,
		"--clients", "100", "--mechanism", "SCRAM-SHA-256", "--duration", "5s", "--drain", "10s",
		"--peer-archive", "--pinned", "--tmpfs",
		"--turn-allocations", "10", "--turn-rate", "1500", "--turn-size", "200", "--turn-duration", "5s"}, &out, &errs)
	if code != 0 {
		t.Fatalf("compare exited %d: %s", code, errs.String())
	}
	table := out.String()
	for _, want := range []string{
		"Chat, 100 clients, SCRAM-SHA-256, each step 5s (drain up to 10s); peers archiving: yes (SQL); pinned: server on CPU 1, load tool on CPU 0; data on tmpfs\n",
		"  poosms: load average 0.50 0.40 0.30 before, 1.50 0.70 0.40 after\n",
		"  poosms-mysql: load average - before, - after; MariaDB CPU 2.25 s over the run (not pinned, shared)\n",
		// ejabberd's empty result is no column, not an error.
		"| figure | poosms | poosms-mysql | prosody |\n|---|---|---|---|\n",
		"| ceiling msgs/s (delivered in full, p99 ≤ 1 s) | 2,000 | 0 | 1,000 |\n",
		"| failed logins | 0 | 2 | 0 |\n",
		// (20,000,000 − 10,000,000 bytes) / 100 sessions / 1024.
		"| RSS per idle session KiB | 97.7 | - | - |\n",
		"| peak RSS MiB | 40 | - | 100 |\n",
		"| 1,000 offered: delivered/s over the delivery window | 1,000 | 978, 10 lost | 1,000 |\n",
		"| 1,000: p50 / p99 / p99.9 ms | 2.0 / 10.0 / 15.0 | 5.0 / 80.0 / 1,500.0 | 8.0 / 40.0 / 60.0 |\n",
		"| 2,000 offered: delivered/s over the delivery window | 2,000 | not run | 1,294, 1,234 lost, 3 errors, load tool sent only 1,800/s |\n",
		"| 2,000: server CPU s per 1,000 delivered | 0.060 | - | 0.300 |\n",
		"poosms/prosody: ceiling 2.00; at 1,000: p99 0.25, CPU/msg 0.25; at 2,000: p99 0.02, CPU/msg 0.20\n",
		// poosms-mysql's run measured no CPU: no ratio rather than 0.
		"poosms-mysql/prosody: ceiling 0.00; at 1,000: p99 2.00, CPU/msg -\n",
		"| TURN, 10 allocations × 1500 pkts/s × 200 B for 5s | poosms | coturn |\n",
		"| relayed pkts/s | 15,000 | 14,000 |\n",
		"| server CPU µs per relayed pkt | 12.50 | 20.00 |\n",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q; it is:\n%s", want, table)
		}
	}
	if strings.Contains(table, "ejabberd") {
		t.Errorf("the table has a column for ejabberd, whose run left no result:\n%s", table)
	}
}

func TestCompareJSON(t *testing.T) {
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"compare", "--results", compareFixtures,
		"--servers", "poosms,prosody", "--rates", "1000", "--json"}, &out, &errs)
	if code != 0 {
		t.Fatalf("compare exited %d: %s", code, errs.String())
	}
	var rep struct {
		Servers map[string]struct {
			Chat    *chatResult `json:"chat"`
			TURN    *turnResult `json:"turn"`
			IdleKiB *float64    `json:"rss_per_idle_session_kib"`
		} `json:"servers"`
		Ratios []compareRatio `json:"ratios"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("compare --json printed no JSON: %v\n%s", err, out.String())
	}
	if len(rep.Servers) != 2 || rep.Servers["poosms"].Chat == nil || rep.Servers["prosody"].Chat == nil {
		t.Fatalf("servers = %v, want poosms and prosody with their chat results", rep.Servers)
	}
	if rep.Servers["poosms"].TURN != nil {
		t.Errorf("poosms has a TURN result without coturn in --servers")
	}
	if got := rep.Servers["poosms"].Chat.Steps[1].LatencyP99ms; got != 20 {
		t.Errorf("poosms's second step p99 = %v, want the 20 ms of its result file", got)
	}
	if k := rep.Servers["poosms"].IdleKiB; k == nil || *k < 97.6 || *k > 97.7 {
		t.Errorf("poosms RSS per idle session = %v KiB, want 97.66", k)
	}
	if len(rep.Ratios) != 1 {
		t.Fatalf("ratios = %+v, want poosms/prosody only", rep.Ratios)
	}
	r := rep.Ratios[0]
	if r.Mine != "poosms" || r.Peer != "prosody" || r.Ceiling == nil || *r.Ceiling != 2 {
		t.Errorf("ratio = %+v, want poosms/prosody ceiling 2", r)
	}
	// --rates 1000: the 2,000 msgs/s steps are left out.
	if len(r.Steps) != 1 || r.Steps[0].Rate != 1000 || *r.Steps[0].P99 != 0.25 || *r.Steps[0].CPUPerMsg != 0.25 {
		t.Errorf("step ratios = %+v, want one at 1,000 msgs/s: p99 0.25, CPU/msg 0.25", r.Steps)
	}
}

func TestCompareErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "poosms-chat.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no folder", []string{"compare"}, 2, "--results is required"},
		{"bad rate", []string{"compare", "--results", dir, "--rates", "1000,fast"}, 2, `"fast"`},
		{"zero rate", []string{"compare", "--results", dir, "--rates", "0"}, 2, "0 is not a positive rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errs); code != tc.code || !strings.Contains(errs.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errs.String(), tc.code, tc.want)
			}
		})
	}
}

// A result cut short while printing is named and left out; the others
// still make the table.
func TestCompareBrokenResult(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"poosms-chat.json":  `{"clients": 10, "steps": [{"offered_mess`,
		"prosody-chat.json": `{"clients": 10, "logins_per_second": 77, "steps": [], "ceiling_messages_per_second": 0}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"compare", "--results", dir}, &out, &errs); code != 0 {
		t.Fatalf("compare exited %d: %s", code, errs.String())
	}
	if !strings.Contains(errs.String(), filepath.Join(dir, "poosms-chat.json")) {
		t.Errorf("stderr %q does not name the broken result", errs.String())
	}
	if !strings.Contains(out.String(), "| figure | prosody |\n") || !strings.Contains(out.String(), "| logins/s | 77 |\n") {
		t.Errorf("the table should have Prosody's column only:\n%s", out.String())
	}
}

func TestCompareNum(t *testing.T) {
	for _, tc := range []struct {
		v      float64
		digits int
		want   string
	}{
		{0, 0, "0"},
		{999, 0, "999"},
		{1000, 0, "1,000"},
		{1234567.891, 2, "1,234,567.89"},
		{-12345, 0, "-12,345"},
		{-0.001, 1, "0.0"},
		{150, -1, "150"},
		{12.5, -1, "12.50"},
	} {
		if got := num(tc.v, tc.digits); got != tc.want {
			t.Errorf("num(%v, %d) = %q, want %q", tc.v, tc.digits, got, tc.want)
		}
	}
}
