package stanza

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseAndSerialise(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"message keeps namespace and text",
			`<message xmlns='jabber:client' to='bob@x' type='chat'><body>hi &amp; &lt;bye&gt;</body></message>`,
			`<message xmlns='jabber:client' to='bob@x' type='chat'><body>hi &amp; &lt;bye&gt;</body></message>`},
		{"default namespace for stanzas without one",
			`<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`,
			`<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`},
		{"prefixed children keep their namespace",
			`<message xmlns='jabber:client' xmlns:x='urn:x'><x:thing a='1'/></message>`,
			`<message xmlns='jabber:client'><thing xmlns='urn:x' a='1'/></message>`},
		{"xml:lang survives",
			`<message xmlns='jabber:client' xml:lang='fr'><body>salut</body></message>`,
			`<message xmlns='jabber:client' xml:lang='fr'><body>salut</body></message>`},
		{"quotes in attributes are escaped",
			`<presence xmlns='jabber:client'><status a="it's &quot;ok&quot;">x</status></presence>`,
			`<presence xmlns='jabber:client'><status a='it&apos;s &quot;ok&quot;'>x</status></presence>`},
		{"unicode text", `<message xmlns='jabber:client'><body>日本語 ✓</body></message>`,
			`<message xmlns='jabber:client'><body>日本語 ✓</body></message>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := el.String(); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			// Serialising inside a jabber:client stream omits the top xmlns.
			inStream := string(el.AppendXML(nil, NSClient))
			if strings.Contains(strings.SplitN(inStream, ">", 2)[0], "xmlns='jabber:client'") {
				t.Fatalf("in-stream form repeats the stream namespace: %s", inStream)
			}
			again, err := Parse([]byte(el.String()))
			if err != nil || again.String() != el.String() {
				t.Fatalf("round trip changed %s into %v (%v)", el, again, err)
			}
		})
	}
}

func TestParseRefusesRestrictedXML(t *testing.T) {
	for _, in := range []string{
		`<!DOCTYPE x [<!ENTITY a 'b'>]><message/>`,
		`<message><!-- hidden --></message>`,
		`<?php evil?><message/>`,
		`<message><?pi x?></message>`,
	} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrRestrictedXML) {
			t.Errorf("%s: err = %v, want ErrRestrictedXML", in, err)
		}
	}
	for _, in := range []string{`<message>&undeclared;</message>`, `<message>`, `<a/><b/>`, `text`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s was accepted", in)
		}
	}
}

func TestErrorReply(t *testing.T) {
	orig, _ := Parse([]byte(`<message xmlns='jabber:client' from='a@x/r' to='b@x' id='7' type='chat'><body>hi</body></message>`))
	r := ErrorReply(orig, "service-unavailable", "nobody here")
	want := `<message xmlns='jabber:client' id='7' type='error' to='a@x/r' from='b@x'><body>hi</body>` +
		`<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>` +
		`<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>nobody here</text></error></message>`
	if got := r.String(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if orig.MessageType() != ChatMessage {
		t.Fatal("ErrorReply changed the original")
	}
}

func TestCopyIsDeep(t *testing.T) {
	el, _ := Parse([]byte(`<message xmlns='jabber:client'><body>a</body></message>`))
	c := el.Copy()
	c.Child("", "body").SetText("b")
	c.SetAttr("to", "x@y")
	if el.ChildText("", "body") != "a" || el.To() != "" {
		t.Fatalf("copy shares state: %s", el)
	}
}

func BenchmarkAppendXML(b *testing.B) {
	el, _ := Parse([]byte(`<message xmlns='jabber:client' to='bob@localhost' from='alice@localhost/laptop' type='chat' id='abc'><body>hello there, how are you?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`))
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = el.AppendXML(buf[:0], NSClient)
	}
}

// Every defined condition has its RFC 6120 type; a condition outside the
// set goes out as undefined-condition rather than under a guessed type.
func TestConditionTypes(t *testing.T) {
	for c, want := range map[Condition]ErrorType{
		BadRequest: ErrModify, Forbidden: ErrAuth, ItemNotFound: ErrCancel,
		ResourceConstraint: ErrWait, Redirect: ErrModify, Gone: ErrCancel,
	} {
		if got := c.Type(); got != want {
			t.Errorf("%s: type %q, want %q", c, got, want)
		}
	}
	for c := range conditionType {
		if !c.Defined() {
			t.Errorf("%s is not defined", c)
		}
	}
	if len(conditionType) != 22 {
		t.Errorf("%d conditions, want the 22 of RFC 6120 §8.3.3", len(conditionType))
	}
	orig, _ := Parse([]byte(`<iq xmlns='jabber:client' from='a@x/r' to='x' id='1' type='get'/>`))
	r := ErrorReply(orig, "no-such-condition", "")
	if got := ErrorCondition(r); got != UndefinedCondition {
		t.Errorf("an unknown condition went out as %q", got)
	}
	if typ := r.Child("", "error").Attr("type"); typ != string(ErrCancel) {
		t.Errorf("undefined-condition went out with type %q", typ)
	}
}

// The server's own strings may quote a peer's bytes (a parse error's text
// holding invalid UTF-8); what it writes stays well-formed XML. Found by
// FuzzTCPStream: "&\x8f " made a stream error that clients could not parse.
func TestSerialisedTextIsAlwaysXML(t *testing.T) {
	for _, s := range []string{"&\x8f (no semicolon)", "a\x01b\x1fc", "\uFFFE\uFFFF", "ok \t\n\r é 😀 \uFFFD"} {
		el := New(NSClient, "message").SetAttr("id", s).Append(New("", "body").SetText(s))
		out := el.String()
		back, err := Parse([]byte(out))
		if err != nil {
			t.Fatalf("%q serialised as %q, which does not parse: %v", s, out, err)
		}
		want := strings.Map(func(r rune) rune {
			if r == utf8.RuneError || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
				return '\uFFFD'
			}
			return r
		}, s)
		if got := back.ChildText("", "body"); got != want {
			t.Errorf("%q came back as %q, want %q", s, got, want)
		}
		if got := back.ID(); got != want {
			t.Errorf("attribute %q came back as %q, want %q", s, got, want)
		}
		if Escape(s) == s {
			t.Errorf("Escape(%q) left it unchanged", s)
		}
	}
}
