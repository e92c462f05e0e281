package sasl

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/store"
)

const fuzzPassword = "correct horse battery"

// fuzzOptions is one account, alice, on a TLS stream of localhost, with
// the server's own username normalisation (PRECIS through the JID rules).
func fuzzOptions(f *testing.F) Options {
	cred, err := Derive(fuzzPassword, []byte("0123456789abcdef"), MinIterations)
	if err != nil {
		f.Fatal(err)
	}
	return Options{
		TLS: &tls.ConnectionState{},
		Lookup: func(_ context.Context, u string) (store.Credentials, error) {
			if u == "alice" {
				return cred, nil
			}
			return store.Credentials{}, store.ErrNotFound
		},
		Normalize: func(u string) (string, error) {
			j, err := jid.New(u, "localhost", "")
			if err != nil {
				return "", err
			}
			return j.Localpart(), nil
		},
		FakeKey:    []byte("fuzz"),
		Iterations: MinIterations,
		Domain:     "localhost",
	}
}

// encodeSASLName is decodeSASLName's inverse.
func encodeSASLName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

// FuzzSCRAMClientFirst: what the strict parser accepts is a well-formed
// client-first message whose fields, written again, parse to the same.
func FuzzSCRAMClientFirst(f *testing.F) {
	for _, s := range []string{
		"n,,n=alice,r=abc",
		"y,,n=alice,r=abc",
		"p=tls-exporter,,n=alice,r=abc",
		"n,a=alice@localhost,n=alice,r=abc",
		"n,,n=al=2Cice=3D,r=abc,x=ext",
		"n,,n=mallory,r=abc,n=alice",
		"n,,m=x,n=alice,r=abc",
		"n,,n=alice,r=",
		"n,,n=a=2,r=abc",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		cf, fail := parseClientFirst(msg)
		if fail != nil {
			if fail.Condition != "malformed-request" {
				t.Fatalf("%q: condition %q", msg, fail.Condition)
			}
			return
		}
		if cf.user == "" || cf.nonce == "" || strings.Contains(cf.nonce, ",") {
			t.Fatalf("%q accepted with user %q, nonce %q", msg, cf.user, cf.nonce)
		}
		gs2 := cf.flag
		if cf.flag == "p" {
			gs2 = "p=" + cf.cbType
		}
		authz := ""
		if cf.authzid != "" {
			authz = "a=" + encodeSASLName(cf.authzid)
		}
		again := gs2 + "," + authz + ",n=" + encodeSASLName(cf.user) + ",r=" + cf.nonce
		cf2, fail := parseClientFirst(again)
		if fail != nil || cf2 != cf {
			t.Fatalf("%q parsed to %+v; written again %q parses to %+v (%v)", msg, cf, again, cf2, fail)
		}
	})
}

// FuzzSCRAMClientFinal: an accepted client-final message has a nonce and a
// non-empty proof, and its only extensions are ones SCRAM does not define.
func FuzzSCRAMClientFinal(f *testing.F) {
	for _, s := range []string{
		"c=biws,r=abcdef,p=dGVzdA==",
		"c=biws,r=abcdef,x=1,p=dGVzdA==",
		"c=biws,r=abcdef,r=x,p=dGVzdA==",
		"c=,r=a,p=",
		"c=biws,p=dGVzdA==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		cf, fail := parseClientFinal(msg)
		if fail != nil {
			return
		}
		if cf.nonce == "" || len(cf.proof) == 0 || !strings.HasPrefix(msg, "c=") {
			t.Fatalf("%q accepted as %+v", msg, cf)
		}
		fields := strings.Split(msg, ",")
		for _, fl := range fields[2 : len(fields)-1] {
			if strings.IndexByte("amnrcspive", fl[0]) >= 0 {
				t.Fatalf("%q accepted with attribute %q out of place", msg, fl)
			}
		}
	})
}

// FuzzSCRAMExchange runs the server side of SCRAM-SHA-256 and -SHA-1 on a
// client-first and a client-final message chosen by the fuzzer. Without
// alice's password no input may log in, and a failure is a SASL
// condition, never an internal error.
func FuzzSCRAMExchange(f *testing.F) {
	opt := fuzzOptions(f)
	for _, s := range [][2]string{
		{"n,,n=alice,r=abc", "c=biws,r=abc,p=dGVzdA=="},
		{"n,,n=Alice,r=abc", "c=biws,r=abcXYZ,p=dGVzdA=="},
		{"y,,n=alice,r=abc", "c=eSws,r=abc,p=dGVzdA=="},
		{"n,a=alice@localhost,n=alice,r=abc", "c=bixhPWFsaWNlQGxvY2FsaG9zdCw=,r=abc,p=dGVzdA=="},
		{"p=tls-exporter,,n=alice,r=abc", "c=,r=abc,p=dGVzdA=="},
		{"n,,n=\u2126,r=x", "c=biws,r=x,p=AA=="},
	} {
		f.Add(s[0], s[1], false)
		f.Add(s[0], s[1], true)
	}
	f.Fuzz(func(t *testing.T, first, final string, sha1 bool) {
		name := ScramSHA256
		if sha1 {
			name = ScramSHA1
		}
		m, err := New(name, opt)
		if err != nil {
			t.Fatal(err)
		}
		out, done, err := m.Step(context.Background(), []byte(first))
		if err != nil {
			checkFailure(t, err)
			return
		}
		if done || !strings.HasPrefix(string(out), "r=") {
			t.Fatalf("client-first %q: done %v, server-first %q", first, done, out)
		}
		cf, _ := parseClientFirst(first)
		if !strings.HasPrefix(string(out), "r="+cf.nonce) {
			t.Fatalf("server nonce %q does not extend the client's %q", out, cf.nonce)
		}
		_, done, err = m.Step(context.Background(), []byte(final))
		if err == nil || done {
			t.Fatalf("logged in as %q without the password: %q, %q", m.Username(), first, final)
		}
		checkFailure(t, err)
	})
}

// FuzzPlain: PLAIN logs in only with alice's password, as alice, and with
// no authorization identity but her own.
func FuzzPlain(f *testing.F) {
	opt := fuzzOptions(f)
	for _, s := range []string{
		"\x00alice\x00" + fuzzPassword,
		"alice@localhost\x00alice\x00" + fuzzPassword,
		"bob@localhost\x00alice\x00" + fuzzPassword,
		"\x00ALICE\x00" + fuzzPassword,
		"\x00alice\x00wrong",
		"\x00\x00",
		"alice",
		"\x00al\u0130ce\x00x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := New(Plain, opt)
		if err != nil {
			t.Fatal(err)
		}
		_, done, err := m.Step(context.Background(), in)
		if err != nil {
			checkFailure(t, err)
			return
		}
		parts := strings.Split(string(in), "\x00")
		if !done || m.Username() != "alice" || len(parts) != 3 || parts[2] != fuzzPassword {
			t.Fatalf("%q logged in as %q (done %v)", in, m.Username(), done)
		}
		if a := parts[0]; a != "" {
			local, domain, at := strings.Cut(a, "@")
			n, err := opt.Normalize(local)
			if err != nil || n != "alice" || at && !strings.EqualFold(domain, "localhost") {
				t.Fatalf("%q logged in as alice with authzid %q", in, a)
			}
		}
	})
}

// checkFailure fails t unless err is a SASL failure with a condition.
func checkFailure(t *testing.T, err error) {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) || f.Condition == "" {
		t.Fatalf("error %v is not a SASL failure", err)
	}
}
