package signaling

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

func queued(body string) outgoing {
	m := msg("bob@localhost/desk", body)
	return newOutgoing(m, stanza.Encode(m), m.To(), time.Now)
}

// The queue holds at most its count and its bytes, but always one stanza
// however large; a push past the bound closes it, and what it held is
// still there for the writer and for teardown.
func TestOutQueueBounds(t *testing.T) {
	big := queued(strings.Repeat("x", 4096))
	var q outQueue
	q.init(3, 1024, func() {})
	if !q.open() {
		t.Fatal("a new queue would not open")
	}
	if err := q.push(big); err != nil {
		t.Fatalf("a stanza larger than the byte bound must fit an empty queue: %v", err)
	}
	var full *queueFull
	if err := q.push(queued("small")); !errors.As(err, &full) || !errors.Is(err, ErrSessionGone) {
		t.Fatalf("push past the byte bound: %v, want a full queue", err)
	}
	if full.stanzas != 1 || full.bytes != big.size() {
		t.Errorf("full queue reported %d stanzas and %d bytes, want 1 and %d", full.stanzas, full.bytes, big.size())
	}
	if !q.isClosed() {
		t.Error("a queue that overflowed is still open")
	}
	if err := q.push(queued("late")); !errors.Is(err, ErrSessionGone) {
		t.Errorf("push to a closed queue: %v, want ErrSessionGone", err)
	}
	if got := q.drain(); len(got) != 1 || got[0].size() != big.size() {
		t.Errorf("drain gave %d stanzas, want the one queued", len(got))
	}

	var c outQueue
	c.init(2, 1<<20, func() {})
	c.open()
	for _, b := range []string{"1", "2"} {
		if err := c.push(queued(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.push(queued("3")); !errors.As(err, &full) {
		t.Fatalf("push past the count bound: %v, want a full queue", err)
	}
}

// pushWait waits for the writer to take a stanza, and gives up when the
// queue closes or its context ends.
func TestOutQueuePushWait(t *testing.T) {
	var q outQueue
	q.init(1, 1<<20, func() {})
	q.open()
	if err := q.pushWait(context.Background(), queued("1")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.pushWait(context.Background(), queued("2")) }()
	waitFor(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.room != nil
	})
	if _, ok, idle, _ := q.take(); !ok || !idle {
		t.Fatalf("take: ok %v, idle %v; want the one stanza", ok, idle)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pushWait still waiting after the writer made room")
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- q.pushWait(ctx, queued("3")) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("pushWait with its context cancelled: %v", err)
	}
	go func() { done <- q.pushWait(context.Background(), queued("4")) }()
	q.close(nil)
	if err := <-done; !errors.Is(err, ErrSessionGone) {
		t.Fatalf("pushWait on a closed queue: %v, want ErrSessionGone", err)
	}
	if _, ok, _, closed := q.take(); !ok || !closed {
		t.Fatal("the stanza queued before close is not there for the last writer")
	}
	if _, ok, _, closed := q.take(); ok || !closed {
		t.Fatal("an empty closed queue does not tell the writer to finish")
	}
}
