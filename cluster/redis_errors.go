package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Errors from Redis become the package's (see cluster.go) here, and a
// lost connection switches the node to degraded mode.

// note counts a failed Redis call and, when the failure is the connection
// rather than an error reply, switches to degraded mode. It returns err.
func (r *Redis) note(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return err
	}
	r.m.redisErrors.Inc()
	var reply redis.Error
	if errors.As(err, &reply) {
		return err
	}
	r.setHealthy(false)
	return err
}

// wrap turns a Redis error from a call made for a caller into the
// package's: redis.Nil becomes ErrNotFound, a lost connection
// ErrUnavailable. A failure because the caller's ctx ended says nothing
// about Redis and does not count.
func (r *Redis) wrap(ctx context.Context, op string, err error) error {
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("cluster: %s: %w", op, ErrNotFound)
	}
	if ctx.Err() == nil {
		r.note(err)
	}
	var reply redis.Error
	if errors.As(err, &reply) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("cluster: %s: %w", op, err)
	}
	return fmt.Errorf("cluster: %s: %w: %w", op, ErrUnavailable, err)
}

// fail is wrap for the node's own calls, bounded by OpTimeout.
func (r *Redis) fail(op string, err error) error { return r.wrap(context.Background(), op, err) }

func (r *Redis) unavailable(op string) error {
	return fmt.Errorf("cluster: %s: %w", op, ErrUnavailable)
}
