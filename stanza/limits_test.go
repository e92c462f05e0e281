package stanza

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// stanzaOf wraps inner in a message.
func stanzaOf(inner string) []byte {
	return []byte("<message xmlns='jabber:client' to='bob@localhost'>" + inner + "</message>")
}

// repeatTo repeats unit as often as fits in n bytes of stanza.
func repeatTo(unit string, n int) string { return strings.Repeat(unit, (n-64)/len(unit)) }

// withAttrs is one element with n distinct attributes.
func withAttrs(n int) string {
	var b strings.Builder
	b.WriteString("<a")
	for i := range n {
		b.WriteString(" a" + strconv.Itoa(i) + "=''")
	}
	b.WriteString("/>")
	return b.String()
}

func TestLimitsRefuseHostileShapes(t *testing.T) {
	const max = 256 << 10
	for _, tc := range []struct {
		name string
		in   []byte
		what string // the limit hit; "" when accepted
	}{
		{"a stanza of empty elements", stanzaOf(repeatTo("<a/>", max)), "elements"},
		{"elements at the limit", stanzaOf(strings.Repeat("<a/>", DefaultMaxElements-1)), ""},
		{"one element past the limit", stanzaOf(strings.Repeat("<a/>", DefaultMaxElements)), "elements"},
		{"nested at the limit", stanzaOf(strings.Repeat("<a>", DefaultMaxDepth-1) + strings.Repeat("</a>", DefaultMaxDepth-1)), ""},
		{"nested one level deeper", stanzaOf(strings.Repeat("<a>", DefaultMaxDepth) + strings.Repeat("</a>", DefaultMaxDepth)), "levels of nesting"},
		{"deep nesting, never closed", stanzaOf(repeatTo("<a>", max)), "levels of nesting"},
		{"attributes in one element", stanzaOf(withAttrs(DefaultMaxAttributes)), "attributes"},
		{"attributes spread out", stanzaOf(strings.Repeat("<a b='' c='' d=''/>", DefaultMaxAttributes/3+1)), "attributes"},
		{"namespace declarations count", stanzaOf(strings.Repeat("<a xmlns:p='u' xmlns:q='v' xmlns:r='w'/>", DefaultMaxAttributes/3+1)), "attributes"},
		{"a large body is fine", stanzaOf("<body>" + strings.Repeat("x", max-100) + "</body>"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el, err := Limits{}.Parse(tc.in)
			if tc.what == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var le *LimitError
			if !errors.As(err, &le) || le.What != tc.what || !errors.Is(err, ErrLimit) {
				t.Fatalf("got %v (tree %v), want the %s limit", err, el != nil, tc.what)
			}
		})
	}
	// Tighter limits are honoured, and the package's Read (for stored
	// stanzas) has none.
	in := stanzaOf(strings.Repeat("<a/>", 10))
	if _, err := (Limits{MaxElements: 10}).Parse(in); !errors.Is(err, ErrLimit) {
		t.Fatalf("MaxElements 10: %v", err)
	}
	if _, err := Parse(stanzaOf(strings.Repeat("<a/>", 2*DefaultMaxElements))); err != nil {
		t.Fatalf("Parse of a stored stanza: %v", err)
	}
}

// Two attributes with one name are not XML, and peers disagree on which
// one counts: a second from='…' must not slip through behind the one the
// server stamps.
func TestLimitsRefuseDuplicateAttributes(t *testing.T) {
	for _, in := range []string{
		`<message xmlns='jabber:client' from='a@x' from='admin@x'/>`,
		`<message xmlns='jabber:client'><x xmlns='urn:x' xmlns:p='urn:p' p:a='1' p:a='2'/></message>`,
		`<message xmlns='jabber:client' xmlns:p='urn:x' xmlns:q='urn:x'><x p:a='1' q:a='2'/></message>`,
		"<message xmlns='jabber:client'>" + strings.Replace(withAttrs(40), "a39=", "a3=", 1) + "</message>",
	} {
		if _, err := (Limits{}).Parse([]byte(in)); !errors.Is(err, ErrNotWellFormed) {
			t.Errorf("%.80s: %v, want ErrNotWellFormed", in, err)
		}
	}
	if _, err := (Limits{}).Parse([]byte("<message xmlns='jabber:client'>" + withAttrs(40) + "</message>")); err != nil {
		t.Fatalf("40 distinct attributes: %v", err)
	}
}

// Text broken into many CDATA sections is one text node, and gathering
// it costs time and memory in proportion to its length.
func TestTextRunsAreGatheredLinearly(t *testing.T) {
	in := stanzaOf("<body>" + repeatTo("ab<![CDATA[c&]]>", 256<<10) + "</body>")
	var el *Element
	alloc := allocated(func() {
		var err error
		if el, err = (Limits{}).Parse(in); err != nil {
			t.Fatal(err)
		}
	})
	body := el.Child("", "body")
	if n := len(body.Children); n != 1 {
		t.Fatalf("body has %d children, want one text node", n)
	}
	if want := strings.Repeat("abc&", (256<<10-64)/16); body.Text() != want {
		t.Fatalf("text is %d bytes, want %d", len(body.Text()), len(want))
	}
	if alloc > 8*uint64(len(in)) {
		t.Fatalf("parsing a %d-byte stanza allocated %d bytes (%.0f×)", len(in), alloc, float64(alloc)/float64(len(in)))
	}
}

