// Package stanza is the in-memory form of XMPP XML: a small element tree
// that the stream decoder builds, handlers read and change, and the session
// writer serialises again. It also builds stanza and stream errors.
package stanza

import (
	"encoding/xml"
	"strings"

	"mellium.im/xmpp/jid"
)

// Namespaces used across poosms.
const (
	NSClient  = "jabber:client"
	NSStream  = "http://etherx.jabber.org/streams"
	NSStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSStreams = "urn:ietf:params:xml:ns:xmpp-streams"
	NSXML     = "http://www.w3.org/XML/1998/namespace"
	NSDelay   = "urn:xmpp:delay"
)

// Element is one XML element with its attributes and children. Text and
// child elements are kept in document order in Children.
type Element struct {
	Space    string // namespace URI ("" inherits jabber:client at top level)
	Local    string
	Attrs    []Attr
	Children []Node

	// to and from are the parsed addresses SetTo and SetFrom stored, nil
	// when the attribute was set otherwise. They are never changed in
	// place (SetAttr drops them, SetTo replaces them), so a Copy shares
	// them.
	to, from *jid.JID
}

// Attr is an attribute. Space is empty for plain attributes and NSXML for
// xml:lang and friends.
type Attr struct {
	Space, Local, Value string
}

// Node is a child: either *Element or Text.
type Node interface{ isNode() }

// Text is character data.
type Text string

func (*Element) isNode() {}
func (Text) isNode()     {}

// New returns an element in namespace space with the given local name.
func New(space, local string) *Element { return &Element{Space: space, Local: local} }

// Name is the element's local name.
func (e *Element) Name() string { return e.Local }

// Attr returns the value of the plain attribute local, or "".
func (e *Element) Attr(local string) string {
	for _, a := range e.Attrs {
		if a.Space == "" && a.Local == local {
			return a.Value
		}
	}
	return ""
}

// HasAttr reports whether the plain attribute is present.
func (e *Element) HasAttr(local string) bool {
	for _, a := range e.Attrs {
		if a.Space == "" && a.Local == local {
			return true
		}
	}
	return false
}

// SetAttr sets (or, with an empty value, removes) a plain attribute and
// returns e for chaining.
func (e *Element) SetAttr(local, value string) *Element {
	switch {
	case e.to != nil && local == "to":
		e.to = nil
	case e.from != nil && local == "from":
		e.from = nil
	}
	for i, a := range e.Attrs {
		if a.Space == "" && a.Local == local {
			if value == "" {
				e.Attrs = append(e.Attrs[:i], e.Attrs[i+1:]...)
			} else {
				e.Attrs[i].Value = value
			}
			return e
		}
	}
	if value != "" {
		e.Attrs = append(e.Attrs, Attr{Local: local, Value: value})
	}
	return e
}

// Lang returns xml:lang, or "".
func (e *Element) Lang() string {
	for _, a := range e.Attrs {
		if a.Space == NSXML && a.Local == "lang" {
			return a.Value
		}
	}
	return ""
}

// Append adds child elements and returns e.
func (e *Element) Append(children ...*Element) *Element {
	for _, c := range children {
		if c != nil {
			e.Children = append(e.Children, c)
		}
	}
	return e
}

// SetText replaces all children with one text node.
func (e *Element) SetText(s string) *Element {
	e.Children = e.Children[:0]
	if s != "" {
		e.Children = append(e.Children, Text(s))
	}
	return e
}

// AddText appends a text node.
func (e *Element) AddText(s string) *Element {
	if s != "" {
		e.Children = append(e.Children, Text(s))
	}
	return e
}

// Text returns the concatenated character data directly inside e.
func (e *Element) Text() string {
	var b strings.Builder
	for _, c := range e.Children {
		if t, ok := c.(Text); ok {
			b.WriteString(string(t))
		}
	}
	return b.String()
}

// Elements returns the child elements.
func (e *Element) Elements() []*Element {
	var out []*Element
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok {
			out = append(out, ce)
		}
	}
	return out
}

// Child returns the first child with this namespace and local name. An
// empty space matches any namespace.
func (e *Element) Child(space, local string) *Element {
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok && ce.Local == local && (space == "" || ce.Space == space) {
			return ce
		}
	}
	return nil
}

