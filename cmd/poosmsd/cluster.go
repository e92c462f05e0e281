package main

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"poosms.org/poosms/cluster"
	"poosms.org/poosms/cluster/link"
)

// newLink makes the link through which the services reach sessions and
// rooms on other nodes, and makes it chat's publisher: chat tells it of
// this node's sessions, for other nodes to mirror them and route to them.
// It needs n.chat and n.conference, before any session binds; the
// cluster is attached by joinCluster once every listener is bound.
func (n *node) newLink() {
	n.link = link.New(link.Config{
		Chat:            n.chat,
		Rooms:           n.conference, // exists already; runs from startRooms on
		AccountsChanged: n.accounts.Poke,
		RoomIdle:        n.cfg.ClusterRoomIdle,
		Hosted:          n.hosted,
		Logger:          n.log.With("service", "cluster"),
	})
	n.chat.SetPublisher(n.link)
	n.closers = append(n.closers, func(context.Context) error { n.link.Close(); return nil })
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
	if media := n.conference.UDPAddr(); media != nil {
		self.Media = publicAddr(n.publicHost(), media.String())
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
