package turn

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNewCredentials(t *testing.T) {
	now := time.Unix(1_700_000_000, 123)
	c := NewCredentials([]byte("s3cret"), "alice@example.test", 2*time.Hour, now)
	if want := "1700007200:alice@example.test"; c.Username != want {
		t.Errorf("Username = %q, want %q", c.Username, want)
	}
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(c.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); c.Password != want {
		t.Errorf("Password = %q, want %q", c.Password, want)
	}
	if want := time.Unix(1_700_007_200, 0); !c.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v", c.Expires, want)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"username", "password", "expires"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON %s lacks %q", raw, k)
		}
	}
}

// TestCredentialsDocExample pins the example in docs/turn.md, whose
// password was computed independently of this package.
func TestCredentialsDocExample(t *testing.T) {
	c := NewCredentials([]byte("example-secret"), "alice@example.org", 0, time.Unix(1764201600, 0))
	if c.Username != "1764201600:alice@example.org" || c.Password != "DI+EHl0E9e0i5bPxoVcR8DWK8YY=" {
		t.Errorf("got %q / %q, want the documented example", c.Username, c.Password)
	}
}

func TestSplitUsername(t *testing.T) {
	for _, tc := range []struct {
		in   string
		exp  int64
		user string
		ok   bool
	}{
		{"1700000000:alice", 1700000000, "alice", true},
		{"1700000000:a:b", 1700000000, "a:b", true},
		{"1700000000:", 0, "", false},
		{"alice", 0, "", false},
		{":alice", 0, "", false},
		{"-5:alice", 0, "", false},
		{"12x:alice", 0, "", false},
	} {
		exp, user, ok := splitUsername(tc.in)
		if ok != tc.ok || (ok && (exp.Unix() != tc.exp || user != tc.user)) {
			t.Errorf("splitUsername(%q) = %v, %q, %v; want %d, %q, %v", tc.in, exp.Unix(), user, ok, tc.exp, tc.user, tc.ok)
		}
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if len(first) < 16 {
		t.Errorf("generated secret has %d bytes, want at least 16", len(first))
	}
	fi, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("secret file mode %o, want 600", perm)
	}
	second, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if !bytes.Equal(first, second) {
		t.Error("second call returned a different secret")
	}
	other, err := LoadOrCreateSecret(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, other) {
		t.Error("two data directories got the same secret")
	}

	byPath, err := LoadOrCreateSecretFile(filepath.Join(dir, SecretFile))
	if err != nil || !bytes.Equal(byPath, first) {
		t.Errorf("LoadOrCreateSecretFile on the same file = %x, %v; want the stored secret", byPath, err)
	}

	if err := os.WriteFile(filepath.Join(dir, SecretFile), []byte("not base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecret(dir); err == nil {
		t.Error("a corrupt secret file was accepted")
	}
}
