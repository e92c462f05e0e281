package signaling

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"poosms.org/poosms/stanza"
)

// manyAttrs is n distinct attributes.
func manyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(" a" + strconv.Itoa(i) + "=''")
	}
	return b.String()
}

// A stanza past a shape limit ends only its stream with policy-violation,
// and it is refused while it is still arriving: the stanzas below are cut
// short (never closed), so the server answered from what it had counted,
// not from a tree of the whole.
func TestStanzaShapeLimits(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.StanzaLimits = stanza.Limits{MaxElements: 100, MaxDepth: 8, MaxAttributes: 50}
	})
	alice := h.dial(t, "alice", "desk", nil)
	bob := h.dial(t, "bob", "desk", nil)
	to := "<message to='bob@localhost/desk' type='chat'>"
	for _, tc := range []struct {
		name, input, cond string
	}{
		{"too many elements", to + strings.Repeat("<a/>", 100), "policy-violation"},
		{"too deep", to + strings.Repeat("<a>", 8), "policy-violation"},
		{"too many attributes in one tag, before it ends", to + "<a" + manyAttrs(51), "policy-violation"},
		{"too many attributes in all", to + strings.Repeat("<a"+manyAttrs(10)+"/>", 5), "policy-violation"},
		{"a duplicate from", "<message to='bob@localhost/desk' from='carol@localhost/desk' from='alice@localhost/desk'/>", "not-well-formed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			carol := h.dial(t, "carol", "desk", nil)
			if _, err := io.WriteString(carol.Conn(), tc.input); err != nil {
				t.Fatal(err)
			}
			out := readUntilClosed(t, carol.Conn())
			if !strings.Contains(out, "<"+tc.cond+" xmlns='urn:ietf:params:xml:ns:xmpp-streams'") || !strings.HasSuffix(out, "</stream:stream>") {
				t.Fatalf("server wrote %q; want stream error %s and the end of the stream", out, tc.cond)
			}
			exchange(t, alice, bob, "still here after "+tc.name)
		})
	}
	// A stanza within the limits goes through.
	ok := msg(bob.JID.String(), "within")
	for range 90 {
		ok.Append(stanza.New(stanza.NSClient, "a"))
	}
	if err := alice.Send(ok); err != nil {
		t.Fatal(err)
	}
	el, err := bob.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
	if err != nil || len(el.Elements()) != 91 { // body and 90 <a/>
		t.Fatalf("bob got %v, %v; want the message with its 91 children", el, err)
	}
}

// WebSocket frames are parsed within the same limits.
func TestWebSocketShapeLimits(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct{ name, frame string }{
		{"elements", "<message xmlns='jabber:client'>" + strings.Repeat("<a/>", stanza.DefaultMaxElements) + "</message>"},
		{"depth", "<message xmlns='jabber:client'>" + strings.Repeat("<a>", stanza.DefaultMaxDepth) + strings.Repeat("</a>", stanza.DefaultMaxDepth) + "</message>"},
		{"attributes", "<message xmlns='jabber:client'><a" + manyAttrs(stanza.DefaultMaxAttributes) + "/></message>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.ws.URL, "http"), &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			ws.SetReadLimit(1 << 20)
			for _, f := range []string{"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>", tc.frame} {
				if err := ws.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
					t.Fatal(err)
				}
			}
			for {
				_, b, err := ws.Read(ctx)
				if err != nil {
					t.Fatalf("no stream error before the end: %v", err)
				}
				if strings.Contains(string(b), "<policy-violation") {
					return
				}
			}
		})
	}
}

// The TCP stream counts shapes before authentication too: a stanza that
// is too deep is refused before SASL.
func TestShapeLimitsBeforeAuth(t *testing.T) {
	h := newHarness(t, nil)
	conn := rawAfterTLS(t, h)
	if _, err := io.WriteString(conn, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+strings.Repeat("<a>", 1000)); err != nil {
		t.Fatal(err)
	}
	if out := readUntilClosed(t, conn); !strings.Contains(out, "policy-violation") {
		t.Fatalf("server wrote %q, want policy-violation", out)
	}
}
