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
// instructions and comments give ErrRestrictedXML. Read sets no limits on
// the tree: it is for stanzas the server made or stored. A peer's stanzas
// are read with Limits.Read.
func Read(d *xml.Decoder, start xml.StartElement) (*Element, error) {
	return read(d, start, unlimited, false)
}

func read(d *xml.Decoder, start xml.StartElement, lim Limits, strict bool) (*Element, error) {
	c := counter{lim: lim, checkDuplicateAtt: strict}
	if err := c.start(start, 1); err != nil {
		return nil, err
	}
	root := FromStart(start)
	stack := []*Element{root}
	// Adjacent character data (text, CDATA sections, text) is one text
	// node. The first piece goes in as it comes; only when more follow is
	// the run gathered in run, so that n pieces cost O(n), not O(n²).
	var run []byte
	merging := false // the last token was character data
	endRun := func(top *Element) {
		if len(run) > 0 {
			top.Children[len(top.Children)-1] = Text(run)
			run = run[:0]
		}
		merging = false
	}
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
			// Counted before anything is built for it.
			if err := c.start(t, len(stack)+1); err != nil {
				return nil, err
			}
			endRun(top)
			child := FromStart(t)
			top.Children = append(top.Children, child)
			stack = append(stack, child)
		case xml.EndElement:
			endRun(top)
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return root, nil
			}
		case xml.CharData:
			if !merging {
				top.Children = append(top.Children, Text(t))
				merging = true
				continue
			}
			if len(run) == 0 {
				run = append(run, top.Children[len(top.Children)-1].(Text)...)
			}
			run = append(run, t...)
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

// Parse parses one complete element from b (a stored stanza, a cluster
// payload). The element's namespace defaults to jabber:client when absent.
// Like Read, it sets no limits: a peer's frames are parsed with
// Limits.Parse.
func Parse(b []byte) (*Element, error) { return parse(b, unlimited, false) }

func parse(b []byte, lim Limits, strict bool) (*Element, error) {
	var d *xml.Decoder
	if lim == unlimited {
		d = NewDecoder(bytes.NewReader(b))
	} else {
		d = lim.NewDecoder(bytes.NewReader(b))
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			e, err := read(d, t, lim, strict)
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
