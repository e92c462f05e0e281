package stanza

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// ErrRestrictedXML is returned when the input holds XML that XMPP forbids:
// a DTD, entity declarations, processing instructions or comments.
var ErrRestrictedXML = errors.New("restricted XML")

// Read reads the rest of the element whose start tag the decoder has just
// returned, building its tree. Directives (DOCTYPE, ENTITY), processing
// instructions and comments give ErrRestrictedXML.
func Read(d *xml.Decoder, start xml.StartElement) (*Element, error) {
	root := FromStart(start)
	stack := []*Element{root}
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			child := FromStart(t)
			top.Children = append(top.Children, child)
			stack = append(stack, child)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return root, nil
			}
		case xml.CharData:
			if n := len(top.Children); n > 0 {
				if prev, ok := top.Children[n-1].(Text); ok {
					top.Children[n-1] = prev + Text(t)
					continue
				}
			}
			top.Children = append(top.Children, Text(t))
		case xml.Directive, xml.ProcInst, xml.Comment:
			return nil, fmt.Errorf("%w: %T inside an element", ErrRestrictedXML, tok)
		}
	}
}

// NewDecoder returns a strict decoder for XMPP input: no entity map beyond
// the five predefined ones, no charset conversion.
func NewDecoder(r io.Reader) *xml.Decoder {
	d := xml.NewDecoder(r)
	d.Strict = true
	d.CharsetReader = func(label string, _ io.Reader) (io.Reader, error) {
		return nil, fmt.Errorf("charset %q: only UTF-8 is allowed", label)
	}
	return d
}

// Parse parses one complete element from b (a WebSocket frame, a stored
// stanza). The element's namespace defaults to jabber:client when absent.
func Parse(b []byte) (*Element, error) {
	d := NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			e, err := Read(d, t)
			if err != nil {
				return nil, err
			}
			// Anything after the element other than whitespace is an error.
			for {
				tok, err := d.Token()
				if errors.Is(err, io.EOF) {
					return e, nil
				}
				if err != nil {
					return nil, err
				}
				if cd, ok := tok.(xml.CharData); !ok || len(bytes.TrimSpace(cd)) != 0 {
					return nil, errors.New("stanza: trailing data after element")
				}
			}
		case xml.ProcInst:
			if t.Target != "xml" {
				return nil, fmt.Errorf("%w: processing instruction", ErrRestrictedXML)
			}
		case xml.Directive, xml.Comment:
			return nil, fmt.Errorf("%w: %T", ErrRestrictedXML, tok)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, errors.New("stanza: text outside an element")
			}
		}
	}
}
