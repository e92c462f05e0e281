package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Routing: each node has one inbound stream (see keys.go); Send appends
// to the target's, consume reads this node's own.
var _ Router = (*Redis)(nil)

// Send queues payload on node to's stream. It returns ErrNodeGone when to
// is not alive, ErrBacklog when to is too far behind and ErrUnavailable
// when Redis cannot be reached; in each case nothing was queued.
func (r *Redis) Send(ctx context.Context, to NodeID, payload []byte) error {
	if !r.Healthy() {
		return r.unavailable("send")
	}
	e := envelope{from: r.Self(), stamp: r.clock.Now().UnixNano(), boot: r.boot, seq: r.seq.Add(1)}
	sealed, auth := r.sign.sealPayload(to, e, payload)
	n, err := sendScript.Run(ctx, r.rdb, r.sendKeys(to),
		r.cfg.StreamMaxLen, string(e.from), strconv.FormatInt(e.stamp, 10), sealed, auth).Int()
	if err != nil {
		return r.wrap(ctx, "send to "+string(to), err)
	}
	switch n {
	case 0:
		return fmt.Errorf("cluster: send to %s: %w", to, ErrNodeGone)
	case -1:
		return fmt.Errorf("cluster: send to %s: %w", to, ErrBacklog)
	}
	r.m.sent.Inc()
	return nil
}

// sendKeys returns the keys Send touches for node to, built once per node.
// The slice is shared: it must not be changed.
func (r *Redis) sendKeys(to NodeID) []string {
	r.peersMu.RLock()
	ks, ok := r.peers[to]
	r.peersMu.RUnlock()
	if ok {
		return ks
	}
	ks = []string{r.k.node(to), r.k.stream(to)}
	r.peersMu.Lock()
	if len(r.peers) > 4096 { // node IDs are few; bound it anyway
		clear(r.peers)
	}
	r.peers[to] = ks
	r.peersMu.Unlock()
	return ks
}

// consume reads this node's stream until ctx ends: first the entries it
// read before but never acknowledged (a restart, a refused payload),
// then new ones. Entries are acknowledged and deleted once Handler takes
// them.
func (r *Redis) consume(ctx context.Context) {
	stream := r.k.stream(r.Self())
	attempts := map[string]int{}
	guard := newReplayGuard(r.cfg.MaxPayloadAge)
	pending, cursor := true, "0"
	retry := time.NewTimer(0)
	<-retry.C
	defer retry.Stop()
	pause := func() bool {
		retry.Reset(r.cfg.HeartbeatInterval / 2)
		select {
		case <-ctx.Done():
			return false
		case <-retry.C:
			return true
		case <-r.wake:
			return true
		}
	}
	for ctx.Err() == nil {
		if !r.Healthy() || r.restoring.Load() {
			pending, cursor = true, "0"
			if !pause() {
				return
			}
			continue
		}
		args := &redis.XReadGroupArgs{Group: consumerGroup, Consumer: string(r.Self()), Count: 128}
		if pending {
			args.Streams = []string{stream, cursor}
			args.Block = -1 // pending entries come back at once
		} else {
			args.Streams = []string{stream, ">"}
			args.Block = r.cfg.ReadBlock
		}
		opCtx, cancel := context.WithTimeout(ctx, r.cfg.ReadBlock+r.cfg.OpTimeout)
		res, err := r.rdb.XReadGroup(opCtx, args).Result()
		cancel()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				r.log.Info("cluster: consumer group missing; creating it")
				cctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
				err = r.ensureGroup(cctx)
				cancel()
			}
			if err != nil {
				r.log.Warn("cluster: read stream", "err", r.note(err))
			}
			pending, cursor = true, "0"
			if !pause() {
				return
			}
			continue
		}
		var msgs []redis.XMessage
		if len(res) > 0 {
			msgs = res[0].Messages
		}
		if pending && len(msgs) == 0 {
			pending = false
			continue
		}
		done := make([]string, 0, len(msgs))
		refused := false
		for _, m := range msgs {
			e, ok := decodeEntry(m.Values)
			if !ok || !r.believe(&e, r.Self(), guard) {
				// Deleted after it was read, or not believed.
				done = append(done, m.ID)
				continue
			}
			from, payload := e.from, e.payload
			err := r.handle(ctx, from, payload)
			if err == nil {
				guard.mark(r.clock.Now(), from, e.boot, e.seq, e.stamp)
				delete(attempts, m.ID)
				done = append(done, m.ID)
				r.m.received.Inc()
				r.m.latency.Observe(r.clock.Now().Sub(time.Unix(0, e.stamp)).Seconds())
				continue
			}
			if ctx.Err() != nil {
				break
			}
			attempts[m.ID]++
			if attempts[m.ID] < r.cfg.MaxAttempts {
				r.log.Debug("cluster: handler refused payload; will retry", "from", string(from), "err", err)
				refused = true
				break
			}
			guard.mark(r.clock.Now(), from, e.boot, e.seq, e.stamp)
			delete(attempts, m.ID)
			r.log.Warn("cluster: handler kept refusing payload; handing it to the fallback", "from", string(from), "err", err)
			if r.cfg.Undeliverable != nil {
				r.cfg.Undeliverable(ctx, r.Self(), from, payload)
			}
			done = append(done, m.ID)
		}
		if len(done) > 0 {
			r.ack(ctx, stream, done)
		}
		if pending && !refused && len(msgs) > 0 {
			cursor = msgs[len(msgs)-1].ID
		}
		if refused {
			pending, cursor = true, "0"
			if !pause() {
				return
			}
		}
	}
}

