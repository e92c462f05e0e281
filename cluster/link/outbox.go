package link

import (
	"context"
	"sync"
	"sync/atomic"
)

// Announcements (SessionChanged, SessionEnded) do not travel one payload
// each: a login burst would cost every node one stream entry, and one
// look-up in the session directory, per session per other node. They
// are queued in the link's outbox and go to every other node as one
// kindStates payload of up to maxEntries changes, encoded once:
//
//   - a link with no batch being sent sends an announcement at once, on
//     the caller's goroutine, as before: no delay is added, so a change
//     reaches the other nodes as soon as it did (a client that sees its
//     presence set and asks another node's user to subscribe relies on
//     it);
//   - while a batch is being sent, announcements gather, and the
//     link's flusher sends them as soon as that batch is through: a
//     node whose sends to Redis take longer (load, a burst) sends
//     larger batches, one per round trip instead of one per change; a
//     full outbox is sent by the caller that filled it, which waits for
//     room (the backpressure a send per announcement gave);
//   - a session's repeated changes inside one batch travel once (the
//     latest), and its end replaces a change still queued; a change
//     after its end (a new login with the same full JID) stays after it;
//   - any other payload this node sends (send) first waits until the
//     announcements queued before it were handed to the cluster, so it
//     never overtakes them: a message for a session that just bound
//     reaches the other node after the session's state.
//
// The outbox only ever holds one payload's worth (maxEntries entries,
// maxBatchBytes bytes), so it cannot grow without bound whatever the
// sessions do; and a receiver refuses a payload with more than
// maxEntries entries.
const (
	// maxEntries bounds the entries of one kindState or kindStates
	// payload, sent or received.
	maxEntries = 256
	// maxBatchBytes bounds the encoded entries of one kindStates payload
	// the outbox sends (one larger entry still goes, alone).
	maxBatchBytes = 128 << 10
)

// outbox holds the announcements not yet sent. Announcements are
// numbered from 1 as they are queued; sent is the number of the last
// one handed to the cluster (or given up on: a send that fails is not
// retried, as before).
type outbox struct {
	queued atomic.Uint64
	sent   atomic.Uint64

	mu      sync.Mutex
	entries []change
	latest  map[string]int // full JID → index in entries of its latest change
	size    int            // bytes of entries' encodings
	// inflight is non-nil while a batch is being sent; it closes when
	// that is done. One batch at a time keeps them in order.
	inflight chan struct{}
	running  bool // the flusher runs (Attach until Close)
	wake     chan struct{}
}

// change is one announcement in the outbox: the session's full JID and
// its entry as it travels in a kindStates payload.
type change struct {
	full string
	gone bool
	enc  []byte
}

// announce queues a change of one of this node's sessions for every
// other node.
func (l *Link) announce(c change) {
	o := &l.out
	o.mu.Lock()
	for {
		// The latest change of a session wins, in the place of the
		// earlier one; its end replaces a change still queued (the
		// receiver would drop what that change set up). A change after
		// its end goes after it.
		i, ok := o.latest[c.full]
		if ok && !(o.entries[i].gone && !c.gone) {
			if grown := o.size + len(c.enc) - len(o.entries[i].enc); grown <= maxBatchBytes || len(o.entries) == 1 {
				o.size = grown
				o.entries[i] = c
				break
			}
		} else if len(o.entries) < maxEntries && (len(o.entries) == 0 || o.size+len(c.enc) <= maxBatchBytes) {
			if o.latest == nil {
				o.latest = map[string]int{}
			}
			o.latest[c.full] = len(o.entries)
			o.entries = append(o.entries, c)
			o.size += len(c.enc)
			break
		}
		// Full: send what is queued first.
		upTo := o.queued.Load()
		o.mu.Unlock()
		l.flushTo(context.Background(), upTo)
		o.mu.Lock()
	}
	upTo := o.queued.Add(1)
	now := o.inflight == nil || !o.running
	first := len(o.entries) == 1
	o.mu.Unlock()
	if now {
		l.flushTo(context.Background(), upTo)
		return
	}
	if first {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
}

// flushTo returns once the announcements numbered up to upTo were handed
// to the cluster, sending what is queued if need be; or when ctx ends.
func (l *Link) flushTo(ctx context.Context, upTo uint64) {
	o := &l.out
	for o.sent.Load() < upTo {
		o.mu.Lock()
		if o.sent.Load() >= upTo {
			o.mu.Unlock()
			return
		}
		if c := o.inflight; c != nil {
			o.mu.Unlock()
			select {
			case <-c:
			case <-ctx.Done():
				return
			}
			continue
		}
		batch, through := o.entries, o.queued.Load()
		o.entries, o.size = nil, 0
		clear(o.latest)
		done := make(chan struct{})
		o.inflight = done
		o.mu.Unlock()

		if len(batch) > 0 {
			// Not the caller's context: the batch carries other sessions'
			// announcements too. send bounds each send (SendTimeout).
			p := batchPayload(batch)
			for _, id := range l.peerList() {
				l.sendNow(context.Background(), id, p)
			}
		}

		o.mu.Lock()
		o.sent.Store(through)
		o.inflight = nil
		o.mu.Unlock()
		close(done)
	}
}

// exclusive runs fn, which sends payloads with sendNow, with every
// announcement queued before it sent first and every one queued while it
// runs sent after it: a snapshot (the state of every session now) is
// neither overtaken by an older announcement nor overtakes a newer one,
// which would otherwise make the receiver drop as stale a session that
// bound just before. Other sends wait meanwhile. It does not run fn when
// ctx ends first.
func (l *Link) exclusive(ctx context.Context, fn func()) {
	o := &l.out
	for {
		l.flush(ctx)
		if ctx.Err() != nil {
			return
		}
		o.mu.Lock()
		if c := o.inflight; c != nil {
			o.mu.Unlock()
			select {
			case <-c:
			case <-ctx.Done():
				return
			}
			continue
		}
		if len(o.entries) > 0 {
			o.mu.Unlock()
			continue
		}
		done := make(chan struct{})
		o.inflight = done
		o.mu.Unlock()
		defer func() {
			o.mu.Lock()
			o.inflight = nil
			o.mu.Unlock()
			close(done)
		}()
		fn()
		return
	}
}

// flush sends every announcement queued so far and returns once they
// were handed to the cluster (or ctx ended).
func (l *Link) flush(ctx context.Context) {
	if upTo := l.out.queued.Load(); l.out.sent.Load() < upTo {
		l.flushTo(ctx, upTo)
	}
}

// flusher sends what was queued while a batch was being sent, as soon
// as that batch is through, until ctx ends; then it sends what is left.
func (l *Link) flusher(ctx context.Context) {
	o := &l.out
	defer func() {
		o.mu.Lock()
		o.running = false
		o.mu.Unlock()
		l.flush(context.Background())
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		}
		l.flush(ctx)
	}
}
