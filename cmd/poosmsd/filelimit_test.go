package main

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"testing"
)

// TestFileLimitLogged: the limit is logged at start, and a limit too low
// for a planned node is a warning that says what it was compared with.
func TestFileLimitLogged(t *testing.T) {
	for _, tc := range []struct {
		lim  fileLimit
		warn bool
	}{
		{fileLimit{soft: 1024, hard: 4096}, true},
		{fileLimit{soft: 11_023, hard: 11_023}, true},
		{fileLimit{soft: 11_024, hard: 11_024}, false},
		{fileLimit{soft: 20_000, hard: 20_000}, false},
		{fileLimit{soft: 1 << 20, hard: 1 << 20}, false},
	} {
		var buf bytes.Buffer
		logFileLimit(slog.New(slog.NewTextHandler(&buf, nil)), tc.lim, true)
		out := buf.String()
		if !strings.Contains(out, "msg=\"open-file limit\"") || !strings.Contains(out, "soft=") {
			t.Errorf("%+v: no limit logged: %s", tc.lim, out)
		}
		if got := strings.Contains(out, "level=WARN"); got != tc.warn {
			t.Errorf("%+v: warned = %v, want %v: %s", tc.lim, got, tc.warn, out)
		}
		if tc.warn && (!strings.Contains(out, "compared_with=11024") || !strings.Contains(out, "LimitNOFILE")) {
			t.Errorf("%+v: the warning does not say what it compared or how to fix it: %s", tc.lim, out)
		}
	}
	var buf bytes.Buffer
	logFileLimit(slog.New(slog.NewTextHandler(&buf, nil)), fileLimit{}, false)
	if buf.Len() != 0 {
		t.Errorf("an unknown limit logged %q", buf.String())
	}
}

// TestCurrentFileLimit: on Unix the process's own limit is read, as the
// kernel has it.
func TestCurrentFileLimit(t *testing.T) {
	l, ok := currentFileLimit()
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		if ok {
			t.Fatalf("a limit %+v where there is none", l)
		}
		return
	}
	if !ok || l.soft == 0 || l.hard < l.soft {
		t.Fatalf("limit = %+v, %v", l, ok)
	}
}