func (r *Redis) handle(ctx context.Context, from NodeID, payload []byte) error {
	if r.cfg.Handler == nil {
		return errors.New("cluster: no handler")
	}
	return r.cfg.Handler(ctx, from, payload)
}

// ack acknowledges and deletes taken entries, so the stream only holds
// what this node has not taken. It uses a fresh context: an entry the
// handler took must be acknowledged even while stopping.
func (r *Redis) ack(ctx context.Context, stream string, ids []string) {
	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.OpTimeout)
	defer cancel()
	pipe := r.rdb.Pipeline()
	pipe.XAck(opCtx, stream, consumerGroup, ids...)
	pipe.XDel(opCtx, stream, ids...)
	if _, err := pipe.Exec(opCtx); err != nil {
		r.log.Warn("cluster: acknowledge", "err", r.note(err))
	}
}

// streamEntry is one entry of a node's stream.
type streamEntry struct {
	from      NodeID
	stamp     int64  // send time, Unix nanoseconds
	payload   []byte // encrypted until believe decrypts it
	auth      []byte
	boot, seq uint64 // filled in by believe
}

// decodeEntry reads a stream entry's fields; ok is false for an entry
// with none (deleted after it was read). Missing fields are left empty,
// for believe to refuse.
func decodeEntry(v map[string]any) (e streamEntry, ok bool) {
	if len(v) == 0 {
		return e, false
	}
	f, _ := v[fieldFrom].(string)
	t, _ := v[fieldStamp].(string)
	p, _ := v[fieldPayload].(string)
	a, _ := v[fieldAuth].(string)
	e.from, e.payload, e.auth = NodeID(f), []byte(p), []byte(a)
	e.stamp, _ = strconv.ParseInt(t, 10, 64)
	return e, true
}

// believe reports whether e, read from node to's stream, was signed with
// the cluster secret by the node it names, for to, within the age window,
// and was not taken before (by g); if so it decrypts e's payload. What it
// refuses is counted and logged.
func (r *Redis) believe(e *streamEntry, to NodeID, g *replayGuard) bool {
	payload, boot, seq, ok := r.sign.openPayload(to, e.from, e.stamp, e.auth, e.payload)
	switch {
	case !ok:
		r.rejects.Reject(RejectSignature, "claimed_from", string(e.from), "stream_of", string(to))
	case !g.fresh(r.clock.Now(), e.stamp):
		r.rejects.Reject(RejectStale, "from", string(e.from), "stream_of", string(to),
			"sent", time.Unix(0, e.stamp).UTC().Format(time.RFC3339))
	case g.seen(e.from, boot, seq):
		r.rejects.Reject(RejectReplay, "from", string(e.from), "stream_of", string(to), "seq", seq)
	default:
		e.payload, e.boot, e.seq = payload, boot, seq
		return true
	}
	return false
}

func (r *Redis) ensureGroup(ctx context.Context) error {
	err := r.rdb.XGroupCreateMkStream(ctx, r.k.stream(r.Self()), consumerGroup, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return r.fail("create consumer group", err)
	}
	return nil
}
