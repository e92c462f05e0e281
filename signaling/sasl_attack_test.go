package signaling

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// rawSCRAM is a SCRAM client that sends exactly the messages it is given,
// so tests can try what a well-behaved library would never send.
type rawSCRAM struct {
	t    *testing.T
	c    *xmppclient.Client
	mech string
	h    func() hash.Hash
}

func newRawSCRAM(t *testing.T, h *harness, mech string) *rawSCRAM {
	t.Helper()
	c, err := xmppclient.Connect(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawSCRAM{t: t, c: c, mech: mech, h: sha256.New}
	if strings.HasPrefix(mech, "SCRAM-SHA-1") {
		r.h = sha1.New
	}
	return r
}

// first sends the client-first message and returns the server-first one,
// or the failure condition.
func (r *rawSCRAM) first(msg string) (serverFirst, cond string) {
	r.t.Helper()
	r.c.SendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + r.mech + "'>" + b64(msg) + "</auth>")
	return r.answer("challenge")
}

func (r *rawSCRAM) answer(want string) (text, cond string) {
	r.t.Helper()
	el, err := r.c.Recv()
	if err != nil {
		r.t.Fatalf("reading the server's answer: %v", err)
	}
	switch el.Local {
	case want:
		return unb64(el.Text()), ""
	case "failure":
		if f := el.FirstElement(); f != nil {
			return "", f.Local
		}
		return "", "failure without a condition"
	}
	r.t.Fatalf("got %s, want <%s/> or <failure/>", el, want)
	return "", ""
}

