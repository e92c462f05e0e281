package signaling

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"poosms.org/poosms/stanza"
)

// Namespaces of stream negotiation.
const (
	nsFraming = "urn:ietf:params:xml:ns:xmpp-framing"
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsSASLCB  = "urn:xmpp:sasl-cb:0"
)

// streamError is a failure that ends the stream with a condition.
type streamError struct {
	cond, text string
}

func (e *streamError) Error() string { return "stream error " + e.cond + ": " + e.text }

func streamErr(cond, text string) *streamError { return &streamError{cond, text} }

// event is what a transport reads: a stream header, an element, or the end.
type event struct {
	open  *stanza.Element // stream header (TCP <stream:stream>, WebSocket <open/>)
	el    *stanza.Element // a top-level element
	close bool            // the client closed the stream
}

// transport frames XMPP over one connection.
type transport interface {
	next() (event, error)
	// waitStanza returns once a stanza has begun to arrive, waiting
	// cheaply while none has (see memory_idle.go); next then reads it.
	waitStanza() error
	// restart prepares for a new stream header after STARTTLS or SASL.
	restart()
	writeHeader(id, from string) error
	write(el *stanza.Element) error
	// writeEncoded writes a stanza encoded by stanza.Encode, addressed to to.
	writeEncoded(w stanza.Encoded, to string) error
	writeClose() error
	startTLS(cfg *tls.Config) error // errNoTLSUpgrade when not possible
	tlsState() *tls.ConnectionState
	remoteAddr() net.Addr
	// park hands a connection with nothing to decode to the server's idle
	// waiter, which calls wake on a goroutine of its own when the client
	// sends, the idle limit passes or the connection is closed; false
	// when it is not parked and the caller reads (parking.go).
	park(wake func()) bool
	// setReadLimits bounds reading: each read must bring data within idle,
	// and nothing may be read after hard (zero: no hard limit).
	setReadLimits(idle time.Duration, hard time.Time)
	close() error
}

var errNoTLSUpgrade = errors.New("STARTTLS is not available on this transport")

// Sizes of a stream's read buffers.
const (
	smallReadSize = 256  // pooled, held only while it has unread bytes
	largeReadSize = 4096 // pooled, likewise, after a read filled a small one
)

var (
	smallReads = sync.Pool{New: func() any { b := make([]byte, smallReadSize); return &b }}
	largeReads = sync.Pool{New: func() any { b := make([]byte, largeReadSize); return &b }}
)

// readBuffer is a stream's read buffer, sized for idle sessions: most of
// them wait for bytes most of the time, and a 4 KiB buffer per connection
// was the largest item of a session's heap. A read goes into a small
// buffer; only when a read fills it (more is probably waiting) does the
// next read take a large one. Both come from pools and go back as soon as
// the decoder has consumed them, so a stream waiting for bytes holds no
// buffer at all. Over TLS the small reads cost no system calls:
// crypto/tls keeps the decrypted record and hands it out in pieces.
type readBuffer struct {
	src   io.Reader
	buf   []byte // unread bytes are buf[r:]
	r     int
	err   error   // the error that came with the last bytes, returned after them
	small *[]byte // the pooled buffer buf is in, nil when none is held
	large *[]byte
	grow  bool // the last read filled its buffer: the next one reads large
}

func newReadBuffer(src io.Reader) *readBuffer { return &readBuffer{src: src} }

// reset reads from src from now on (after STARTTLS), with nothing buffered.
func (b *readBuffer) reset(src io.Reader) {
	b.release()
	b.src, b.buf, b.r, b.err, b.grow = src, nil, 0, nil, false
}

// buffered is the number of bytes read from src and not yet consumed.
func (b *readBuffer) buffered() int { return len(b.buf) - b.r }

// unread returns the bytes read from src and not yet consumed.
func (b *readBuffer) unread() []byte { return b.buf[b.r:] }

// release gives the pooled buffers back; nothing may be left unread in
// them (fill calls it once buf is consumed, reset drops what is there).
func (b *readBuffer) release() {
	if b.small != nil {
		smallReads.Put(b.small)
		b.small = nil
	}
	if b.large != nil {
		largeReads.Put(b.large)
		b.large = nil
	}
}

// fill reads from src into an empty buffer.
func (b *readBuffer) fill() error {
	b.buf, b.r = nil, 0
	b.release()
	if err := b.err; err != nil {
		b.err = nil
		return err
	}
	var dst []byte
	if b.grow {
		b.large = largeReads.Get().(*[]byte)
		dst = *b.large
	} else {
		b.small = smallReads.Get().(*[]byte)
		dst = *b.small
	}
	for range 100 {
		n, err := b.src.Read(dst)
		if n < 0 || n > len(dst) {
			panic("signaling: a reader returned an impossible count")
		}
		if n > 0 {
			b.buf = dst[:n]
			b.err = err
			b.grow = n == len(dst)
			return nil
		}
		if err != nil {
			b.release()
			b.grow = false
			return err
		}
	}
	b.release()
	return io.ErrNoProgress
}

