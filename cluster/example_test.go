package cluster_test

import (
	"context"
	"errors"
	"log"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/cluster"
)

// How a node is wired: chat and signaling hold a cluster.Cluster and do
// not care whether it is Local or Redis.
func ExampleNewRedis() {
	var c cluster.Cluster
	r, err := cluster.NewRedis(cluster.Config{
		Node: cluster.Node{ID: "node-1", C2S: "203.0.113.1:5222", Media: "203.0.113.1:3478"},
		// An ACL user that may reach only the cluster's keys, over TLS.
		URL: "rediss://poosms:redis-password@redis.example.org:6380",
		// The same on every node; what is read from Redis is believed
		// only when signed with it.
		Secret: []byte("at least 32 bytes, the same on every node"),
		Handler: func(ctx context.Context, from cluster.NodeID, payload []byte) error {
			// Parse the stanza and deliver it to the local session.
			return nil
		},
		Undeliverable: func(ctx context.Context, to, from cluster.NodeID, payload []byte) {
			// Store the stanza offline.
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Register r.Collectors() with the metrics registry here.
	c = r
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop()

	// A login: bind, and end the session on the node it replaced.
	full := jid.MustParse("alice@example.org/phone")
	replaced, err := c.Bind(ctx, full, c.Self())
	if replaced != "" && replaced != c.Self() {
		_ = c.Send(ctx, replaced, []byte("<!-- end alice@example.org/phone -->"))
	}
	if errors.Is(err, cluster.ErrUnavailable) {
		// Degraded: serve the session locally; it is bound when Redis returns.
		log.Print("redis unreachable: serving alice locally")
	}

	// A message to a session on another node, or offline storage.
	if err := c.Send(ctx, "node-2", []byte("<message/>")); err != nil {
		// ErrNodeGone, ErrBacklog or ErrUnavailable: store offline.
		log.Printf("storing offline: %v", err)
	}
}