// HasDelayFrom reports whether e carries an XEP-0203 delay stamp from
// this entity, which may stamp a stanza once.
func HasDelayFrom(e *Element, from string) bool {
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok && ce.Local == "delay" && ce.Space == NSDelay && ce.Attr("from") == from {
			return true
		}
	}
	return false
}

// RemoveDelayFrom removes e's XEP-0203 delay stamps from this entity:
// a stanza from a client claims a server's stamp only to mislead.
func RemoveDelayFrom(e *Element, from string) {
	if !HasDelayFrom(e, from) {
		return
	}
	kept := e.Children[:0]
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok && ce.Local == "delay" && ce.Space == NSDelay && ce.Attr("from") == from {
			continue
		}
		kept = append(kept, c)
	}
	clear(e.Children[len(kept):])
	e.Children = kept
}

// ChildText returns the text of Child(space, local), or "".
func (e *Element) ChildText(space, local string) string {
	if c := e.Child(space, local); c != nil {
		return c.Text()
	}
	return ""
}

// FirstElement returns the first child element, or nil.
func (e *Element) FirstElement() *Element {
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok {
			return ce
		}
	}
	return nil
}

// RemoveChildren removes every child element with this namespace and local name.
func (e *Element) RemoveChildren(space, local string) {
	out := e.Children[:0]
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok && ce.Local == local && ce.Space == space {
			continue
		}
		out = append(out, c)
	}
	e.Children = out
}

// Copy returns a deep copy of e.
func (e *Element) Copy() *Element {
	c := &Element{Space: e.Space, Local: e.Local, to: e.to, from: e.from}
	c.Attrs = append([]Attr(nil), e.Attrs...)
	c.Children = make([]Node, len(e.Children))
	for i, n := range e.Children {
		if ce, ok := n.(*Element); ok {
			c.Children[i] = ce.Copy()
		} else {
			c.Children[i] = n
		}
	}
	return c
}

// IsStanza reports whether e is a message, presence or iq in the client namespace.
func (e *Element) IsStanza() bool {
	if e.Space != NSClient && e.Space != "" {
		return false
	}
	switch e.Local {
	case "message", "presence", "iq":
		return true
	}
	return false
}

// To, From, ID and Type are the common stanza attributes.
func (e *Element) To() string   { return e.Attr("to") }
func (e *Element) From() string { return e.Attr("from") }
func (e *Element) ID() string   { return e.Attr("id") }
func (e *Element) Type() string { return e.Attr("type") }

// ToJID returns the to address parsed: the JID SetTo stored, else the
// attribute parsed now (not kept: an Element that is only read stays
// safe to read from several goroutines). An absent to fails to parse.
func (e *Element) ToJID() (jid.JID, error) {
	if e.to != nil {
		return *e.to, nil
	}
	return jid.Parse(e.To())
}

// FromJID is ToJID for the from address.
func (e *Element) FromJID() (jid.JID, error) {
	if e.from != nil {
		return *e.from, nil
	}
	return jid.Parse(e.From())
}

// SetTo sets the to attribute to s, which must be j's printed form
// (j.String(), passed in so that a caller that keeps it builds it once),
// and keeps j so that ToJID need not parse it again. Use it where j was
// parsed from s or s built from j; it returns e.
func (e *Element) SetTo(j jid.JID, s string) *Element {
	e.SetAttr("to", s)
	e.to = &j
	return e
}

// ToIs reports whether to is j as SetTo(j, …) stored it (the attribute
// unchanged since), so that a caller that would set it again need not
// print j.
func (e *Element) ToIs(j jid.JID) bool { return e.to != nil && e.to.Equal(j) }

// FromIs is ToIs for the from address.
func (e *Element) FromIs(j jid.JID) bool { return e.from != nil && e.from.Equal(j) }

// SetFrom is SetTo for the from address.
func (e *Element) SetFrom(j jid.JID, s string) *Element {
	e.SetAttr("from", s)
	e.from = &j
	return e
}

// FromStart builds an element with the name and attributes of an
// xml.StartElement, dropping namespace declarations (the serialiser writes
// its own).
func FromStart(se xml.StartElement) *Element {
	e := &Element{Space: se.Name.Space, Local: se.Name.Local}
	for _, a := range se.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		e.Attrs = append(e.Attrs, Attr{Space: a.Name.Space, Local: a.Name.Local, Value: a.Value})
	}
	return e
}