func (b *readBuffer) ReadByte() (byte, error) {
	for b.r == len(b.buf) {
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	c := b.buf[b.r]
	b.r++
	return c, nil
}

func (b *readBuffer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for b.r == len(b.buf) {
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.buf[b.r:])
	b.r += n
	return n, nil
}

// tcpTransport is an RFC 6120 stream over TCP (optionally upgraded to TLS)
// or over TLS from the first byte (XEP-0368).
type tcpTransport struct {
	conn     net.Conn // the deadlineConn, or TLS over it
	raw      *deadlineConn
	tls      *tls.Conn
	buf      *readBuffer
	cr       *stanza.LimitReader // counts what the decoder reads from buf
	dec      *xml.Decoder
	maxBytes int64
	limits   stanza.Limits
	opened   bool
	wtimeout time.Duration
	// header replays the stream header to a new decoder (parking.go);
	// "" when it cannot be.
	header string

	// Parking (parking.go). idle, fd and seq are set at creation; the
	// others belong to whoever holds the connection: its reader, or
	// while it is parked the idle waiter.
	idle    *idleWaiter // nil: the reader waits on the socket itself
	fd      int32       // the socket's descriptor, -1 if not a socket
	seq     uint32
	armed   bool        // registered with the waiter's epoll instance
	expired bool        // parked past the idle limit
	timer   *time.Timer // the idle limit while parked
	wake    func()
}

// deadlineConn renews the read deadline before every read from the
// socket, so any bytes (a whitespace keepalive too) keep a stream alive.
type deadlineConn struct {
	net.Conn
	idle  time.Duration
	hard  time.Time
	rc    syscall.RawConn // the socket, for waiting without reading (nil: not a socket)
	probe bool            // reads must not wait (see waitStanza)
	// skipSpace drops whitespace until the first other byte: the end of
	// the plaintext stream before a TLS handshake (see startTLS).
	skipSpace bool
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	for {
		n, err := d.read(p)
		if !d.skipSpace || n == 0 {
			return n, err
		}
		i := 0
		for i < n && isXMLSpace(p[i]) {
			i++
		}
		if i < n {
			d.skipSpace = false
			return copy(p, p[i:n]), err
		}
		if err != nil {
			return 0, err
		}
	}
}

func (d *deadlineConn) read(p []byte) (int, error) {
	if d.probe {
		return d.readNow(p)
	}
	d.setDeadline()
	return d.Conn.Read(p)
}

// newTCPTransport frames a stream over conn; with directTLS the TLS
// server side is layered over it (the handshake runs on first use).
func newTCPTransport(conn net.Conn, directTLS *tls.Config, maxBytes int64, limits stanza.Limits, writeTimeout time.Duration) *tcpTransport {
	raw := &deadlineConn{Conn: conn}
	raw.rc = raw.rawConn()
	t := &tcpTransport{conn: raw, raw: raw, maxBytes: maxBytes, limits: limits, wtimeout: writeTimeout, fd: -1, seq: parkSeq.Add(1)}
	if raw.rc != nil {
		_ = raw.rc.Control(func(fd uintptr) { t.fd = int32(fd) })
	}
	if directTLS != nil {
		t.tls = tls.Server(raw, directTLS)
		t.conn = t.tls
	}
	t.buf = newReadBuffer(t.conn)
	t.cr = &stanza.LimitReader{R: t.buf}
	t.restart()
	return t
}

func (t *tcpTransport) restart() {
	t.dec = t.limits.NewDecoder(t.cr)
	t.opened, t.header = false, ""
}

func (t *tcpTransport) next() (event, error) {
	if t.dec == nil {
		if err := t.redecode(); err != nil {
			return event{}, err
		}
	}
	for {
		t.cr.Limit = t.cr.N + t.maxBytes
		tok, err := t.dec.Token()
		if err != nil {
			return event{}, t.readError(err)
		}
		// Whitespace (keepalives) passes; DTDs, comments, text do not.
		if cond, text := stanza.BetweenStanzas(tok, t.opened); cond != "" {
			return event{}, streamErr(cond, text)
		}
		switch tk := tok.(type) {
		case xml.EndElement:
			return event{close: true}, nil
		case xml.StartElement:
			if !t.opened {
				if tk.Name.Local != "stream" || tk.Name.Space != stanza.NSStream {
					return event{}, streamErr("invalid-namespace", "expected <stream:stream xmlns:stream='"+stanza.NSStream+"'>")
				}
				t.opened = true
				t.header = replayableHeader(tk)
				h := stanza.FromStart(tk)
				// The default namespace must be jabber:client.
				for _, a := range tk.Attr {
					if a.Name.Space == "" && a.Name.Local == "xmlns" && a.Value != stanza.NSClient {
						return event{open: h}, streamErr("invalid-namespace", "the stream's default namespace must be jabber:client")
					}
				}
				return event{open: h}, nil
			}
			el, err := t.limits.Read(t.dec, tk)
			if err != nil {
				return event{}, t.readError(err)
			}
			return event{el: el}, nil
		}
	}
}

func (t *tcpTransport) readError(err error) error {
	var se *streamError
	if errors.As(err, &se) {
		return se
	}
	cond, text, conn := t.cr.ReadError(err, t.maxBytes)
	if cond == "" {
		return conn // I/O error: the connection is gone
	}
	return streamErr(cond, text)
}

func (t *tcpTransport) writeHeader(id, from string) error {
	h := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='" +
		stanza.Escape(id) + "' from='" + stanza.Escape(from) + "' version='1.0' xml:lang='en'>"
	return t.writeBytes([]byte(h))
}

// write serialises el into a pooled buffer: an idle session keeps no
// write buffer of its own.
func (t *tcpTransport) write(el *stanza.Element) error {
	bp := stanza.GetBuffer()
	*bp = el.AppendXML((*bp)[:0], stanza.NSClient)
	err := t.writeBytes(*bp)
	stanza.PutBuffer(bp)
	return err
}

func (t *tcpTransport) writeEncoded(w stanza.Encoded, to string) error {
	bp := stanza.GetBuffer()
	*bp = w.Append((*bp)[:0], to, stanza.NSClient)
	err := t.writeBytes(*bp)
	stanza.PutBuffer(bp)
	return err
}

func (t *tcpTransport) writeClose() error { return t.writeBytes([]byte("</stream:stream>")) }

func (t *tcpTransport) writeBytes(b []byte) error {
	if t.wtimeout > 0 {
		_ = t.conn.SetWriteDeadline(time.Now().Add(t.wtimeout))
	}
	_, err := t.conn.Write(b)
	return err
}

// startTLS upgrades the connection after <proceed/>. Bytes the client
// sent after <starttls/> that are still unread would be plaintext taken
// into the encrypted stream (STARTTLS command injection): anything but
// whitespace there ends the stream. Whitespace is XML whitespace between
// elements, not data: go-xmpp based clients end <starttls/> with a
// newline. It is dropped, whether already read or still to come before
// the client's first TLS record (which never begins with whitespace).
func (t *tcpTransport) startTLS(cfg *tls.Config) error {
	if t.tls != nil {
		return errNoTLSUpgrade
	}
	if slices.ContainsFunc(t.buf.unread(), func(c byte) bool { return !isXMLSpace(c) }) {
		return streamErr("policy-violation", "data sent after <starttls/> before <proceed/>")
	}
	t.raw.skipSpace = true
	tc := tls.Server(t.raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("signaling: tls handshake: %w", err)
	}
	t.conn, t.tls = tc, tc
	t.buf.reset(tc)
	t.restart()
	return nil
}

func (t *tcpTransport) tlsState() *tls.ConnectionState {
	if t.tls == nil {
		return nil
	}
	st := t.tls.ConnectionState()
	return &st
}

func (t *tcpTransport) remoteAddr() net.Addr { return t.conn.RemoteAddr() }
func (t *tcpTransport) setReadLimits(idle time.Duration, hard time.Time) {
	t.raw.idle, t.raw.hard = idle, hard
}

// close closes the connection; a parked one is taken back from the idle
// waiter first (before its descriptor can be reused) and woken, so that
// its reader meets the closed connection and ends the session's part.
func (t *tcpTransport) close() error {
	parked := t.idle != nil && t.idle.claim(t)
	err := t.conn.Close()
	if parked {
		go t.wake()
	}
	return err
}

// wsTransport is XMPP over WebSocket (RFC 7395): one element per text
// frame, <open/> and <close/> in the framing namespace.
type wsTransport struct {
	conn     *websocket.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	remote   net.Addr
	tls      *tls.ConnectionState
	maxBytes int64
	limits   stanza.Limits
	wtimeout time.Duration
	idle     time.Duration
	hard     time.Time
}

func newWSTransport(conn *websocket.Conn, remote net.Addr, st *tls.ConnectionState, maxBytes int64, limits stanza.Limits, writeTimeout time.Duration) *wsTransport {
	ctx, cancel := context.WithCancel(context.Background())
	// Frames a little over the limit are read so the client gets a stream
	// error; far larger ones make the library close the socket (1009).
	conn.SetReadLimit(maxBytes + 4096)
	return &wsTransport{conn: conn, ctx: ctx, cancel: cancel, remote: remote, tls: st, maxBytes: maxBytes, limits: limits, wtimeout: writeTimeout}
}

func (t *wsTransport) restart() {}

func (t *wsTransport) waitStanza() error { return nil }

func (t *wsTransport) park(func()) bool { return false }

func (t *wsTransport) next() (event, error) {
	ctx := t.ctx
	dl := t.hard
	if soft := time.Now().Add(t.idle); t.idle > 0 && (dl.IsZero() || soft.Before(dl)) {
		dl = soft
	}
	if !dl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	typ, b, err := t.conn.Read(ctx)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return event{}, streamErr("connection-timeout", "no data within the time limit")
		}
		if websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
			return event{}, streamErr("policy-violation", fmt.Sprintf("stanza larger than %d bytes", t.maxBytes))
		}
		return event{}, err
	}
	return wsFrame(typ, b, t.maxBytes, t.limits)
}

