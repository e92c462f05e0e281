package signaling

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"poosms.org/poosms/stanza"
)

// Idle sessions without a goroutine.
//
// A bound session spends most of its life waiting for its client's next
// stanza. Waiting on the socket in a shallow frame (memory_idle.go) still
// costs a goroutine, whose stack Go does not shrink below 4 KiB, and the
// collector counts stacks into the heap goal as well. So a bound TCP
// session whose client has nothing more to read parks instead: its reader
// goroutine ends, and the server's idleWaiter (one epoll instance for all)
// watches the socket. What wakes a parked connection — bytes from the
// client (or its hanging up), its idle limit, or its closing by anyone
// (a stream error, a kick, a stream-management takeover, shutdown) — takes
// it back from the waiter and starts a reader goroutine, which carries on
// where the last one stopped. A connection is parked only when nothing is
// buffered: not in the stream's read buffer, nor decrypted or read ahead
// by crypto/tls, whom the transport asks without waiting (as waitStanza
// does), so the socket's readiness is the only event that can bring a
// stanza.

// Between stanzas an XML decoder (about 1.5 KB with its namespace table,
// token buffer and element stack) holds nothing but the stream header's
// namespace declarations and the open <stream:stream>. A parked
// connection drops it; the next read makes a new one and feeds it a copy
// of the header's start tag (replayableHeader) before the client's bytes,
// which the stream's byte count and limits never see.

// errParked: the reader handed its connection to the idle waiter and ends;
// a new reader continues when the connection wakes.
var errParked = errors.New("signaling: connection parked")

// parkSeq numbers transports, so a wake-up meant for a closed socket is
// not taken for the next one given the same descriptor.
var parkSeq atomic.Uint32

// park hands t to the idle waiter when nothing is waiting to be decoded:
// wake is then called, on a goroutine of its own, when the client sends,
// the idle limit passes, or t is closed, and the caller must not touch t
// again. False when something is ready (or parking is not possible): the
// caller reads as usual.
func (t *tcpTransport) park(wake func()) bool {
	if t.idle == nil || t.raw.rc == nil || t.expired || !t.raw.hard.IsZero() {
		return false
	}
	if t.ready() {
		return false
	}
	if t.header != "" {
		// At a stanza boundary the decoder holds only the stream
		// header's namespaces: dropped, and made again on wake-up.
		t.dec = nil
	}
	return t.idle.park(t, wake)
}

// idleExpired runs on the timer of a parked connection whose idle limit
// passed: its reader learns it from waitStanza.
func (t *tcpTransport) idleExpired() {
	if t.idle.claim(t) {
		t.expired = true
		t.wake()
	}
}

// expiredError is what waiting past the idle limit returns, as a socket
// read deadline would.
func (t *tcpTransport) expiredError() error {
	t.expired = false
	t.cr.IOErr = os.ErrDeadlineExceeded
	return t.readError(os.ErrDeadlineExceeded)
}

func newStoppedTimer(f func()) *time.Timer {
	tm := time.AfterFunc(time.Hour, f)
	tm.Stop()
	return tm
}

// The start tags clients send, in either order of their declarations,
// replayed without a copy of their own.
const (
	canonicalHeader = "<stream:stream xmlns:stream='" + stanza.NSStream + "' xmlns='" + stanza.NSClient + "'>"
	commonHeader    = "<stream:stream xmlns='" + stanza.NSClient + "' xmlns:stream='" + stanza.NSStream + "'>"
)

// replayableHeader returns a start tag that leaves a new decoder where the
// stream header left the first: inside the stream's element, under the
// namespace declarations the header made. "" when the stream's prefix is
// ambiguous: the decoder is then kept.
func replayableHeader(h xml.StartElement) string {
	prefix := ""
	n := 0
	for _, a := range h.Attr {
		if a.Name.Space == "xmlns" && a.Value == stanza.NSStream {
			prefix = a.Name.Local
			n++
		}
	}
	if n != 1 {
		return ""
	}
	b := []byte("<" + prefix + ":stream")
	for _, a := range h.Attr {
		switch {
		case a.Name.Space == "xmlns":
			b = append(b, " xmlns:"+a.Name.Local+"='"+stanza.Escape(a.Value)+"'"...)
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			b = append(b, " xmlns='"+stanza.Escape(a.Value)+"'"...)
		}
	}
	b = append(b, '>')
	switch string(b) {
	case canonicalHeader:
		return canonicalHeader
	case commonHeader:
		return commonHeader
	}
	return string(b)
}

// redecode makes a new decoder for the stream and replays the header.
func (t *tcpTransport) redecode() error {
	t.dec = t.limits.NewDecoder(&replayReader{head: t.header, r: t.cr})
	tok, err := t.dec.Token()
	if se, ok := tok.(xml.StartElement); err != nil || !ok || se.Name.Space != stanza.NSStream {
		return fmt.Errorf("signaling: replaying the stream header %q: %v", t.header, err)
	}
	return nil
}

// replayReader reads head, then r.
type replayReader struct {
	head string
	r    io.ByteReader
}

func (p *replayReader) ReadByte() (byte, error) {
	if p.head != "" {
		c := p.head[0]
		p.head = p.head[1:]
		return c, nil
	}
	return p.r.ReadByte()
}
