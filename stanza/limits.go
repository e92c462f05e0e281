package stanza

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// Default limits on the tree one stanza read from a peer may become.
const (
	DefaultMaxElements   = 4096 // elements in one stanza, the stanza included
	DefaultMaxDepth      = 32   // nesting depth, the stanza being depth 1
	DefaultMaxAttributes = 4096 // attributes in one stanza, namespace declarations included
)

// Limits bounds what one stanza from a peer may become in memory. The
// stanza's size in bytes bounds its text; these bound its shape, which
// costs far more per byte: an empty element is 4 bytes on the wire and
// about 130 bytes of tree, an attribute 5 bytes and about 70. Read and
// Parse count while they tokenise and stop at the first element or
// attribute past a limit, so a hostile stanza never becomes a larger tree
// than the limits allow. A zero field takes its default.
//
// Every stream reader (client streams, WebSocket frames, server-to-server
// streams) reads stanzas through one Limits.
type Limits struct {
	MaxElements   int
	MaxDepth      int
	MaxAttributes int
}

// ErrLimit is what LimitError matches with errors.Is.
var ErrLimit = errors.New("stanza: limit exceeded")

// LimitError says which limit a stanza went past.
type LimitError struct {
	What  string // "elements", "levels of nesting" or "attributes"
	Limit int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("more than %d %s in one stanza", e.Limit, e.What)
}

func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultMaxElements
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxAttributes <= 0 {
		l.MaxAttributes = DefaultMaxAttributes
	}
	return l
}

// unlimited is for stanzas the server made or accepted earlier (stored
// ones): they passed the limits in force when they came in.
var unlimited = Limits{MaxElements: math.MaxInt, MaxDepth: math.MaxInt, MaxAttributes: math.MaxInt}

// Read is the package's Read within l: it also refuses an element with
// two attributes of the same name (XML's "unique attribute" rule, which
// encoding/xml does not check), since peers may read the first or the last.
func (l Limits) Read(d *xml.Decoder, start xml.StartElement) (*Element, error) {
	return read(d, start, l.withDefaults(), true)
}

// Parse is the package's Parse within l, refusing duplicate attributes as
// Read does.
func (l Limits) Parse(b []byte) (*Element, error) {
	return parse(b, l.withDefaults(), true)
}

// NewDecoder is the package's NewDecoder for a stream read within l. It
// counts the attributes of each start tag as its bytes arrive: encoding/xml
// builds a whole start tag before returning it, and one tag with thousands
// of attributes would cost 25 times its size in memory before Read could
// count them.
func (l Limits) NewDecoder(r io.ByteReader) *xml.Decoder {
	return NewDecoder(&tagScanner{r: r, max: l.withDefaults().MaxAttributes})
}

// counter counts one stanza's shape against its limits as it is read.
type counter struct {
	lim               Limits
	elements, attrs   int
	checkDuplicateAtt bool
}

// start counts a start tag found at depth (1 for the stanza itself).
func (c *counter) start(se xml.StartElement, depth int) error {
	c.elements++
	c.attrs += len(se.Attr)
	switch {
	case c.elements > c.lim.MaxElements:
		return &LimitError{"elements", c.lim.MaxElements}
	case depth > c.lim.MaxDepth:
		return &LimitError{"levels of nesting", c.lim.MaxDepth}
	case c.attrs > c.lim.MaxAttributes:
		return &LimitError{"attributes", c.lim.MaxAttributes}
	case c.checkDuplicateAtt && duplicateAttr(se.Attr):
		return fmt.Errorf("%w: <%s/> has an attribute twice", ErrNotWellFormed, se.Name.Local)
	case c.checkDuplicateAtt && !prefixedNamesValid(se):
		return fmt.Errorf("%w: <%s/>: a name's part after its prefix is not an XML name", ErrNotWellFormed, se.Name.Local)
	}
	return nil
}

