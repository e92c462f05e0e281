package signaling

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

// sessionOf is the server's session bound to full JID j.
func sessionOf(t *testing.T, h *harness, j string) *Session {
	t.Helper()
	var s *Session
	waitFor(t, func() bool {
		h.echo.mu.Lock()
		defer h.echo.mu.Unlock()
		s = h.echo.sessions[j]
		return s != nil
	})
	return s
}

// noWriter reports that no writer goroutine runs and nothing is queued.
func noWriter(s *Session) bool {
	s.q.mu.Lock()
	defer s.q.mu.Unlock()
	return s.q.writing == writerIdle && s.q.items == nil
}

// An idle session has no writer goroutine and no queue; the next stanza
// starts a writer again, and stanzas keep their order.
func TestIdleSessionHasNoWriter(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.dial(t, "alice", "", nil)
	bob := h.dial(t, "bob", "", nil)
	exchange(t, alice, bob, "first")
	sb := sessionOf(t, h, bob.JID.String())
	waitFor(t, func() bool { return noWriter(sb) })
	for round := range 3 {
		for i := range 20 {
			if err := alice.Send(msg(bob.JID.String(), strconv.Itoa(round*20+i))); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 20 {
			el, err := bob.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
			if err != nil {
				t.Fatal(err)
			}
			if got, want := el.ChildText("", "body"), strconv.Itoa(round*20+i); got != want {
				t.Fatalf("round %d: body %q, want %q", round, got, want)
			}
		}
		waitFor(t, func() bool { return noWriter(sb) })
	}
}

// SendWait waits for room in a full queue instead of dropping the client.
func TestSendWaitWaitsForRoom(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WriteQueue = 2 })
	bob := h.dial(t, "bob", "", nil)
	sb := sessionOf(t, h, bob.JID.String())
	const n = 50
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if err := sb.SendWait(context.Background(), msg(bob.JID.String(), strconv.Itoa(i))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range n {
		el, err := bob.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
		if err != nil {
			t.Fatal(err)
		}
		if got := el.ChildText("", "body"); got != strconv.Itoa(i) {
			t.Fatalf("body %q, want %d", got, i)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("SendWait: %v", err)
	}
	waitFor(t, func() bool { return noWriter(sb) })

	// Once the session is stopped, a waiting SendWait gives up.
	sb.q.mu.Lock()
	sb.q.writing = writerRunning // hold the writer off, so the queue stays full
	for _, body := range []string{"1", "2"} {
		m := msg("x@localhost", body)
		sb.q.appendLocked(newOutgoing(m, stanza.Encode(m), m.To(), time.Now))
	}
	sb.q.mu.Unlock()
	go func() { errc <- sb.SendWait(context.Background(), msg("x@localhost", "3")) }()
	waitFor(t, func() bool {
		sb.q.mu.Lock()
		defer sb.q.mu.Unlock()
		return sb.q.room != nil
	})
	sb.q.mu.Lock()
	sb.q.writing = writerIdle
	sb.q.mu.Unlock()
	sb.stop(nil) // wakes the writer, which finishes the stream
	if err := <-errc; !errors.Is(err, ErrSessionGone) {
		t.Fatalf("SendWait after stop: %v, want ErrSessionGone", err)
	}
}

// A session stopped while idle (no writer running) still ends its stream
// properly: a writer starts to write the stream error and the closing tag.
func TestStopWhileIdleWritesStreamError(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.dial(t, "alice", "", nil)
	sa := sessionOf(t, h, alice.JID.String())
	waitFor(t, func() bool { return noWriter(sa) })
	sa.Stop("policy-violation", "testing")
	out := readUntilClosed(t, alice.Conn())
	if !strings.Contains(out, "policy-violation") || !strings.Contains(out, "</stream:stream>") {
		t.Fatalf("server wrote %q, want the stream error and the closing tag", out)
	}
}

// trickle returns its data a few bytes per read, then err.
type trickle struct {
	data  []byte
	chunk int
	err   error
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := min(len(p), r.chunk, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	if len(r.data) == 0 && r.err != nil {
		return n, r.err // bytes and the error together
	}
	return n, nil
}

func TestReadBuffer(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000) // 10,000 bytes
	for _, chunk := range []int{1, 7, smallReadSize, 5000, 20000} {
		src := &trickle{data: data, chunk: chunk, err: io.ErrUnexpectedEOF}
		b := newReadBuffer(src)
		var got []byte
		var err error
		for {
			var c byte
			if c, err = b.ReadByte(); err != nil {
				break
			}
			got = append(got, c)
			if len(got)%3 == 0 {
				p := make([]byte, 5)
				n, rerr := b.Read(p)
				got = append(got, p[:n]...)
				if rerr != nil {
					err = rerr
					break
				}
			}
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("chunk %d: error %v, want the source's, after its bytes", chunk, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("chunk %d: read %d bytes, not the %d sent", chunk, len(got), len(data))
		}
		if b.large != nil {
			t.Fatalf("chunk %d: the pooled buffer is still held at the end", chunk)
		}
	}
}

// A stream whose reads fill the small buffer reads the rest through a
// pooled buffer, and gives it back once consumed.
func TestReadBufferGivesBackLargeBuffer(t *testing.T) {
	src := &trickle{data: bytes.Repeat([]byte("x"), smallReadSize+100), chunk: 1 << 20, err: io.EOF}
	b := newReadBuffer(src)
	for range smallReadSize {
		if _, err := b.ReadByte(); err != nil {
			t.Fatal(err)
		}
	}
	if b.large != nil {
		t.Fatal("a pooled buffer is held before one is needed")
	}
	if _, err := b.ReadByte(); err != nil {
		t.Fatal(err)
	}
	if b.large == nil {
		t.Fatal("the read after a full small one did not use a pooled buffer")
	}
	for range 99 {
		if _, err := b.ReadByte(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.ReadByte(); err != io.EOF {
		t.Fatalf("after the data: %v, want EOF", err)
	}
	if b.large != nil {
		t.Fatal("the pooled buffer was not given back")
	}
}

// A stanza that arrives in pieces, in several TLS records with pauses
// between them and keepalive whitespace before it, is read whole after
// the reader waited for it on the socket.
func TestStanzaInPiecesAfterIdleWait(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.dial(t, "alice", "", nil)
	bob := h.dial(t, "bob", "", nil)
	pieces := []string{" \n ", "\t", "<message to='" + bob.JID.String() + "' type='chat'><bo", "dy>in pie", "ces</body></mess", "age>"}
	// Paced, so that the reader most likely waits between pieces; the
	// outcome must not depend on it.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, p := range pieces {
		<-tick.C
		if err := alice.SendRaw(p); err != nil {
			t.Fatal(err)
		}
	}
	el, err := bob.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
	if err != nil {
		t.Fatal(err)
	}
	if got := el.ChildText("", "body"); got != "in pieces" {
		t.Fatalf("body %q", got)
	}
	exchange(t, alice, bob, "and the stream goes on")
}

// A stream that has consumed what it read and finds nothing more waiting
// holds no read buffer: idle sessions keep none.
func TestIdleReadBufferHoldsNothing(t *testing.T) {
	src := &trickle{data: []byte("<presence/>"), chunk: 4, err: errWouldBlock}
	b := newReadBuffer(src)
	if _, err := b.ReadByte(); err != nil {
		t.Fatal(err)
	}
	if b.small == nil {
		t.Fatal("bytes were read without a buffer")
	}
	for range len("<presence/>") - 1 {
		if _, err := b.ReadByte(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.ReadByte(); !errors.Is(err, errWouldBlock) {
		t.Fatalf("after the data: %v, want errWouldBlock", err)
	}
	if b.small != nil || b.large != nil {
		t.Fatal("a stream with nothing to read still holds a read buffer")
	}
}