// wsFrame reads one WebSocket message as RFC 7395 frames XMPP: a text
// frame holding one element, <open/> and <close/> in the framing
// namespace.
func wsFrame(typ websocket.MessageType, b []byte, maxBytes int64, limits stanza.Limits) (event, error) {
	if typ != websocket.MessageText {
		return event{}, streamErr("bad-format", "binary WebSocket frames are not XMPP")
	}
	if int64(len(b)) > maxBytes {
		return event{}, streamErr("policy-violation", fmt.Sprintf("stanza larger than %d bytes", maxBytes))
	}
	el, err := limits.Parse(b)
	if err != nil {
		var syn *xml.SyntaxError
		if errors.Is(err, stanza.ErrLimit) {
			return event{}, streamErr("policy-violation", err.Error())
		}
		if errors.Is(err, stanza.ErrRestrictedXML) {
			return event{}, streamErr("restricted-xml", err.Error())
		}
		if errors.As(err, &syn) {
			return event{}, streamErr("not-well-formed", syn.Msg)
		}
		return event{}, streamErr("not-well-formed", err.Error())
	}
	if el.Space == nsFraming {
		switch el.Local {
		case "open":
			return event{open: el}, nil
		case "close":
			return event{close: true}, nil
		}
	}
	return event{el: el}, nil
}

