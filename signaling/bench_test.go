package signaling

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

// memConn is a net.Conn reading from a buffer, for benchmarks.
type memConn struct {
	net.Conn
	r *bytes.Reader
}

func (c memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c memConn) SetReadDeadline(time.Time) error  { return nil }
func (c memConn) SetWriteDeadline(time.Time) error { return nil }
func (c memConn) Write(p []byte) (int, error)      { return len(p), nil }

// BenchmarkReadStanza measures parsing one chat message off a stream: the
// counting reader, the XML decoder and the element tree.
func BenchmarkReadStanza(b *testing.B) {
	const msg = "<message to='bob@localhost' type='chat' id='a1b2c3'><body>hello there, how are you today?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
	head := "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
	data := []byte(head + strings.Repeat(msg, b.N+1))
	t := newTCPTransport(memConn{r: bytes.NewReader(data)}, nil, 1<<20, stanza.Limits{}, 0)
	if ev, err := t.next(); err != nil || ev.open == nil {
		b.Fatalf("header: %v", err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev, err := t.next()
		if err != nil || ev.el == nil {
			b.Fatalf("stanza %d: %v", i, err)
		}
	}
}

// BenchmarkWriteStanza measures serialising one message to the stream.
func BenchmarkWriteStanza(b *testing.B) {
	h := []byte("<message to='bob@localhost' from='alice@localhost/laptop' type='chat' id='a1b2c3'><body>hello there, how are you today?</body></message>")
	t := newTCPTransport(memConn{r: bytes.NewReader(nil)}, nil, 1<<20, stanza.Limits{}, 0)
	el, err := parseForBench(h)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := t.write(el); err != nil {
			b.Fatal(err)
		}
	}
}

func parseForBench(b []byte) (*stanza.Element, error) { return stanza.Parse(b) }

// BenchmarkWriteEncodedStanza measures what a session's writer does with
// a queued stanza: its encoded bytes and its to, assembled in a pooled
// buffer and written.
func BenchmarkWriteEncodedStanza(b *testing.B) {
	t := newTCPTransport(memConn{r: bytes.NewReader(nil)}, nil, 1<<20, stanza.Limits{}, 0)
	el, err := parseForBench([]byte("<message from='alice@localhost/laptop' type='chat' id='a1b2c3'><body>hello there, how are you today?</body></message>"))
	if err != nil {
		b.Fatal(err)
	}
	w := stanza.Encode(el)
	b.ReportAllocs()
	for b.Loop() {
		if err := t.writeEncoded(w, "bob@localhost/phone"); err != nil {
			b.Fatal(err)
		}
	}
}