// prefixedNamesValid reports whether the element's and its attributes'
// local names (the part after a prefix) are XML names (NCNames), as
// Namespaces in XML asks. encoding/xml checks a prefixed name as a whole
// ("a:0" is a Name) and splits it at the colon: "<a:0/>" would come out
// as "0", which is no name, and the element could not be written back.
func prefixedNamesValid(se xml.StartElement) bool {
	if !ncNameStart(se.Name.Local) {
		return false
	}
	for _, a := range se.Attr {
		if !ncNameStart(a.Name.Local) {
			return false
		}
	}
	return true
}

// ncNameStart reports whether s is a name without a colon: encoding/xml
// has checked that every character of s may be in a name, so what is left
// is the colon and the characters that may not come first (XML 1.0
// NameChar less NameStartChar).
func ncNameStart(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	switch {
	case s == "", strings.Contains(s, ":"), r >= '0' && r <= '9', r == '-', r == '.', r == 0xB7,
		r >= 0x300 && r <= 0x36F, r == 0x203F, r == 0x2040:
		return false
	}
	return true
}

// ErrNotWellFormed is XML that encoding/xml accepts but XML does not.
var ErrNotWellFormed = errors.New("not well-formed")

// duplicateAttr reports whether two attributes share a (namespace, name).
func duplicateAttr(attrs []xml.Attr) bool {
	if len(attrs) <= 16 {
		for i := 1; i < len(attrs); i++ {
			for j := range i {
				if attrs[i].Name == attrs[j].Name {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[xml.Name]struct{}, len(attrs))
	for _, a := range attrs {
		if _, ok := seen[a.Name]; ok {
			return true
		}
		seen[a.Name] = struct{}{}
	}
	return false
}

// tagScanner hands bytes to the XML decoder one at a time (encoding/xml
// reads an io.ByteReader without buffering ahead) and counts the '='
// outside quotes in each start tag: its attributes. It knows just enough
// XML to skip text, end tags, CDATA sections and the markup the decoder
// refuses anyway (comments, processing instructions, DTDs).
type tagScanner struct {
	r     io.ByteReader
	max   int
	state scanState
	quote byte // the quote an attribute value is in, or 0
	n     int  // attributes of the tag being read
	match int  // bytes of "[CDATA[" or "]]" matched
}

type scanState uint8

const (
	inText  scanState = iota
	afterLT           // just read '<'
	inBang            // "<!", maybe the start of a CDATA section
	inCDATA
	inStartTag
	inOtherTag // an end tag, a processing instruction, a comment, a DTD
)

const cdataOpen = "[CDATA["

func (s *tagScanner) ReadByte() (byte, error) {
	c, err := s.r.ReadByte()
	if err != nil {
		return c, err
	}
	switch s.state {
	case inText:
		if c == '<' {
			s.state = afterLT
		}
	case afterLT:
		switch c {
		case '/', '?':
			s.state = inOtherTag
		case '!':
			s.state, s.match = inBang, 0
		default:
			s.state, s.quote, s.n = inStartTag, 0, 0
		}
	case inBang:
		switch {
		case c == '>':
			s.state = inText
		case c != cdataOpen[s.match]:
			s.state = inOtherTag
		default:
			if s.match++; s.match == len(cdataOpen) {
				s.state, s.match = inCDATA, 0
			}
		}
	case inCDATA:
		switch {
		case c == ']':
			s.match = min(s.match+1, 2)
		case c == '>' && s.match == 2:
			s.state = inText
		default:
			s.match = 0
		}
	case inStartTag:
		switch {
		case s.quote != 0:
			if c == s.quote {
				s.quote = 0
			}
		case c == '\'' || c == '"':
			s.quote = c
		case c == '>':
			s.state = inText
		case c == '=':
			if s.n++; s.n > s.max {
				return 0, &LimitError{"attributes", s.max}
			}
		}
	case inOtherTag:
		if c == '>' {
			s.state = inText
		}
	}
	return c, nil
}

// Read is for io.Reader; the decoder uses ReadByte.
func (s *tagScanner) Read(p []byte) (int, error) {
	for i := range p {
		c, err := s.ReadByte()
		if err != nil {
			return i, err
		}
		p[i] = c
	}
	return len(p), nil
}
