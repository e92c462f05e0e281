package signaling

import (
	"errors"
	"os"
	"sync/atomic"
	"time"
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
