package stanza

import (
	"bufio"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
)

func TestBetweenStanzas(t *testing.T) {
	for _, tc := range []struct {
		tok    xml.Token
		opened bool
		cond   StreamCondition
	}{
		{xml.ProcInst{Target: "xml"}, false, ""},
		{xml.ProcInst{Target: "xml"}, true, "restricted-xml"},
		{xml.ProcInst{Target: "php"}, false, "restricted-xml"},
		{xml.Directive("DOCTYPE x"), true, "restricted-xml"},
		{xml.Comment(" hi "), true, "restricted-xml"},
		{xml.CharData(" \n\t"), true, ""},
		{xml.CharData("text"), true, "bad-format"},
		{xml.StartElement{Name: xml.Name{Local: "message"}}, true, ""},
	} {
		if cond, _ := BetweenStanzas(tc.tok, tc.opened); cond != tc.cond {
			t.Errorf("%#v (opened %v): %q, want %q", tc.tok, tc.opened, cond, tc.cond)
		}
	}
}

func TestLimitReaderStopsAtTheLimit(t *testing.T) {
	l := &LimitReader{R: bufio.NewReader(strings.NewReader("<a>" + strings.Repeat("x", 100) + "</a>"))}
	l.Limit = 50
	d := NewDecoder(l)
	tok, err := d.Token()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Read(d, tok.(xml.StartElement))
	if !errors.Is(err, ErrTooBig) {
		t.Fatalf("read past the limit: %v", err)
	}
	if cond, _, _ := l.ReadError(err, 50); cond != "policy-violation" {
		t.Fatalf("condition %q", cond)
	}
	if l.N > 50 {
		t.Fatalf("read %d bytes with a limit of 50", l.N)
	}
}

// A declaration encoding/xml refuses is the peer's bad XML and ends the
// stream with a stream error, not a bare connection close.
func TestRefusedDeclarationIsAStreamError(t *testing.T) {
	for _, tc := range []struct {
		in   string
		cond StreamCondition
	}{
		{`<?xml version='0'?>`, StreamNotWellFormed},
		{`<?xml version='1.1'?><stream:stream/>`, StreamNotWellFormed},
		{`<?xml version='1.0' encoding='latin1'?><stream:stream/>`, StreamUnsupportedEncoding},
	} {
		lr := &LimitReader{R: bufio.NewReader(strings.NewReader(tc.in)), Limit: 1 << 10}
		d := xml.NewDecoder(lr)
		var err error
		for err == nil {
			_, err = d.Token()
		}
		cond, text, conn := lr.ReadError(err, 1<<10)
		if cond != tc.cond || conn != nil || text == "" {
			t.Errorf("%s: got %q %q (connection error %v), want %q", tc.in, cond, text, conn, tc.cond)
		}
	}
}