// proof computes the client-final message for password over the exact
// messages exchanged; finalExtra goes between r= and p=.
func (r *rawSCRAM) final(password, gs2, clientFirstBare, serverFirst, finalExtra string) string {
	r.t.Helper()
	attrs := map[string]string{}
	for _, f := range strings.Split(serverFirst, ",") {
		if k, v, ok := strings.Cut(f, "="); ok {
			attrs[k] = v
		}
	}
	salt, _ := base64.StdEncoding.DecodeString(attrs["s"])
	iters, _ := strconv.Atoi(attrs["i"])
	salted, err := pbkdf2.Key(r.h, password, salt, iters, r.h().Size())
	if err != nil {
		r.t.Fatal(err)
	}
	mac := func(key []byte, s string) []byte { m := hmac.New(r.h, key); m.Write([]byte(s)); return m.Sum(nil) }
	clientKey := mac(salted, "Client Key")
	hh := r.h()
	hh.Write(clientKey)
	storedKey := hh.Sum(nil)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(gs2)) + ",r=" + attrs["r"] + finalExtra
	sig := mac(storedKey, clientFirstBare+","+serverFirst+","+withoutProof)
	for i := range sig {
		sig[i] ^= clientKey[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(sig)
}

// login runs a whole exchange with the given GS2 header and bare message,
// proving password, and reports the failure condition ("" on success) and,
// on success, the JID the stream binds.
func (r *rawSCRAM) login(password, gs2, bare, finalExtra string) (cond, bound string) {
	r.t.Helper()
	sf, cond := r.first(gs2 + bare)
	if cond != "" {
		return cond, ""
	}
	r.c.SendRaw("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + b64(r.final(password, gs2, bare, sf, finalExtra)) + "</response>")
	if _, cond := r.answer("success"); cond != "" {
		return cond, ""
	}
	if err := r.c.Restart(); err != nil {
		r.t.Fatalf("restart after success: %v", err)
	}
	r.c.Send(stanza.NewIQ(stanza.SetIQ).SetAttr("id", "b").
		Append(stanza.New(nsBind, "bind")))
	el, err := r.c.Recv()
	if err != nil || el.IQType() != stanza.ResultIQ {
		r.t.Fatalf("bind: %v %v", el, err)
	}
	return "", el.Child(nsBind, "bind").ChildText(nsBind, "jid")
}

// TestSCRAMIdentityIsTheProvedOne is the regression test for the login
// bypass: a proof made with bob's password for a message that also names
// alice must never bind as alice.
func TestSCRAMIdentityIsTheProvedOne(t *testing.T) {
	h := newHarness(t, nil)
	for _, mech := range []string{"SCRAM-SHA-1", "SCRAM-SHA-256"} {
		t.Run(mech, func(t *testing.T) {
			for _, tc := range []struct {
				name, gs2, bare, extra string
				want                   string // failure condition, "" for success
			}{
				{"bob logs in as bob", "n,,", "n=bob,r=abcdefgh", "", ""},
				{"second n= names alice", "n,,", "n=bob,r=abcdefgh,n=alice", "", "malformed-request"},
				{"n= after r=", "n,,", "r=abcdefgh,n=bob", "", "malformed-request"},
				{"mandatory extension", "n,,", "m=ext,n=bob,r=abcdefgh", "", "malformed-request"},
				{"repeated nonce", "n,,", "n=bob,r=abcdefgh,r=ijkl", "", "malformed-request"},
				{"badly escaped name", "n,,", "n=b=ob,r=abcdefgh", "", "malformed-request"},
				{"authzid of another user", "n,a=alice@localhost,", "n=bob,r=abcdefgh", "", "invalid-authzid"},
				{"authzid of another domain", "n,a=bob@elsewhere.example,", "n=bob,r=abcdefgh", "", "invalid-authzid"},
				{"authzid is own bare JID", "n,a=bob@localhost,", "n=bob,r=abcdefgh", "", ""},
				{"downgrade: y while -PLUS offered", "y,,", "n=bob,r=abcdefgh", "", "not-authorized"},
				{"unknown extension in final", "n,,", "n=bob,r=abcdefgh", ",x=1", ""},
				{"second nonce in final", "n,,", "n=bob,r=abcdefgh", ",r=zz", "malformed-request"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := newRawSCRAM(t, h, mech)
					cond, bound := r.login("bob-secret", tc.gs2, tc.bare, tc.extra)
					if cond != tc.want {
						t.Fatalf("condition %q (bound %q), want %q", cond, bound, tc.want)
					}
					if cond == "" && !strings.HasPrefix(bound, "bob@localhost/") {
						t.Fatalf("bound %q, want bob@localhost/…", bound)
					}
				})
			}
		})
	}
}

// TestSCRAMYAfterUnsupportedBinding: a client that can bind only with a
// type the server lacks (slixmpp knows only tls-unique, which TLS 1.3 does
// not define) tries -PLUS, fails, and may then say "y" honestly.
func TestSCRAMYAfterUnsupportedBinding(t *testing.T) {
	h := newHarness(t, nil)
	r := newRawSCRAM(t, h, "SCRAM-SHA-1-PLUS")
	if _, cond := r.first("p=tls-unique,,n=bob,r=abcdefgh"); cond != "malformed-request" {
		t.Fatalf("p=tls-unique: condition %q, want malformed-request", cond)
	}
	r.mech = "SCRAM-SHA-1"
	if cond, bound := r.login("bob-secret", "y,,", "n=bob,r=abcdefgh", ""); cond != "" || !strings.HasPrefix(bound, "bob@localhost/") {
		t.Fatalf("y after an unsupported binding type: condition %q, bound %q", cond, bound)
	}
	// Another stream that never tried -PLUS is refused.
	r = newRawSCRAM(t, h, "SCRAM-SHA-1")
	if cond, _ := r.login("bob-secret", "y,,", "n=bob,r=abcdefgh", ""); cond != "not-authorized" {
		t.Fatalf("y on a fresh stream: condition %q, want not-authorized", cond)
	}
}

// TestPlainAuthzid: PLAIN takes only the user's own bare JID as authzid.
func TestPlainAuthzid(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct{ authzid, want string }{
		{"", ""},
		{"bob@localhost", ""},
		{"alice@localhost", "invalid-authzid"},
		{"bob@localhost.evil.example", "invalid-authzid"},
		{"bob@localhost/res", "invalid-authzid"},
	} {
		c, err := xmppclient.Connect(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c.SendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + b64(tc.authzid+"\x00bob\x00bob-secret") + "</auth>")
		el, err := c.Recv()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if el.Local == "failure" {
			got = el.FirstElement().Local
		}
		if got != tc.want {
			t.Errorf("authzid %q: got %s, want %q", tc.authzid, el, tc.want)
		}
	}
}
