package s2s

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"poosms.org/poosms/stanza"
)

// Namespaces of server streams.
const (
	nsServer          = "jabber:server"
	nsDialback        = "jabber:server:dialback"
	nsDialbackFeature = "urn:xmpp:features:dialback"
	nsTLS             = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL            = "urn:ietf:params:xml:ns:xmpp-sasl"
)

// streamError is a failure that ends a stream with a condition
// (RFC 6120 §4.9.3), sent to the peer or received from it.
type streamError struct {
	cond   stanza.StreamCondition
	text   string
	remote bool // the peer sent it
}

func (e *streamError) Error() string {
	who := "stream error"
	if e.remote {
		who = "peer's stream error"
	}
	if e.text == "" {
		return who + " " + string(e.cond)
	}
	return who + " " + string(e.cond) + ": " + e.text
}

func streamErr(cond stanza.StreamCondition, text string) *streamError {
	return &streamError{cond: cond, text: text}
}

// errPeerClosed: the peer closed its stream with </stream:stream>.
var errPeerClosed = errors.New("s2s: the peer closed the stream")

// header is a peer's stream header.
type header struct {
	to, from, id, version string
	ns                    string // the default namespace declared
	dialback              bool   // declares the dialback prefix (xmlns:db)
}

// event is what a stream reads: its header, one top-level element, or
// the closing tag.
type event struct {
	header *header
	el     *stanza.Element
	closed bool
}

// idleConn renews the read deadline before every read from the socket,
// so that any bytes (whitespace keepalives too) keep a stream alive; hard,
// when set, is a deadline no read passes (authentication time).
type idleConn struct {
	net.Conn
	mu   sync.Mutex
	idle time.Duration
	hard time.Time
}

func (d *idleConn) Read(p []byte) (int, error) {
	d.mu.Lock()
	dl := d.hard
	if d.idle > 0 {
		if soft := time.Now().Add(d.idle); dl.IsZero() || soft.Before(dl) {
			dl = soft
		}
	}
	d.mu.Unlock()
	_ = d.Conn.SetReadDeadline(dl)
	return d.Conn.Read(p)
}

func (d *idleConn) limits(idle time.Duration, hard time.Time) {
	d.mu.Lock()
	d.idle, d.hard = idle, hard
	d.mu.Unlock()
}

// conn is one server stream's connection: TCP, TLS over it, the XML
// decoder of the current stream (a new one after each restart) and a
// writer that any goroutine may use.
type conn struct {
	raw      *idleConn
	c        net.Conn // raw, or TLS over it
	tls      *tls.Conn
	buf      *bufio.Reader
	lr       *stanza.LimitReader
	dec      *xml.Decoder
	max      int64
	shape    stanza.Limits // zero fields: the defaults
	opened   bool
	wtimeout time.Duration

	wmu sync.Mutex // serialises writes
}

func newConn(c net.Conn, maxBytes int64, writeTimeout time.Duration) *conn {
	raw := &idleConn{Conn: c}
	x := &conn{raw: raw, c: raw, max: maxBytes, wtimeout: writeTimeout}
	x.buf = bufio.NewReaderSize(raw, 4096)
	x.lr = &stanza.LimitReader{R: x.buf}
	x.restart()
	return x
}

// restart expects a new stream header (after TLS or SASL).
func (c *conn) restart() {
	c.dec = c.shape.NewDecoder(c.lr)
	c.opened = false
}

// limitShape reads stanzas within l from now on; call it before the
// first read.
func (c *conn) limitShape(l stanza.Limits) *conn {
	c.shape = l
	c.restart()
	return c
}

// tlsState is the TLS state, or nil before TLS.
func (c *conn) tlsState() *tls.ConnectionState {
	if c.tls == nil {
		return nil
	}
	st := c.tls.ConnectionState()
	return &st
}

// upgrade layers TLS over the connection (STARTTLS, or direct TLS before
// any byte) and runs the handshake within ctx.
func (c *conn) upgrade(ctx context.Context, tc *tls.Conn) error {
	if c.buf.Buffered() > 0 {
		return streamErr("policy-violation", "data sent before the TLS handshake")
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("s2s: tls handshake: %w", err)
	}
	c.c, c.tls = tc, tc
	c.buf.Reset(tc)
	c.restart()
	return nil
}

// next reads the next event.
func (c *conn) next() (event, error) {
	for {
		c.lr.Limit = c.lr.N + c.max
		tok, err := c.dec.Token()
		if err != nil {
			return event{}, c.readError(err)
		}
		if cond, text := stanza.BetweenStanzas(tok, c.opened); cond != "" {
			return event{}, streamErr(cond, text)
		}
		switch tk := tok.(type) {
		case xml.EndElement:
			return event{closed: true}, nil
		case xml.StartElement:
			if !c.opened {
				if tk.Name.Local != "stream" || tk.Name.Space != stanza.NSStream {
					return event{}, streamErr("invalid-namespace", "expected <stream:stream xmlns:stream='"+stanza.NSStream+"'>")
				}
				c.opened = true
				return event{header: readHeader(tk)}, nil
			}
			el, err := c.shape.Read(c.dec, tk)
			if err != nil {
				return event{}, c.readError(err)
			}
			return event{el: el}, nil
		}
	}
}

