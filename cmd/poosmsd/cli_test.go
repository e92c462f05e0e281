package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, nil, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	at := []string{"--data-dir", dir}
	cmd := func(args ...string) []string { return append(args, at...) }

	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"add", "s3cret-password\n", cmd("user", "add", "Bob"), 0, "created bob@localhost", ""},
		{"add again", "another-password\n", cmd("user", "add", "bob"), 1, "", "already exists"},
		{"empty password", "\n", cmd("user", "add", "carol"), 2, "", "no password given"},
		{"short password", "short\n", cmd("user", "add", "carol"), 2, "", "at least 8 characters"},
		{"bad name", "long-enough-pw\n", cmd("user", "add", "car@ol"), 2, "", "not a valid user name"},
		{"add carol", "carol-password", cmd("user", "add", "carol"), 0, "created carol@localhost", ""},
		{"list", "", cmd("user", "list"), 0, "bob@localhost\ncarol@localhost\n", ""},
		{"passwd", "new-password-1\n", cmd("user", "passwd", "bob"), 0, "changed the password of bob@localhost", ""},
		{"passwd unknown", "new-password-1\n", cmd("user", "passwd", "dave"), 1, "", "no account dave@localhost"},
		{"del", "", cmd("user", "del", "carol"), 0, "deleted carol@localhost", ""},
		{"del unknown", "", cmd("user", "del", "carol"), 1, "", "no account carol@localhost"},
		{"list after del", "", cmd("user", "list"), 0, "bob@localhost\n", ""},
		{"missing name", "", cmd("user", "add"), 2, "", "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tc.code, out, tc.stdout, errOut, tc.stderr)
			}
		})
	}
}

func TestConfigErrorsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-stanza-bytes", "abc"}, "--max-stanza-bytes"},
		{[]string{"config", "check", "--registration", "maybe"}, "--registration"},
		{[]string{"user", "list", "--db", "postgres://x"}, "--db"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"frobnicate"}, "unknown command"},
	} {
		code, _, errOut := runCLI(t, "", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", tc.args, code, errOut, tc.want)
		}
	}
}

func TestConfigCheckAndVersion(t *testing.T) {
	code, out, errOut := runCLI(t, "", "config", "check", "--domain", "Example.ORG", "--turn-secret", "hunter2", "--data-dir", t.TempDir())
	if code != 0 || !strings.Contains(out, "domain: example.org") || strings.Contains(out, "hunter2") || !strings.Contains(errOut, "valid") {
		t.Fatalf("config check: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "poosmsd ") {
		t.Fatalf("version: %d %q", code, out)
	}
}