// allocated returns the bytes fn allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// retained returns the heap still in use after fn, which must keep what
// it built alive until it returns by storing it in keep.
func retained(fn func() any) (uint64, any) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep := fn()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if after.HeapAlloc < before.HeapAlloc {
		return 0, keep
	}
	return after.HeapAlloc - before.HeapAlloc, keep
}

// The bound docs/security.md states: with the default limits, no stanza
// of up to 256 KiB becomes more than 5× the largest stanza in tree
// (1.25 MiB), nor allocates more than 12× while it is read, whatever its
// shape; past a limit it is refused before its tree grows any further.
// Without the limits, 256 KiB of empty elements became 6.4 MB of tree.
func TestStanzaHeapBound(t *testing.T) {
	const max = 256 << 10
	const treeBound, allocBound = 5 * max, 12 * max
	// The costliest shapes the limits let through: every element and
	// attribute allowed, with the rest of the bytes as text (strings of
	// 25 bytes take 32, and a text node between elements costs a boxed
	// string and a slot of its own).
	worst := func(unit string) []byte {
		n := DefaultMaxElements - 2 // the message and its two attributes (xmlns, to) count
		pad := strings.Repeat("x", (max-100-n*(len(unit)-2))/(2*n))
		return stanzaOf("<a>" + pad + "</a>" + strings.Repeat(strings.ReplaceAll(unit, "%", pad), n-1))
	}
	shapes := map[string][]byte{
		"empty elements (refused)":    stanzaOf(repeatTo("<a/>", max)),
		"elements and text (refused)": stanzaOf(repeatTo("<a/>x", max)),
		"attributes (refused)":        stanzaOf(withAttrs(max / 12)),
		"nesting (refused)":           stanzaOf(repeatTo("<a>", max)),
		"namespaces (refused)":        stanzaOf(repeatTo("<a xmlns:p='u'/>", max)),
		"CDATA pieces":                stanzaOf(repeatTo("x<![CDATA[]]>", max)),
		"every limit, text inside":    worst("<a b='%'>%</a>"),
		"every limit, text around":    worst("y<a b='%'>%</a>"),
		"one large body":              stanzaOf("<body>" + strings.Repeat("x", max-100) + "</body>"),
	}
	for name, in := range shapes {
		if len(in) > max {
			t.Fatalf("%s: %d bytes, over the stanza size", name, len(in))
		}
		var alloc uint64
		var err error
		tree, _ := retained(func() any {
			var el *Element
			alloc = allocated(func() { el, err = (Limits{}).Parse(in) })
			return el
		})
		runtime.KeepAlive(in) // in must not be freed within the measure
		if refused := strings.HasSuffix(name, "(refused)"); refused != (err != nil) {
			t.Fatalf("%s: error %v", name, err)
		}
		t.Logf("%-28s %7d bytes: tree %8d (%.1f×), allocated %8d (%.1f×)", name, len(in),
			tree, float64(tree)/float64(len(in)), alloc, float64(alloc)/float64(len(in)))
		if tree > treeBound || alloc > allocBound {
			t.Errorf("%s: tree %d bytes (bound %d), allocated %d (bound %d)", name, tree, treeBound, alloc, allocBound)
		}
	}
}

// TestPrefixedNamesMustBeNames: encoding/xml takes "a:0" as a name and
// splits it into the prefix "a" and "0", which is no name; such an
// element could not be written back. Limits refuse it, for elements,
// attributes and namespace declarations alike.
func TestPrefixedNamesMustBeNames(t *testing.T) {
	var l Limits
	for _, bad := range []string{
		`<a:0/>`,
		`<a:-b/>`,
		`<a:b:c/>`,
		`<a x:1='v'/>`,
		`<a xmlns:0='urn:x'/>`,
	} {
		// encoding/xml refuses some itself; Limits refuse the rest.
		if _, err := l.Parse([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		} else if _, xerr := Parse([]byte(bad)); xerr == nil && !errors.Is(err, ErrNotWellFormed) {
			t.Errorf("%s: %v, want ErrNotWellFormed", bad, err)
		}
	}
	for _, good := range []string{
		`<x:a xmlns:x='urn:x' x:b='1' c.d='2' _e='3'/>`,
		`<message xml:lang='en'><body>hi</body></message>`,
	} {
		el, err := l.Parse([]byte(good))
		if err != nil {
			t.Errorf("%s: %v", good, err)
			continue
		}
		if _, err := Parse([]byte(el.String())); err != nil {
			t.Errorf("%s written back as %s: %v", good, el.String(), err)
		}
	}
}
