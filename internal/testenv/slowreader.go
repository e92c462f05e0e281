package testenv

import (
	"context"
	"errors"
	"testing"
	"time"
)

// ErrQueueFull is what a SlowReader's Take reports when there is no room.
var ErrQueueFull = errors.New("testenv: the write queue is full")

// SlowReader stands for the write queue of a client that reads slowly:
// there is room for a stanza only once the client has read one (a token
// each, at most two ahead). A fake session's Send takes room with Take,
// which fails at once when there is none, as a session does for a client
// that stopped reading; its SendWait takes room with Wait.
type SlowReader chan struct{}

// NewSlowReader returns a queue with room for two stanzas.
func NewSlowReader() SlowReader { return make(SlowReader, 2) }

// Take takes room for one stanza, or reports ErrQueueFull.
func (r SlowReader) Take() error {
	select {
	case <-r:
		return nil
	default:
		return ErrQueueFull
	}
}

// Wait waits for room for one stanza until ctx ends.
func (r SlowReader) Wait(ctx context.Context) error {
	select {
	case <-r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Read makes room a stanza at a time, every few milliseconds, until done
// is closed; the test fails if that takes more than 10 seconds.
func (r SlowReader) Read(t testing.TB, done <-chan struct{}) {
	t.Helper()
	tick := time.NewTicker(3 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-tick.C:
			select {
			case r <- struct{}{}:
			default:
			}
		case <-done:
			return
		case <-deadline:
			t.Fatal("the reader was still reading after 10s")
		}
	}
}
