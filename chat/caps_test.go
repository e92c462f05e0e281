package chat

import (
	"crypto/sha1"
	"testing"

	"poosms.org/poosms/stanza"
)

// announceCaps sends sess's presence with a sha-1 caps ver and answers the
// server's disco#info query with info (when not nil). It reports whether
// the server asked.
func (h *harness) announceCaps(sess *fakeSession, ver string, info *stanza.Element) (asked bool) {
	h.t.Helper()
	h.send(sess, `<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://client.example' ver='`+ver+`'/></presence>`)
	for _, el := range sess.takeAll() {
		if el.Local != "iq" || el.IQType() != stanza.GetIQ || el.Child(NSDiscoInfo, "query") == nil {
			continue
		}
		asked = true
		if info != nil {
			r := stanza.Result(el, info.Copy().SetAttr("node", "https://client.example#"+ver))
			r.SetAttr("from", "")
			h.svc.HandleStanza(h.t.Context(), sess, r)
		}
	}
	return asked
}

// xform is a XEP-0128 form: FORM_TYPE (typed as typ), then var, value
// pairs.
func xform(typ, formType string, fields ...string) *stanza.Element {
	x := stanza.New(NSDataForms, "x").SetAttr("type", "result")
	ft := stanza.New(NSDataForms, "field").SetAttr("var", "FORM_TYPE").Append(stanza.New(NSDataForms, "value").SetText(formType))
	if typ != "" {
		ft.SetAttr("type", typ)
	}
	x.Append(ft)
	for i := 0; i+1 < len(fields); i += 2 {
		x.Append(stanza.New(NSDataForms, "field").SetAttr("var", fields[i]).
			Append(stanza.New(NSDataForms, "value").SetText(fields[i+1])))
	}
	return x
}

// TestCapsCollidingAnswersNotCached: answers built to hash like a common
// client's (the verification string loses where one factor ends and the
// next begins) but with other features are believed for the session that
// gave them only. Another client announcing the hash is still asked, and
// its genuine answer is what the cache keeps.
func TestCapsCollidingAnswersNotCached(t *testing.T) {
	const (
		disco  = "http://jabber.org/protocol/disco#info"
		avatar = nodeAvatar + "+notify"
	)
	// Sorted as S lists them: disco, avatar, receipts, time.
	genuine := clientInfo(disco, avatar, "urn:xmpp:receipts", "urn:xmpp:time")
	ver := capsVerOf(genuine, sha1.New())
	named := func(name string, features ...string) *stanza.Element {
		q := clientInfo(features...)
		q.Child(NSDiscoInfo, "identity").SetAttr("name", name)
		return q
	}
	for _, tc := range []struct {
		name   string
		forged *stanza.Element
		lacks  string // a feature of the genuine client the forgery lacks
	}{
		// var='…disco#info&lt;urn:xmpp:avatar…' on the wire: the escaped
		// '<' is a character of the feature, and reads as a separator in S.
		{"escaped < joins two features", clientInfo(disco+"<"+avatar, "urn:xmpp:receipts", "urn:xmpp:time"), avatar},
		{"escaped < in the identity's name", named("test<"+disco, avatar, "urn:xmpp:receipts", "urn:xmpp:time"), disco},
		{"identity as a feature", stanza.New(NSDiscoInfo, "query").Append(
			stanza.New(NSDiscoInfo, "feature").SetAttr("var", "client/pc//test"),
			stanza.New(NSDiscoInfo, "feature").SetAttr("var", disco),
			stanza.New(NSDiscoInfo, "feature").SetAttr("var", avatar),
			stanza.New(NSDiscoInfo, "feature").SetAttr("var", "urn:xmpp:receipts"),
			stanza.New(NSDiscoInfo, "feature").SetAttr("var", "urn:xmpp:time")), ""},
		{"trailing features as a form", clientInfo(disco).Append(xform("hidden", avatar, "urn:xmpp:receipts", "urn:xmpp:time")), avatar},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := capsVerOf(tc.forged, sha1.New()); got != ver {
				t.Fatalf("the forgery hashes to %s, not the genuine %s: it tests nothing", got, ver)
			}
			h, _ := newDBHarness(t, Config{}, "bob", "mallory")
			mallory := h.bind("mallory@localhost/m")
			if !h.announceCaps(mallory, ver, tc.forged) {
				t.Fatal("the server did not ask mallory")
			}
			if f, ok := h.svc.caps.lookup("sha-1", ver); ok {
				t.Errorf("the forged answer was cached for everyone: %v", f)
			}
			bob := h.bind("bob@localhost/b")
			if !h.announceCaps(bob, ver, genuine) {
				t.Fatal("bob, announcing the same hash, was not asked: the forgery answers for him")
			}
			f, ok := h.svc.caps.lookup("sha-1", ver)
			if !ok || len(f) != 4 {
				t.Errorf("cached %v, %v: want bob's genuine four features", f, ok)
			}
			if tc.lacks != "" && !h.svc.sessionFeatures(bob)[tc.lacks] {
				t.Errorf("bob's features %v lack %s", h.svc.sessionFeatures(bob), tc.lacks)
			}
		})
	}
}

