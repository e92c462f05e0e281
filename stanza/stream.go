package stanza

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// The rules every XMPP stream poosms reads follows, client's or server's:
// the size limit on each top-level element and what may stand between
// them.

// ErrTooBig is what a LimitReader returns past its limit.
var ErrTooBig = errors.New("stanza: element exceeds the size limit")

// LimitReader counts the bytes a stream's decoder reads and refuses to
// read more than Limit in total: the stream sets Limit to N plus the
// largest size allowed before each top-level element, so that no stanza
// grows past it. IOErr keeps the connection's own error, which the XML
// decoder may report as a syntax error.
type LimitReader struct {
	R interface {
		io.Reader
		io.ByteReader
	}
	N, Limit int64
	IOErr    error
}

func (l *LimitReader) ReadByte() (byte, error) {
	if l.N >= l.Limit {
		return 0, ErrTooBig
	}
	b, err := l.R.ReadByte()
	if err != nil {
		l.IOErr = err
		return b, err
	}
	l.N++
	return b, nil
}

func (l *LimitReader) Read(p []byte) (int, error) {
	if l.N >= l.Limit {
		return 0, ErrTooBig
	}
	if rem := l.Limit - l.N; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := l.R.Read(p)
	l.N += int64(n)
	if err != nil {
		l.IOErr = err
	}
	return n, err
}

// ReadError sorts an error met while decoding through l, whose limit
// per element is max: the stream error condition and text to answer
// with, or, when the connection itself failed, that error (conn).
func (l *LimitReader) ReadError(err error, max int64) (cond StreamCondition, text string, conn error) {
	var syn *xml.SyntaxError
	switch {
	case l.IOErr != nil && !errors.Is(l.IOErr, ErrTooBig):
		// "unexpected EOF" from the decoder is the socket's doing, not bad XML.
		if isTimeout(l.IOErr) {
			return StreamConnectionTimeout, "no data within the time limit", nil
		}
		return "", "", l.IOErr
	case errors.Is(err, ErrTooBig):
		return StreamPolicyViolation, fmt.Sprintf("stanza larger than %d bytes", max), nil
	case errors.Is(err, ErrLimit):
		return StreamPolicyViolation, err.Error(), nil
	case errors.Is(err, ErrRestrictedXML):
		return StreamRestrictedXML, err.Error(), nil
	case errors.Is(err, ErrNotWellFormed):
		return StreamNotWellFormed, err.Error(), nil
	case errors.As(err, &syn):
		return StreamNotWellFormed, syn.Msg, nil
	case isTimeout(err):
		return StreamConnectionTimeout, "no data within the time limit", nil
	}
	// encoding/xml reports a declaration it refuses (an XML version other
	// than 1.0, an encoding other than UTF-8) as a plain error, not a
	// SyntaxError; it is still the peer's bad XML.
	if msg := err.Error(); strings.HasPrefix(msg, "xml: ") {
		if strings.Contains(msg, "encoding") {
			return StreamUnsupportedEncoding, strings.TrimPrefix(msg, "xml: "), nil
		}
		return StreamNotWellFormed, strings.TrimPrefix(msg, "xml: "), nil
	}
	return "", "", err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// BetweenStanzas judges a token read outside any top-level element of a
// stream: the XML declaration before the header and whitespace
// (keepalives) pass; any other processing instruction, a DTD or entity
// declaration, a comment or text is a stream error, whose condition and
// text it returns. opened says whether the stream header was read.
func BetweenStanzas(tok xml.Token, opened bool) (cond StreamCondition, text string) {
	switch tk := tok.(type) {
	case xml.ProcInst:
		if opened || tk.Target != "xml" {
			return StreamRestrictedXML, "processing instructions are not allowed"
		}
	case xml.Directive:
		return StreamRestrictedXML, "DTDs and entity declarations are not allowed"
	case xml.Comment:
		return StreamRestrictedXML, "comments are not allowed"
	case xml.CharData:
		if len(bytes.TrimSpace(tk)) != 0 {
			return StreamBadFormat, "text outside a stanza"
		}
	}
	return "", ""
}
