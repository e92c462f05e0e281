package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// exerciseCluster runs what nodes do through h's Redis — join, bind and
// conflict, route both ways, place a room, and clean up after a node that
// died with payloads unread — so a missing ACL permission shows.
func exerciseCluster(t *testing.T, h *harness) {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var handed []string
	ca := h.config("a")
	boxA := newInbox()
	ca.Handler = boxA.handle
	ca.Undeliverable = func(ctx context.Context, to, from NodeID, p []byte) {
		mu.Lock()
		handed = append(handed, string(p))
		mu.Unlock()
	}
	a := h.start(ca)
	cb := h.config("b")
	stuck := make(chan struct{}, 1)
	cb.Handler = func(ctx context.Context, from NodeID, p []byte) error {
		if string(p) == "stuck" {
			stuck <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	b := h.start(cb)

	waitFor(t, 5*time.Second, "both nodes listed", func() bool {
		n, err := a.Nodes(ctx)
		return err == nil && len(n) == 2
	})
	phone := mustJID(t, "alice@example.org/phone")
	if _, err := a.Bind(ctx, phone, "a"); err != nil {
		t.Fatal(err)
	}
	if prev, err := b.Bind(ctx, phone, "b"); err != nil || prev != "a" {
		t.Fatalf("conflicting bind: %q %v, want a", prev, err)
	}
	if got, err := a.Owners(ctx, []jid.JID{phone}); err != nil || got[0] != "b" {
		t.Fatalf("owners: %v %v", got, err)
	}
	if err := b.Send(ctx, "a", []byte("hello a")); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, boxA.ch, "a taking b's payload"); p != "hello a" {
		t.Fatalf("a got %q", p)
	}
	if host, _, err := a.Place(ctx, "room@conference.example.org"); err != nil || host != "a" {
		t.Fatalf("place: %q %v", host, err)
	}
	if err := a.Release(ctx, "room@conference.example.org"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"stuck", "unread"} {
		if err := a.Send(ctx, "b", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	recv(t, stuck, "b busy")
	crash(b)
	waitFor(t, 10*time.Second, "b's unread payloads handed to a's fallback", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(handed, []string{"stuck", "unread"})
	})
	if v := metricValue(t, a.m.redisErrors); v != 0 {
		t.Errorf("%v failed Redis calls (a permission missing from the ACL?)", v)
	}
}

// The nodes' ACL user of docs/operations.md is enough for everything a
// node does, and nothing more: other keys and administrative commands
// are refused, and so is a client without the password.
func TestRedisACLUser(t *testing.T) {
	srv := startOwnRedis(t, false)
	h := srv.harness(t)
	exerciseCluster(t, h)

	ctx := context.Background()
	node := srv.client(nodeUser, nodePassword)
	defer node.Close()
	if err := node.Set(ctx, "elsewhere", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("the nodes' user wrote a key outside the prefix: %v", err)
	}
	for _, cmd := range [][]any{{"flushall"}, {"config", "get", "requirepass"}, {"keys", "*"}, {"client", "kill", "127.0.0.1:1"}} {
		if err := node.Do(ctx, cmd...).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("the nodes' user ran %v: %v", cmd, err)
		}
	}
	anon := srv.client("", "")
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil {
		t.Error("a client without credentials was served")
	}

	cfg := h.config("wrong")
	cfg.URL = srv.url(nodeUser, "not-the-password")
	cfg.OpTimeout = 300 * time.Millisecond
	r, err := NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if err := r.Start(ctx); err == nil {
		t.Error("a node with the wrong Redis password joined")
	}
}

// Over rediss:// the nodes verify the server's certificate against the
// CA they are given; without it they refuse the server.
func TestRedisTLS(t *testing.T) {
	srv := startOwnRedis(t, true)
	h := srv.harness(t)
	exerciseCluster(t, h)

	ctx := context.Background()
	for name, change := range map[string]func(*Config){
		"system roots only": func(c *Config) { c.RootCAs = nil },
		"plaintext":         func(c *Config) { c.URL = "redis://" + nodeUser + ":" + nodePassword + "@" + srv.addr },
	} {
		cfg := h.config("n")
		cfg.OpTimeout = 300 * time.Millisecond
		change(&cfg)
		r, err := NewRedis(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: start = %v, want it refused", name, err)
		}
		r.Stop()
	}
}
