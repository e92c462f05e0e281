package link

import (
	"context"
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/cluster"
)

// errDetached: a payload arrived before the cluster was attached; it is
// offered again.
var errDetached = errors.New("link: cluster not attached yet")

// claimed reports, for each full JID a payload of kind from node speaks
// for, whether node serves it: whether the mirror already holds it as
// node's (it was checked when it entered), or else whether the session
// directory says node serves it. The directory is asked once, for all
// of those it has to be asked about; recheck (nil, or one per full JID)
// marks those it must be asked about even if the mirror holds them
// (the payload ended them earlier). The others are reported to Reject.
// An error (the directory cannot be read) leaves the payload to be
// offered again.
func (l *Link) claimed(ctx context.Context, node cluster.NodeID, kind string, fulls []string, recheck []bool) ([]bool, error) {
	ok := make([]bool, len(fulls))
	var ask []int
	l.mu.Lock()
	for i, f := range fulls {
		if r := l.remotes[f]; r != nil && r.node == node && (recheck == nil || !recheck[i]) {
			ok[i] = true
		} else {
			ask = append(ask, i)
		}
	}
	l.mu.Unlock()
	if len(ask) == 0 {
		return ok, nil
	}
	q := make([]string, len(ask))
	for k, i := range ask {
		q[k] = fulls[i]
	}
	owners, err := l.owners(ctx, q)
	if err != nil {
		return nil, err
	}
	for k, i := range ask {
		if owners[k] == node {
			ok[i] = true
			continue
		}
		l.reject(cluster.RejectNotOwner, "from", string(node), "kind", kind, "jid", fulls[i], "served_by", string(owners[k]))
	}
	return ok, nil
}

// owners returns the node the session directory says serves each full
// JID; "" for one no node serves, or that is not a full JID.
func (l *Link) owners(ctx context.Context, fulls []string) ([]cluster.NodeID, error) {
	cl := l.cluster()
	if cl == nil {
		return nil, errDetached
	}
	out := make([]cluster.NodeID, len(fulls))
	js := make([]jid.JID, 0, len(fulls))
	idx := make([]int, 0, len(fulls))
	for i, f := range fulls {
		if j, err := jid.Parse(f); err == nil && j.Resourcepart() != "" {
			js = append(js, j)
			idx = append(idx, i)
		}
	}
	if len(js) == 0 {
		return out, nil
	}
	got, err := cl.Owners(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("link: read the session directory: %w", err)
	}
	for k, i := range idx {
		out[i] = got[k]
	}
	return out, nil
}
