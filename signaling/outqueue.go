package signaling

import (
	"context"
	"fmt"
	"sync"

	"poosms.org/poosms/stanza"
)

// outQueue is a bound session's outgoing queue: what is to be written to
// the client, bounded in stanzas and in bytes, and whether a writer
// goroutine drains it. The queue is a slice rather than a channel: unlike
// a channel's buffer, it takes no memory while empty, and most sessions
// are idle most of the time. Closing the queue is how a session stops: the
// writer writes what is queued, then the final stream error.
//
// The queue is opened at bind; before that, and after a failed bind, it
// has no stopped channel and never starts a writer.
type outQueue struct {
	maxLen   int    // stanzas, at least one
	maxBytes int    // bytes, though one stanza always fits
	start    func() // starts a writer goroutine; called with mu held

	// mu guards the fields below. Nothing else is locked while it is held
	// but for start, which only starts a goroutine.
	mu      sync.Mutex
	items   []outgoing    // to be written, at most maxLen; nil when empty
	bytes   int           // bytes in items, at most maxBytes
	room    chan struct{} // closed when the writer takes an item (pushWait waits on it)
	stopped chan struct{} // made at bind, closed by close
	closed  bool
	final   *stanza.Element // stream error to write before closing, if any
	writing writerState     // whether a writer goroutine is draining the queue
}

// init sets the queue's bounds, at most maxLen stanzas and maxBytes
// bytes, and start, which starts a writer goroutine when a stanza arrives
// while none runs. It is called once, before the session is shared.
func (q *outQueue) init(maxLen, maxBytes int, start func()) {
	q.maxLen, q.maxBytes, q.start = maxLen, maxBytes, start
}

// writerState says whether a writer goroutine runs. The zero value is the
// time between the queue's opening at bind and the first writer, which
// the bind starts once the client has its result: like a running writer,
// it needs no other.
type writerState uint8

const (
	writerPending writerState = iota // bind starts the first writer
	writerRunning
	writerIdle // the queue was empty: the next stanza starts a writer
)

// queueFull is push's error when the queue had no room: the queue is
// closed, and the client, which stopped reading, is to be disconnected.
type queueFull struct{ stanzas, bytes int }

func (e *queueFull) Error() string {
	return fmt.Sprintf("write queue full: %d stanzas, %d bytes", e.stanzas, e.bytes)
}

func (e *queueFull) Unwrap() error { return ErrSessionGone }

// open readies the queue at bind; false if it was closed first.
func (q *outQueue) open() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.stopped = make(chan struct{})
	return true
}

// unopen undoes open when the bind fails.
func (q *outQueue) unopen() {
	q.mu.Lock()
	q.stopped = nil
	q.mu.Unlock()
}

// push appends o for the writer without waiting. It fails with
// ErrSessionGone when the queue is closed, and with *queueFull when the
// queue is full, by count or by bytes; a full queue is closed by that.
func (q *outQueue) push(o outgoing) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrSessionGone
	}
	if q.appendLocked(o) {
		return nil
	}
	full := &queueFull{stanzas: len(q.items), bytes: q.bytes}
	q.closeLocked(nil)
	return full
}

// pushWait appends o, waiting while the queue is full, until ctx ends or
// the queue is closed.
func (q *outQueue) pushWait(ctx context.Context, o outgoing) error {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrSessionGone
		}
		if q.appendLocked(o) {
			q.mu.Unlock()
			return nil
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room, stopped := q.room, q.stopped
		q.mu.Unlock()
		select {
		case <-room:
		case <-stopped:
			return ErrSessionGone
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// appendLocked appends o, waking a writer; false when the queue is full (a
// stanza always fits in an empty queue, or a large one could never be
// sent). q.mu must be held and the queue open.
func (q *outQueue) appendLocked(o outgoing) bool {
	n := o.size()
	if len(q.items) >= q.maxLen || len(q.items) > 0 && q.bytes+n > q.maxBytes {
		return false
	}
	q.items = append(q.items, o)
	q.bytes += n
	q.wakeLocked()
	return true
}

// wakeLocked starts a writer if none runs. q.mu must be held.
func (q *outQueue) wakeLocked() {
	if q.writing != writerIdle {
		return
	}
	q.writing = writerRunning
	q.start()
}

// close closes the queue, with final as the stream error to write after
// what is queued; false if it was closed already. Once open, a writer
// wakes to write the rest and finish the stream.
func (q *outQueue) close(final *stanza.Element) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.closeLocked(final)
	return true
}

// closeLocked is close with q.mu held and the queue not closed.
func (q *outQueue) closeLocked(final *stanza.Element) {
	q.closed = true
	q.final = final
	if q.stopped != nil {
		close(q.stopped)
		// Until bind starts the first writer, writing is writerPending
		// and this starts none.
		q.wakeLocked()
	}
}

// isClosed reports whether the queue is closed.
func (q *outQueue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// done is closed when the queue closes; nil before the bind.
func (q *outQueue) done() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stopped
}

// finalError is the stream error the queue was closed with, if any.
func (q *outQueue) finalError() *stanza.Element {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.final
}

// take removes the first stanza for the writer; idle says the queue is
// now empty. When there is none (ok false): if the queue is open, the
// writer is marked gone and must end, the next push starts another; if it
// is closed (closed true), the caller is the last writer and finishes the
// stream.
func (q *outQueue) take() (o outgoing, ok, idle, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		if !q.closed {
			// Pushes wake a writer under q.mu when none runs, so no
			// stanza is left behind.
			q.writing = writerIdle
		}
		return outgoing{}, false, true, q.closed
	}
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
	o = q.items[0]
	q.items[0] = outgoing{}
	q.items = q.items[1:]
	q.bytes -= o.size()
	if len(q.items) == 0 {
		q.items = nil // an idle session keeps no queue
	}
	return o, true, len(q.items) == 0, q.closed
}

// drain empties the queue, returning what was in it: at teardown, what
// slipped in after the last writer's last look.
func (q *outQueue) drain() []outgoing {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items, q.bytes = nil, 0
	return items
}