func (t *wsTransport) writeHeader(id, from string) error {
	h := "<open xmlns='" + nsFraming + "' id='" + stanza.Escape(id) + "' from='" + stanza.Escape(from) + "' version='1.0' xml:lang='en'/>"
	return t.writeFrame([]byte(h))
}

func (t *wsTransport) write(el *stanza.Element) error {
	bp := stanza.GetBuffer()
	if el.Space == stanza.NSStream {
		// RFC 7395 writes features and stream errors with the stream prefix.
		*bp = appendPrefixed((*bp)[:0], el)
	} else {
		*bp = el.AppendXML((*bp)[:0], "")
	}
	err := t.writeFrame(*bp)
	stanza.PutBuffer(bp)
	return err
}

func (t *wsTransport) writeEncoded(w stanza.Encoded, to string) error {
	bp := stanza.GetBuffer()
	*bp = w.Append((*bp)[:0], to, "")
	err := t.writeFrame(*bp)
	stanza.PutBuffer(bp)
	return err
}

// appendPrefixed writes <stream:NAME xmlns:stream='…'>children</stream:NAME>.
func appendPrefixed(buf []byte, el *stanza.Element) []byte {
	buf = append(buf, "<stream:"+el.Local+" xmlns:stream='"+stanza.NSStream+"'>"...)
	for _, c := range el.Elements() {
		buf = c.AppendXML(buf, stanza.NSClient)
	}
	return append(buf, "</stream:"+el.Local+">"...)
}

func (t *wsTransport) writeClose() error {
	return t.writeFrame([]byte("<close xmlns='" + nsFraming + "'/>"))
}

func (t *wsTransport) writeFrame(b []byte) error {
	ctx := t.ctx
	if t.wtimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.wtimeout)
		defer cancel()
	}
	return t.conn.Write(ctx, websocket.MessageText, b)
}

func (t *wsTransport) startTLS(*tls.Config) error     { return errNoTLSUpgrade }
func (t *wsTransport) tlsState() *tls.ConnectionState { return t.tls }
func (t *wsTransport) remoteAddr() net.Addr           { return t.remote }

func (t *wsTransport) setReadLimits(idle time.Duration, hard time.Time) {
	t.idle, t.hard = idle, hard
}

func (t *wsTransport) close() error {
	// CloseNow: close() may run under a session lock and must not wait
	// for the peer's half of the closing handshake.
	err := t.conn.CloseNow()
	t.cancel()
	return err
}
