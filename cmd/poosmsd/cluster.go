package main

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/cluster"
	"poosms.org/poosms/cluster/link"
	"poosms.org/poosms/stanza"
)

// newLink makes the link through which the services reach sessions and
// rooms on other nodes, from chat, as chat's publisher (chat.New calls
// it): chat tells it of this node's sessions, for other nodes to mirror
// them and route to them. The rooms come later (nothing reaches them
// before they exist), and the cluster is attached by joinCluster once
// every listener is bound.
func (n *node) newLink(c *chat.Service) chat.Publisher {
	n.link = link.New(link.Config{
		Chat:            c,
		Rooms:           roomService{n},
		AccountsChanged: n.accounts.Poke,
		RoomIdle:        n.cfg.ClusterRoomIdle,
		Hosted:          n.hosted,
		Logger:          n.log.With("service", "cluster"),
	})
	return n.link
}

// joinCluster joins the node to its cluster: Redis when --redis is set,
// otherwise the in-process single-node cluster. Either way the services
// reach sessions and rooms through the same link, so none of them knows
// which one runs. The node's record carries its listeners' public
// addresses, its media port as bound.
func (n *node) joinCluster(ctx context.Context, reg prometheus.Registerer) error {
	cfg := n.cfg
	self := cluster.Node{
		ID:   cluster.NodeID(cfg.NodeID),
		C2S:  publicAddr(n.publicHost(), n.c2s.Addrs()[0].String()),
		HTTP: publicAddr(n.publicHost(), n.httpAddr.String()),
	}
	if n.sfu != nil && n.sfu.UDPAddr() != nil {
		self.Media = publicAddr(n.publicHost(), n.sfu.UDPAddr().String())
	}
	var cl cluster.Cluster
	if cfg.Redis == "" {
		local, err := cluster.NewLocal(self, n.link.Handle)
		if err != nil {
			return err
		}
		cl = local
	} else {
		// Both were checked when the configuration was loaded.
		secret, err := cfg.ClusterKey()
		if err != nil {
			return err
		}
		roots, err := cfg.RedisRootCAs()
		if err != nil {
			return err
		}
		r, err := cluster.NewRedis(cluster.Config{
			Node:              self,
			URL:               cfg.Redis,
			RootCAs:           roots,
			Secret:            secret,
			Prefix:            cfg.RedisPrefix,
			HeartbeatInterval: cfg.ClusterHeartbeat,
			NodeTTL:           cfg.ClusterNodeTTL,
			LeaseTTL:          cfg.ClusterLeaseTTL,
			Handler:           n.link.Handle,
			Undeliverable:     n.link.Undeliverable,
			NodeGone:          n.link.NodeGone,
			NodeJoined:        n.link.NodeJoined,
			HealthChanged:     n.link.HealthChanged,
			SessionLost:       n.link.SessionLost,
			PlacementLost:     n.link.PlacementLost,
			Logger:            n.log.With("service", "cluster"),
		})
		if err != nil {
			return err
		}
		reg.MustRegister(r.Collectors()...)
		cl = r
	}
	if err := cl.Start(ctx); err != nil {
		cl.Stop()
		return fmt.Errorf("cannot join the cluster through Redis at %s (--redis); check that it runs, is reachable and accepts the user and password in the URL (and, over rediss://, that its certificate is signed by a CA this node trusts, --redis-ca-file): %w", cfg.RedactedRedis(), err)
	}
	n.stopCluster = cl.Stop
	n.link.Attach(ctx, cl)
	if cfg.Redis != "" {
		n.log.Info("joined the cluster", "node", cfg.NodeID, "redis", cfg.RedactedRedis(), "media", self.Media)
	}
	return nil
}

// publicAddr is addr's port on host.
func publicAddr(host, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || addr == "" {
		return ""
	}
	return net.JoinHostPort(host, port)
}

// roomService runs the rooms and conferences this node hosts, for the
// link: conference stanzas go to the SFU, the rest to the rooms.
type roomService struct{ n *node }

func (r roomService) HandleStanza(ctx context.Context, sess chat.Session, el *stanza.Element) {
	if r.n.sfu == nil || r.n.rooms == nil {
		return
	}
	if conferenceIQ(el) {
		r.n.sfu.HandleStanza(ctx, sess, el)
		return
	}
	r.n.rooms.HandleStanza(ctx, sess, el)
}

// HandleRemote runs a stanza from a user of another server: conference
// stanzas go to the SFU with the session the rooms know that user by (a
// call is for the room's occupants), the rest to the rooms.
func (r roomService) HandleRemote(ctx context.Context, el *stanza.Element) {
	if r.n.sfu == nil || r.n.rooms == nil {
		return
	}
	from, err := jid.Parse(el.From())
	if err != nil || r.n.hosted(from.Domainpart()) {
		return
	}
	if conferenceIQ(el) {
		r.n.sfu.HandleStanza(ctx, r.n.rooms.RemoteSession(from), el)
		return
	}
	r.n.rooms.HandleRemote(ctx, el)
}

func (r roomService) SessionClosed(ctx context.Context, sess chat.Session) {
	if r.n.sfu == nil || r.n.rooms == nil {
		return
	}
	r.n.sfu.SessionClosed(ctx, sess)
	r.n.rooms.SessionClosed(ctx, sess)
}

// InUse reports whether anyone is in the room or in its conference.
func (r roomService) InUse(ctx context.Context, room jid.JID) bool {
	if r.n.sfu == nil || r.n.rooms == nil {
		return false
	}
	return r.n.rooms.Occupied(room.Localpart()) || r.n.sfu.Running(room)
}

func (r roomService) Adopt(ctx context.Context, room jid.JID) {
	if r.n.rooms == nil {
		return
	}
	if err := r.n.rooms.Adopt(ctx, room.Localpart()); err != nil {
		r.n.log.Error("cluster: read a room taken over from another node", "room", room.String(), "err", err)
	}
}

func (r roomService) Moved(ctx context.Context, room jid.JID) {
	if r.n.sfu == nil || r.n.rooms == nil {
		return
	}
	r.n.sfu.Moved(ctx, room)
	r.n.rooms.Evict(ctx, room.Localpart())
}