// TestCapsIllFormedNotCached: XEP-0115 §5.4 answers that are ill-formed
// vouch for no one, even when their hash checks out.
func TestCapsIllFormedNotCached(t *testing.T) {
	for _, tc := range []struct {
		name string
		info *stanza.Element
	}{
		{"repeated feature", clientInfo("urn:a", "urn:a+notify", "urn:a")},
		{"repeated identity", clientInfo("urn:a+notify").Append(
			stanza.New(NSDiscoInfo, "identity").SetAttr("category", "client").SetAttr("type", "pc").SetAttr("name", "test"))},
		{"identity without a type", stanza.New(NSDiscoInfo, "query").Append(
			stanza.New(NSDiscoInfo, "identity").SetAttr("category", "client"),
			stanza.New(NSDiscoInfo, "feature").SetAttr("var", "urn:a+notify"))},
		{"feature reading as an identity", clientInfo("client/pc//other", "urn:a+notify")},
		{"a data form", clientInfo("urn:a+notify").Append(xform("hidden", "urn:xmpp:dataforms:softwareinfo", "os", "Linux"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newDBHarness(t, Config{}, "bob")
			ver := capsVerOf(tc.info, sha1.New())
			s := h.bind("bob@localhost/b")
			h.announceCaps(s, ver, tc.info)
			if _, ok := h.svc.caps.lookup("sha-1", ver); ok {
				t.Error("cached for everyone")
			}
			if !h.svc.sessionFeatures(s)["urn:a+notify"] {
				t.Errorf("the session's own features were not kept: %v", h.svc.sessionFeatures(s))
			}
		})
	}
}

// TestCapsVerifiedEntryKept: the first verified answer for a hash stays;
// a later one with other features does not replace it.
func TestCapsVerifiedEntryKept(t *testing.T) {
	c := newCapsCache()
	c.remember("sha-1", "v=", []string{"urn:a+notify"})
	c.remember("sha-1", "v=", []string{"urn:b+notify"})
	if f, _ := c.lookup("sha-1", "v="); len(f) != 1 || f[0] != "urn:a+notify" {
		t.Errorf("cached %v, want the first verified answer", f)
	}
	if _, ok := c.lookup("sha-256", "v="); ok {
		t.Error("a hash is known under another algorithm")
	}
}

// TestCapsFormsInTheHash: XEP-0115 §5.3's example with a data form, and
// forms §5.4 leaves out of S (no FORM_TYPE, or one that is not hidden).
func TestCapsFormsInTheHash(t *testing.T) {
	psi := stanza.New(NSDiscoInfo, "query")
	for _, id := range [][2]string{{"en", "Psi 0.11"}, {"el", "Ψ 0.11"}} {
		ident := stanza.New(NSDiscoInfo, "identity").SetAttr("category", "client").SetAttr("type", "pc").SetAttr("name", id[1])
		ident.Attrs = append(ident.Attrs, stanza.Attr{Space: stanza.NSXML, Local: "lang", Value: id[0]})
		psi.Append(ident)
	}
	for _, f := range []string{"http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
		"http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc"} {
		psi.Append(stanza.New(NSDiscoInfo, "feature").SetAttr("var", f))
	}
	form := xform("hidden", "urn:xmpp:dataforms:softwareinfo", "os", "Mac", "os_version", "10.5.1", "software", "Psi", "software_version", "0.11")
	form.Append(stanza.New(NSDataForms, "field").SetAttr("var", "ip_version").Append(
		stanza.New(NSDataForms, "value").SetText("ipv6"), stanza.New(NSDataForms, "value").SetText("ipv4")))
	psi.Append(form)
	const want = "q07IKJEyjvHSyhy//CH0CxmKi8w="
	if got := capsVerOf(psi, sha1.New()); got != want {
		t.Errorf("ver = %s, want %s", got, want)
	}
	psi.Append(xform("", "urn:example:not-hidden", "a", "b"), stanza.New(NSDataForms, "x").SetAttr("type", "result"))
	if got := capsVerOf(psi, sha1.New()); got != want {
		t.Errorf("with forms §5.4 ignores, ver = %s, want %s", got, want)
	}
}
