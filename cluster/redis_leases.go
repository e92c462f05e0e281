package cluster

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Placement: a room or conference is hosted by the node holding its
// lease; the holder renews it with each heartbeat.
var _ Placer = (*Redis)(nil)

// Place returns the node hosting key, taking it for this node when no
// live node holds its lease. moved reports a takeover from a node that
// died. This node renews the lease until Release or Stop. While Redis is
// unreachable it returns ErrUnavailable; the caller may then host the
// room for its local users only.
func (r *Redis) Place(ctx context.Context, key string) (NodeID, bool, error) {
	if !r.Healthy() {
		return "", false, r.unavailable("place")
	}
	self := r.Self()
	res, err := placeScript.Run(ctx, r.rdb,
		[]string{r.k.lease(key), r.k.placed(), r.k.nodeLeases(self)},
		string(self), r.cfg.LeaseTTL.Milliseconds(), key, r.k.nodePrefix()).StringSlice()
	if err != nil {
		return "", false, r.wrap(ctx, "place "+key, err)
	}
	if len(res) != 2 {
		return "", false, fmt.Errorf("cluster: place %s: unexpected reply %q", key, res)
	}
	host, prev := NodeID(res[0]), NodeID(res[1])
	if host == self {
		r.mu.Lock()
		r.leases[key] = struct{}{}
		r.m.leases.Set(float64(len(r.leases)))
		r.mu.Unlock()
	}
	moved := host == self && prev != "" && prev != self
	if moved {
		r.log.Info("cluster: room moved here", "room", key, "from", string(prev))
	}
	return host, moved, nil
}

// Release gives up key's lease if this node holds it.
func (r *Redis) Release(ctx context.Context, key string) error {
	r.mu.Lock()
	delete(r.leases, key)
	r.m.leases.Set(float64(len(r.leases)))
	r.mu.Unlock()
	if !r.Healthy() {
		return r.unavailable("release")
	}
	self := r.Self()
	err := releaseScript.Run(ctx, r.rdb,
		[]string{r.k.lease(key), r.k.placed(), r.k.nodeLeases(self)}, string(self), key).Err()
	if err != nil {
		return r.wrap(ctx, "release "+key, err)
	}
	return nil
}

// renew extends every lease this node holds and forgets those it lost.
func (r *Redis) renew(ctx context.Context) {
	r.mu.Lock()
	keys := make([]string, 0, len(r.leases))
	for k := range r.leases {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = renewScript.Eval(ctx, pipe, []string{r.k.lease(k)}, string(r.Self()), r.cfg.LeaseTTL.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.log.Warn("cluster: renew leases", "err", r.note(err))
		return
	}
	for i, cmd := range cmds {
		if n, _ := cmd.Int(); n == 0 {
			r.mu.Lock()
			delete(r.leases, keys[i])
			r.m.leases.Set(float64(len(r.leases)))
			r.mu.Unlock()
			r.log.Info("cluster: lease lost", "room", keys[i])
			if r.cfg.PlacementLost != nil {
				r.cfg.PlacementLost(ctx, keys[i])
			}
		}
	}
}
