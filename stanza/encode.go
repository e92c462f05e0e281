package stanza

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// AppendXML appends the serialised form of e to buf. parentNS is the default
// namespace in scope where e is written: "jabber:client" inside a TCP
// stream, "" on a WebSocket frame (so the top-level xmlns is written out).
func (e *Element) AppendXML(buf []byte, parentNS string) []byte {
	return e.appendXML(buf, parentNS, false)
}

// appendXML is AppendXML, leaving out e's own to attribute with skipTo.
func (e *Element) appendXML(buf []byte, parentNS string, skipTo bool) []byte {
	buf = append(buf, '<')
	buf = append(buf, e.Local...)
	space := e.Space
	if space == "" && parentNS == "" && e.IsStanza() {
		space = NSClient
	}
	if space != parentNS && space != "" {
		buf = append(buf, " xmlns='"...)
		buf = appendEscaped(buf, space)
		buf = append(buf, '\'')
	}
	if space == "" {
		space = parentNS
	}
	var prefixes []string // foreign attribute namespaces declared here
	for _, a := range e.Attrs {
		if skipTo && a.Space == "" && a.Local == "to" {
			continue
		}
		buf = append(buf, ' ')
		switch a.Space {
		case "":
		case NSXML, "xml":
			buf = append(buf, "xml:"...)
		default:
			p := -1
			for i, s := range prefixes {
				if s == a.Space {
					p = i
				}
			}
			if p < 0 {
				prefixes = append(prefixes, a.Space)
				p = len(prefixes) - 1
				buf = append(buf, "xmlns:ns"...)
				buf = strconv.AppendInt(buf, int64(p), 10)
				buf = append(buf, "='"...)
				buf = appendEscaped(buf, a.Space)
				buf = append(buf, "' "...)
			}
			buf = append(buf, "ns"...)
			buf = strconv.AppendInt(buf, int64(p), 10)
			buf = append(buf, ':')
		}
		buf = append(buf, a.Local...)
		buf = append(buf, "='"...)
		buf = appendEscaped(buf, a.Value)
		buf = append(buf, '\'')
	}
	if len(e.Children) == 0 {
		return append(buf, "/>"...)
	}
	buf = append(buf, '>')
	for _, c := range e.Children {
		switch n := c.(type) {
		case *Element:
			buf = n.appendXML(buf, space, false)
		case Text:
			buf = appendEscaped(buf, string(n))
		}
	}
	buf = append(buf, "</"...)
	buf = append(buf, e.Local...)
	return append(buf, '>')
}

// Encoded is an element serialised once, to be written to any number of
// streams: the bytes a room message takes in every occupant's queue are one
// copy. The top-level to attribute, the part that differs per recipient,
// is left out and given to Append. An Encoded is read-only and takes
// exactly the memory of its bytes.
type Encoded struct {
	b      []byte // as written inside a jabber:client stream, without the top-level to
	at     int    // where the top-level attributes begin, just after "<name"
	client bool   // a stanza in jabber:client: a WebSocket frame names the namespace
}

// Encode serialises el, leaving out its top-level to attribute.
func Encode(el *Element) Encoded {
	bp := GetBuffer()
	*bp = el.appendXML((*bp)[:0], NSClient, true)
	b := make([]byte, len(*bp)) // exactly its size: a queue may keep it for minutes
	copy(b, *bp)
	PutBuffer(bp)
	return Encoded{b: b, at: 1 + len(el.Local), client: el.Space == NSClient || el.Space == "" && el.IsStanza()}
}

// Len is the length of the encoded element without its to.
func (w Encoded) Len() int { return len(w.b) }

// Append appends the element addressed to to ("": no to attribute) as
// AppendXML would write it where parentNS is the default namespace:
// jabber:client inside a stream, "" in a WebSocket frame.
func (w Encoded) Append(buf []byte, to, parentNS string) []byte {
	buf = append(buf, w.b[:w.at]...)
	if w.client && parentNS != NSClient {
		buf = append(buf, " xmlns='"+NSClient+"'"...)
	}
	if to != "" {
		buf = append(buf, " to='"...)
		buf = appendEscaped(buf, to)
		buf = append(buf, '\'')
	}
	return append(buf, w.b[w.at:]...)
}

// Element parses the encoded element back into a tree, addressed to to.
func (w Encoded) Element(to string) (*Element, error) { return Parse(w.Append(nil, to, "")) }

// String serialises e with its namespace written out.
func (e *Element) String() string { return string(e.AppendXML(nil, "")) }

// appendEscaped appends s as XML text or a quoted attribute value. What
// XML cannot carry at all (invalid UTF-8, control characters other than
// tab and newline, U+FFFE and U+FFFF) becomes U+FFFD: the server's own
// strings may quote a peer's bytes (a parse error's text), and what it
// writes must stay well-formed.
func appendEscaped(buf []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		c := s[i]
		switch {
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '&':
			esc = "&amp;"
		case c == '\'':
			esc = "&apos;"
		case c == '"':
			esc = "&quot;"
		case c == '\r':
			esc = "&#xD;"
		case c < 0x20 && c != '\t' && c != '\n':
			esc = "\uFFFD"
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError && r != 0xFFFE && r != 0xFFFF || size == 3 && r == utf8.RuneError {
				i += size - 1
				continue
			}
			buf = append(buf, s[last:i]...)
			buf = append(buf, "\uFFFD"...)
			i += size - 1
			last = i + 1
			continue
		default:
			continue
		}
		buf = append(buf, s[last:i]...)
		buf = append(buf, esc...)
		last = i + 1
	}
	return append(buf, s[last:]...)
}

// Escape returns s escaped for use in XML text or a quoted attribute.
func Escape(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || strings.IndexByte("<>&'\"", c) >= 0 {
			return string(appendEscaped(nil, s))
		}
	}
	return s
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// GetBuffer returns a scratch buffer from a pool; PutBuffer gives it back.
func GetBuffer() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuffer returns a buffer to the pool. Large buffers are dropped so one
// big stanza does not pin memory.
func PutBuffer(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
