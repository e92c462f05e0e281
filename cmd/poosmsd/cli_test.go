package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"poosms.org/poosms/signaling"
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

// "config check" refuses exactly what serve refuses: stray arguments
// (such as the "false" of "--allow-plain false") and unusable paths, with
// exit status 2 naming the setting.
func TestConfigCheckRefusesWhatServeRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := []string{"--data-dir", filepath.Join(dir, "data")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--allow-plain", "false"}, "--allow-plain=false"},
		{[]string{"foo", "bar"}, "takes no arguments"},
		{[]string{"--data-dir", file}, "--data-dir"},
		{[]string{"--data-dir", filepath.Join(file, "sub")}, "--data-dir"},
		{[]string{"--upload-dir", filepath.Join(file, "up")}, "--upload-dir"},
		{[]string{"--db", "sqlite:" + filepath.Join(dir, "no", "such", "dir", "x.db")}, "--db"},
		{[]string{"--db", "sqlite:" + dir}, "--db"},
		{[]string{"--tls-cert", filepath.Join(dir, "missing.pem"), "--tls-key", file}, "--tls-cert"},
		{[]string{"--tls-cert", file, "--tls-key", file}, "--tls-cert"},
	} {
		for _, cmd := range [][]string{{"config", "check"}, {"serve"}} {
			args := append(append(append([]string{}, cmd...), data...), tc.args...)
			if cmd[0] == "serve" && tc.args[0] == "foo" {
				args = append([]string{"serve"}, append(data, tc.args...)...)
			}
			code, _, errOut := runCLI(t, "", args...)
			if code != exitConfig || !strings.Contains(errOut, tc.want) {
				t.Errorf("poosmsd %q: exit %d, stderr %q; want 2 naming %s", args, code, errOut, tc.want)
			}
		}
	}
	// A certificate whose key does not match names --tls-key.
	cert, key := writeKeyPair(t, dir, "a")
	_, otherKey := writeKeyPair(t, dir, "b")
	if code, _, errOut := runCLI(t, "", "config", "check", "--tls-cert", cert, "--tls-key", otherKey, data[0], data[1]); code != exitConfig || !strings.Contains(errOut, "--tls-key") {
		t.Errorf("mismatched key: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "", "config", "check", "--tls-cert", cert, "--tls-key", key, data[0], data[1]); code != exitOK {
		t.Errorf("a good pair: exit %d, %q", code, errOut)
	}
	// A data folder that does not exist yet is fine: the server creates it.
	if code, _, errOut := runCLI(t, "", "config", "check", "--data-dir", filepath.Join(dir, "new", "data")); code != exitOK {
		t.Errorf("new data folder: exit %d, %q", code, errOut)
	}
}

// writeKeyPair writes a self-signed certificate and its key as PEM files.
func writeKeyPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	d := filepath.Join(dir, "tls-"+name)
	if _, err := signaling.LoadOrCreateSelfSigned(d, "localhost"); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(d, "cert.pem"), filepath.Join(d, "key.pem")
}

// Flags may stand before the subcommand, and every user command says
// which database it uses; list, del and passwd never create one.
func TestUserCommandsFlagsFirstAndDataFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, out, errOut := runCLI(t, "", "--data-dir", dir, "user", "list")
	if code != exitFail || !strings.Contains(errOut, filepath.Join(dir, "poosms.db")) || out != "" {
		t.Fatalf("user list without a database: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, sub := range [][]string{{"del", "bob"}, {"passwd", "bob"}} {
		if code, _, errOut := runCLI(t, "new-password-1\n", append([]string{"--data-dir", dir, "user"}, sub...)...); code != exitFail || !strings.Contains(errOut, "no database") {
			t.Errorf("user %s without a database: exit %d, %q", sub[0], code, errOut)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a command that reads created %s (%v)", dir, err)
	}
	code, out, errOut = runCLI(t, "bob-password\n", "--data-dir", dir, "user", "add", "bob")
	if code != exitOK || !strings.Contains(out, "created bob@localhost") || !strings.Contains(errOut, filepath.Join(dir, "poosms.db")) {
		t.Fatalf("flags before user add: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "", "user", "--data-dir", dir, "list")
	if code != exitOK || out != "bob@localhost\n" || !strings.Contains(errOut, filepath.Join(dir, "poosms.db")) {
		t.Fatalf("flags between: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// "poosmsd export FILE" then "poosmsd import FILE" on another server: the
// accounts come over with their passwords, and the file is the owner's
// only. Thousands of bench accounts are one generated file and one import.
func TestExportImportCommands(t *testing.T) {
	src, dst := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dst")
	var gen strings.Builder
	gen.WriteString("<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>")
	for i := range 50 {
		fmt.Fprintf(&gen, "<user name='bench%d' password='bench-password'/>", i)
	}
	gen.WriteString("</host></server-data>")
	accounts := filepath.Join(t.TempDir(), "accounts.xml")
	if err := os.WriteFile(accounts, []byte(gen.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "", "import", accounts, "--data-dir", src); code != exitOK || !strings.Contains(errOut, "imported 50 users") {
		t.Fatalf("import: exit %d, %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "export.xml")
	if code, _, errOut := runCLI(t, "", "--data-dir", src, "export", file); code != exitOK || !strings.Contains(errOut, "exported 50 users") {
		t.Fatalf("export: exit %d, %s", code, errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v, want mode 600", fi, err)
	}
	if code, _, errOut := runCLI(t, "", "import", "--data-dir", dst, file); code != exitOK || !strings.Contains(errOut, "imported 50 users") {
		t.Fatalf("import of the export: exit %d, %s", code, errOut)
	}
	if code, out, _ := runCLI(t, "", "user", "list", "--data-dir", dst); code != exitOK || strings.Count(out, "\n") != 50 {
		t.Fatalf("user list after import: %d\n%s", code, out)
	}
	// Another domain's file imports nothing, and says why.
	if code, _, errOut := runCLI(t, "", "import", file, "--data-dir", dst, "--domain", "example.org"); code != exitFail || !strings.Contains(errOut, "give that --domain") {
		t.Fatalf("import for another domain: exit %d, %s", code, errOut)
	}
	// export never creates a database.
	if code, _, errOut := runCLI(t, "", "export", "--data-dir", filepath.Join(t.TempDir(), "none")); code != exitFail || !strings.Contains(errOut, "no database") {
		t.Fatalf("export without a database: exit %d, %s", code, errOut)
	}
}
