package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
	"mellium.im/xmpp/jid"
)

// The session directory: which node serves each full JID, kept in one
// hash per bare JID (see keys.go) and, for this node's own sessions, in
// r.sessions so they can be bound again after Redis comes back.
var _ Directory = (*Redis)(nil)

// Bind records that node serves full and returns the node that served it
// before ("" if none or gone; node itself if it already did). When node is
// this node the binding is also kept locally and written again after
// Redis comes back, so while Redis is unreachable Bind returns
// ErrUnavailable but the session may go on locally.
func (r *Redis) Bind(ctx context.Context, full jid.JID, node NodeID) (NodeID, error) {
	if full.Resourcepart() == "" {
		return "", fmt.Errorf("cluster: bind %s: not a full jid", full)
	}
	if node == r.Self() {
		r.mu.Lock()
		r.sessions[full.String()] = full
		r.m.sessions.Set(float64(len(r.sessions)))
		r.mu.Unlock()
	}
	if !r.Healthy() {
		return "", r.unavailable("bind")
	}
	prev, err := r.bindEntry(ctx, full, node)
	if err != nil {
		return "", r.wrap(ctx, "bind", err)
	}
	if prev == "" {
		return "", nil
	}
	holder, ok := r.sign.openSession(full.String(), prev)
	if !ok {
		r.rejects.Reject(RejectSessionEntry, "jid", full.String())
		return "", nil
	}
	return holder, nil
}

// bindEntry writes the directory entry saying node serves full and
// returns the entry it replaced ("" when none, or its node is gone).
func (r *Redis) bindEntry(ctx context.Context, full jid.JID, node NodeID) (string, error) {
	return bindScript.Run(ctx, r.rdb,
		[]string{r.k.sess(full.Bare().String()), r.k.nodeSess(node)},
		full.Resourcepart(), r.sign.sealSession(full.String(), node), full.String(),
		r.k.nodeSessPrefix(), r.k.nodePrefix(), string(node)).Text()
}

// Unbind removes full if node still serves it.
func (r *Redis) Unbind(ctx context.Context, full jid.JID, node NodeID) error {
	if node == r.Self() {
		r.mu.Lock()
		delete(r.sessions, full.String())
		r.m.sessions.Set(float64(len(r.sessions)))
		r.mu.Unlock()
	}
	if !r.Healthy() {
		return r.unavailable("unbind")
	}
	err := unbindScript.Run(ctx, r.rdb,
		[]string{r.k.sess(full.Bare().String()), r.k.nodeSess(node)},
		full.Resourcepart(), string(node), full.String()).Err()
	if err != nil {
		return r.wrap(ctx, "unbind", err)
	}
	return nil
}

// Resources lists bare's sessions on every node.
func (r *Redis) Resources(ctx context.Context, bare jid.JID) ([]Entry, error) {
	if !r.Healthy() {
		return nil, r.unavailable("resources")
	}
	b := bare.Bare()
	m, err := r.rdb.HGetAll(ctx, r.k.sess(b.String())).Result()
	if err != nil {
		return nil, r.wrap(ctx, "resources", err)
	}
	out := make([]Entry, 0, len(m))
	for res, v := range m {
		full, err := b.WithResource(res)
		if err != nil {
			continue
		}
		node, ok := r.sign.openSession(full.String(), v)
		if !ok {
			r.rejects.Reject(RejectSessionEntry, "jid", full.String())
			continue
		}
		out = append(out, Entry{Full: full, Node: node})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Full.Resourcepart(), b.Full.Resourcepart()) })
	return out, nil
}

// Owners returns the node serving each of fulls, "" for a full JID no
// node serves (or whose directory entry is not signed with the cluster
// secret).
func (r *Redis) Owners(ctx context.Context, fulls []jid.JID) ([]NodeID, error) {
	if !r.Healthy() {
		return nil, r.unavailable("owners")
	}
	out := make([]NodeID, len(fulls))
	if len(fulls) == 0 {
		return out, nil
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(fulls))
	for i, full := range fulls {
		cmds[i] = pipe.HGet(ctx, r.k.sess(full.Bare().String()), full.Resourcepart())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, r.wrap(ctx, "owners", err)
	}
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil {
			continue
		}
		node, ok := r.sign.openSession(fulls[i].String(), v)
		if !ok {
			r.rejects.Reject(RejectSessionEntry, "jid", fulls[i].String())
			continue
		}
		out[i] = node
	}
	return out, nil
}

// rebind binds again every session this node holds, except those another
// live node has taken meanwhile.
func (r *Redis) rebind(ctx context.Context) error {
	r.mu.Lock()
	fulls := make([]jid.JID, 0, len(r.sessions))
	for _, j := range r.sessions {
		fulls = append(fulls, j)
	}
	r.mu.Unlock()
	if len(fulls) == 0 {
		return nil
	}
	self := r.Self()
	// Scripts in a pipeline go in full (Eval): EvalSha's fallback to Eval
	// on NOSCRIPT cannot work there.
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(fulls))
	for i, full := range fulls {
		cmds[i] = rebindScript.Eval(ctx, pipe,
			[]string{r.k.sess(full.Bare().String()), r.k.nodeSess(self)},
			full.Resourcepart(), r.sign.sealSession(full.String(), self), full.String(),
			r.k.nodeSessPrefix(), r.k.nodePrefix(), string(self))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return r.fail("rebind sessions", err)
	}
	for i, cmd := range cmds {
		held, _ := cmd.Text() // "" when bound here again
		if held != "" {
			if _, ok := r.sign.openSession(fulls[i].String(), held); !ok {
				// Not written by a node: nobody's login took it. Bind it
				// here over the forgery rather than end the session.
				r.rejects.Reject(RejectSessionEntry, "jid", fulls[i].String())
				if _, err := r.bindEntry(ctx, fulls[i], self); err != nil {
					return r.fail("rebind sessions", err)
				}
				held = ""
			}
		}
		r.mu.Lock()
		_, still := r.sessions[fulls[i].String()]
		r.mu.Unlock()
		if held == "" && !still {
			// Ended while we were binding it again: take it back out.
			if err := unbindScript.Run(ctx, r.rdb,
				[]string{r.k.sess(fulls[i].Bare().String()), r.k.nodeSess(self)},
				fulls[i].Resourcepart(), string(self), fulls[i].String()).Err(); err != nil {
				return r.fail("rebind sessions", err)
			}
			continue
		}
		if held != "" {
			r.mu.Lock()
			delete(r.sessions, fulls[i].String())
			r.m.sessions.Set(float64(len(r.sessions)))
			r.mu.Unlock()
			r.log.Info("cluster: session taken by another node while redis was away", "jid", fulls[i].String())
			if r.cfg.SessionLost != nil {
				r.cfg.SessionLost(ctx, fulls[i])
			}
		}
	}
	r.log.Info("cluster: sessions bound again", "count", len(fulls))
	return nil
}
