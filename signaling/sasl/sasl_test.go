package sasl

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/xdg-go/scram"

	"poosms.org/poosms/store"
)

func TestNewCredentials(t *testing.T) {
	if _, err := NewCredentials("", 0); err == nil {
		t.Fatal("empty password accepted")
	}
	if _, err := NewCredentials("short", 0); err != ErrPasswordTooShort {
		t.Fatalf("short password: %v", err)
	}
	c, err := NewCredentials("correct horse", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Iterations < 4096 || len(c.Salt) < 16 || len(c.StoredKeySHA1) != 20 || len(c.StoredKeySHA256) != 32 {
		t.Fatalf("weak or incomplete verifiers: %+v", c)
	}
	c2, _ := NewCredentials("correct horse", 0)
	if string(c.Salt) == string(c2.Salt) {
		t.Fatal("two accounts share a salt")
	}
	if !CheckPassword(c, "correct horse") || CheckPassword(c, "correct horsE") {
		t.Fatal("CheckPassword is wrong")
	}
}

// exchange runs a whole SCRAM conversation between xdg-go's client and
// our server mechanism.
func exchange(t *testing.T, mech, password string, conv *scram.ClientConversation, opt Options) error {
	t.Helper()
	m, err := New(mech, opt)
	if err != nil {
		return err
	}
	in, _ := conv.Step("")
	for {
		out, done, err := m.Step(context.Background(), []byte(in))
		if err != nil {
			return err
		}
		if done {
			_, err := conv.Step(string(out))
			return err
		}
		in, err = conv.Step(string(out))
		if err != nil {
			return err
		}
	}
}

func TestSCRAM(t *testing.T) {
	cred, _ := NewCredentials("alice-secret", 0)
	opt := Options{
		Lookup: func(_ context.Context, u string) (store.Credentials, error) {
			if u == "alice" {
				return cred, nil
			}
			return store.Credentials{}, store.ErrNotFound
		},
		Normalize: func(u string) (string, error) { return u, nil },
		FakeKey:   []byte("k"),
	}
	for _, tc := range []struct {
		name, mech, user, pass string
		h                      scram.HashGeneratorFcn
		cond                   string
	}{
		{"sha-256", ScramSHA256, "alice", "alice-secret", scram.SHA256, ""},
		{"sha-1", ScramSHA1, "alice", "alice-secret", scram.SHA1, ""},
		{"wrong password", ScramSHA256, "alice", "nope-nope", scram.SHA256, "not-authorized"},
		{"unknown user looks the same", ScramSHA256, "mallory", "whatever", scram.SHA256, "not-authorized"},
		{"proof of the wrong hash", ScramSHA1, "alice", "alice-secret", scram.SHA256, "malformed-request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := tc.h.NewClient(tc.user, tc.pass, "")
			err := exchange(t, tc.mech, tc.pass, c.NewConversation(), opt)
			f, _ := err.(*Failure)
			switch {
			case tc.cond == "" && err != nil:
				t.Fatalf("login failed: %v", err)
			case tc.cond != "" && (f == nil || f.Condition != tc.cond):
				t.Fatalf("err = %v, want %s", err, tc.cond)
			}
		})
	}
}

func TestPlainNeedsTLS(t *testing.T) {
	if _, err := New(Plain, Options{}); err == nil {
		t.Fatal("PLAIN allowed without TLS")
	}
	if _, err := New(Plain, Options{TLS: &tls.ConnectionState{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := New("DIGEST-MD5", Options{}); err == nil {
		t.Fatal("unknown mechanism accepted")
	}
}

// An account imported with only SCRAM-SHA-1 data (Prosody's default):
// SCRAM-SHA-1 and the password check work, SCRAM-SHA-256 fails exactly
// like a wrong password.
func TestSHA1OnlyCredentials(t *testing.T) {
	cred, _ := NewCredentials("alice-secret", 0)
	cred.StoredKeySHA256, cred.ServerKeySHA256 = nil, nil
	if !MissingVerifier(cred) {
		t.Error("MissingVerifier is false for an account without SCRAM-SHA-256")
	}
	if !CheckPassword(cred, "alice-secret") || CheckPassword(cred, "alice-secreT") {
		t.Fatal("CheckPassword ignores the SCRAM-SHA-1 verifier")
	}
	opt := Options{
		Lookup:    func(context.Context, string) (store.Credentials, error) { return cred, nil },
		Normalize: func(u string) (string, error) { return u, nil },
		FakeKey:   []byte("k"),
	}
	c1, _ := scram.SHA1.NewClient("alice", "alice-secret", "")
	if err := exchange(t, ScramSHA1, "alice-secret", c1.NewConversation(), opt); err != nil {
		t.Fatalf("SCRAM-SHA-1: %v", err)
	}
	c256, _ := scram.SHA256.NewClient("alice", "alice-secret", "")
	if f, ok := exchange(t, ScramSHA256, "alice-secret", c256.NewConversation(), opt).(*Failure); !ok || f.Condition != "not-authorized" {
		t.Fatalf("SCRAM-SHA-256 without its verifier: %v, want not-authorized", f)
	}
}