func readHeader(se xml.StartElement) *header {
	h := &header{}
	for _, a := range se.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			h.ns = a.Value
		case a.Name.Space == "xmlns" && a.Name.Local == "db":
			h.dialback = a.Value == nsDialback
		case a.Name.Space != "":
		case a.Name.Local == "to":
			h.to = a.Value
		case a.Name.Local == "from":
			h.from = a.Value
		case a.Name.Local == "id":
			h.id = a.Value
		case a.Name.Local == "version":
			h.version = a.Value
		}
	}
	return h
}

// version1 reports whether a header's version is 1.0 or later.
func (h *header) version1() bool {
	major, _, _ := strings.Cut(h.version, ".")
	n, err := strconv.Atoi(major)
	return err == nil && n >= 1
}

// toClientNS moves a stanza read from a server stream into jabber:client,
// the namespace poosms keeps stanzas in: the element and the descendants
// that inherit the stream's default namespace. Elements of other
// namespaces (a forwarded message's jabber:client) are left alone.
func toClientNS(el *stanza.Element) {
	if el.Space != nsServer {
		return
	}
	el.Space = stanza.NSClient
	for _, c := range el.Children {
		if ce, ok := c.(*stanza.Element); ok {
			toClientNS(ce)
		}
	}
}

func (c *conn) readError(err error) error {
	var se *streamError
	if errors.As(err, &se) {
		return se
	}
	cond, text, connErr := c.lr.ReadError(err, c.max)
	if cond == "" {
		return connErr
	}
	return streamErr(cond, text)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeHeader writes a stream header in the jabber:server namespace,
// declaring the dialback prefix.
func (c *conn) writeHeader(from, to, id string) error {
	var b strings.Builder
	b.WriteString("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='" + stanza.NSStream +
		"' xmlns:db='" + nsDialback + "'")
	for _, a := range [][2]string{{"from", from}, {"to", to}, {"id", id}} {
		if a[1] != "" {
			b.WriteString(" " + a[0] + "='" + stanza.Escape(a[1]) + "'")
		}
	}
	b.WriteString(" version='1.0'>")
	return c.writeRaw([]byte(b.String()))
}

// write serialises el for a server stream. Stanzas are kept in
// jabber:client; written with that as the namespace in scope, they and
// their children inherit the stream's jabber:server. Stream and dialback
// elements are written with their prefixes, which some servers insist on.
func (c *conn) write(el *stanza.Element) error {
	bp := stanza.GetBuffer()
	*bp = appendS2S((*bp)[:0], el)
	err := c.writeRaw(*bp)
	stanza.PutBuffer(bp)
	return err
}

func appendS2S(buf []byte, el *stanza.Element) []byte {
	switch el.Space {
	case stanza.NSStream:
		return appendPrefixed(buf, "stream", el)
	case nsDialback:
		return appendPrefixed(buf, "db", el)
	}
	return el.AppendXML(buf, stanza.NSClient)
}

// appendPrefixed writes el as <prefix:local …>, the prefix being declared
// on the stream header; children inherit the stream's namespace.
func appendPrefixed(buf []byte, prefix string, el *stanza.Element) []byte {
	buf = append(buf, "<"+prefix+":"+el.Local...)
	for _, a := range el.Attrs {
		if a.Space != "" {
			continue
		}
		buf = append(buf, " "+a.Local+"='"+stanza.Escape(a.Value)+"'"...)
	}
	if len(el.Children) == 0 {
		return append(buf, "/>"...)
	}
	buf = append(buf, '>')
	for _, ch := range el.Children {
		switch n := ch.(type) {
		case *stanza.Element:
			buf = n.AppendXML(buf, stanza.NSClient)
		case stanza.Text:
			buf = append(buf, stanza.Escape(string(n))...)
		}
	}
	return append(buf, "</"+prefix+":"+el.Local+">"...)
}

func (c *conn) writeClose() error { return c.writeRaw([]byte("</stream:stream>")) }

func (c *conn) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wtimeout > 0 {
		_ = c.c.SetWriteDeadline(time.Now().Add(c.wtimeout))
	}
	_, err := c.c.Write(b)
	return err
}

// fail writes a stream error and the closing tag, then closes.
func (c *conn) fail(se *streamError) {
	_ = c.write(stanza.StreamError(se.cond, se.text))
	_ = c.writeClose()
	_ = c.close()
}

func (c *conn) close() error { return c.c.Close() }

// peerStreamError turns a <stream:error/> the peer sent into an error.
func peerStreamError(el *stanza.Element) *streamError {
	se := &streamError{cond: "undefined-condition", remote: true}
	for _, c := range el.Elements() {
		if c.Space != stanza.NSStreams {
			continue
		}
		if c.Local == "text" {
			se.text = c.Text()
		} else {
			se.cond = stanza.StreamCondition(c.Local)
		}
	}
	return se
}
