package stanza

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"io"
	"slices"
	"testing"
)

// Small limits, so the fuzzer reaches them with short inputs.
var fuzzLimits = Limits{MaxElements: 16, MaxDepth: 4, MaxAttributes: 12}

// shape counts what an accepted tree holds.
func shape(e *Element, depth int) (elements, maxDepth, attrs int) {
	elements, maxDepth, attrs = 1, depth, len(e.Attrs)
	for _, c := range e.Children {
		if ch, ok := c.(*Element); ok {
			n, d, a := shape(ch, depth+1)
			elements += n
			maxDepth = max(maxDepth, d)
			attrs += a
		}
	}
	return
}

// withinLimits fails t unless el fits lim and has no attribute twice.
func withinLimits(t *testing.T, el *Element, lim Limits) {
	t.Helper()
	n, d, a := shape(el, 1)
	if n > lim.MaxElements || d > lim.MaxDepth || a > lim.MaxAttributes {
		t.Fatalf("accepted a stanza of %d elements, depth %d, %d attributes past %+v: %s", n, d, a, lim, el)
	}
	var dup func(*Element) bool
	dup = func(e *Element) bool {
		seen := map[[2]string]bool{}
		for _, at := range e.Attrs {
			k := [2]string{at.Space, at.Local}
			if seen[k] {
				return true
			}
			seen[k] = true
		}
		for _, c := range e.Elements() {
			if dup(c) {
				return true
			}
		}
		return false
	}
	if dup(el) {
		t.Fatalf("accepted an element with an attribute twice: %s", el)
	}
}

// FuzzLimitsParse is a WebSocket frame's parse: whatever it accepts fits
// the limits, and serialising it gives XML that parses to the same tree
// (what a peer receives is what the server read).
func FuzzLimitsParse(f *testing.F) {
	for _, s := range []string{
		`<message to='a@b' type='chat' xml:lang='en'><body>hi &amp; &lt;bye&gt;</body></message>`,
		`<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>`,
		`<presence xmlns:x='urn:x' x:a='1' a='2'><show>away</show></presence>`,
		`<a><b><c><d><e/></d></c></b></a>`,
		`<a x='1' x='2'/>`,
		`<a>x<![CDATA[<y>]]>z</a>`,
		`<?xml version='1.0'?><a/>`,
		`<!DOCTYPE a><a/>`,
		`<a><!-- c --></a>`,
		`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		el, err := fuzzLimits.Parse(b)
		if err != nil {
			return
		}
		withinLimits(t, el, fuzzLimits)
		out := el.String()
		again, err := Parse([]byte(out))
		if err != nil {
			t.Fatalf("%q parsed, but its serialisation %q does not: %v", b, out, err)
		}
		if out2 := again.String(); out2 != out {
			t.Fatalf("serialisation not stable:\n in: %q\n 1:  %q\n 2:  %q", b, out, out2)
		}
		// An Encoded is addressed as it is written; an empty to is none.
		if el.HasAttr("to") && el.To() == "" {
			return
		}
		enc := Encode(el).Append(nil, el.To(), "")
		if e2, err := Parse(enc); err != nil || canonical(e2) != canonical(el) {
			t.Fatalf("Encode of %q gives %q (%v), want %q", b, enc, err, out)
		}
	})
}

// canonical serialises e with each element's attributes sorted: the same
// tree whatever order its attributes were written in.
func canonical(e *Element) string {
	c := e.Copy()
	var sortAttrs func(*Element)
	sortAttrs = func(e *Element) {
		slices.SortFunc(e.Attrs, func(a, b Attr) int {
			return cmp.Or(cmp.Compare(a.Space, b.Space), cmp.Compare(a.Local, b.Local))
		})
		for _, ch := range e.Elements() {
			sortAttrs(ch)
		}
	}
	sortAttrs(c)
	return c.String()
}

// FuzzStreamRead reads a stream as a stream reader does: a LimitReader
// allowing maxBytes per top-level element, the attribute-counting
// decoder, the rules between stanzas and Limits.Read. Every stanza it
// returns fits the limits and came from no more bytes than allowed, and
// every refusal maps to a stream error condition.
func FuzzStreamRead(f *testing.F) {
	const maxBytes = 512
	for _, s := range []string{
		`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'> <message to='a@b'><body>hi</body></message><presence/></stream:stream>`,
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a><b><c><d><e/></d></c></b></a>`,
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a b='1' c='2' d='3' e='4' f='5' g='6' h='7' i='8' j='9' k='10' l='11' m='12' n='13'/>`,
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>text`,
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><!-- c -->`,
		`<stream:stream><a x="'>" y='"'><![CDATA[ <b c='1'> ]]></a>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lr := &LimitReader{R: bufio.NewReader(bytes.NewReader(b))}
		d := fuzzLimits.NewDecoder(lr)
		opened := false
		for {
			before := lr.N
			lr.Limit = lr.N + maxBytes
			tok, err := d.Token()
			if err != nil {
				checkReadError(t, lr, err, maxBytes)
				return
			}
			if cond, _ := BetweenStanzas(tok, opened); cond != "" {
				return
			}
			se, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			if !opened {
				opened = true
				continue
			}
			el, err := fuzzLimits.Read(d, se)
			if err != nil {
				checkReadError(t, lr, err, maxBytes)
				return
			}
			withinLimits(t, el, fuzzLimits)
			if lr.N-before > maxBytes {
				t.Fatalf("a stanza of %d bytes was read with a limit of %d", lr.N-before, maxBytes)
			}
		}
	})
}

// checkReadError fails t unless err, met reading from a byte slice, is
// the end of input or maps to a stream error condition.
func checkReadError(t *testing.T, lr *LimitReader, err error, maxBytes int64) {
	t.Helper()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return
	}
	if cond, _, conn := lr.ReadError(err, maxBytes); cond == "" && !errors.Is(conn, io.EOF) {
		t.Fatalf("%v has no stream error condition (connection error %v)", err, conn)
	}
}
