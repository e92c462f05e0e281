package link

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/cluster"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
)

// counted is a Redis cluster node that counts what its link sends and
// asks, and records what the link refuses.
type counted struct {
	*cluster.Redis
	mu      sync.Mutex
	sent    map[byte]int
	lookups int
	refused []string
}

func (c *counted) Send(ctx context.Context, to cluster.NodeID, payload []byte) error {
	c.mu.Lock()
	c.sent[payload[0]]++
	c.mu.Unlock()
	return c.Redis.Send(ctx, to, payload)
}

func (c *counted) Owners(ctx context.Context, fulls []jid.JID) ([]cluster.NodeID, error) {
	c.mu.Lock()
	c.lookups++
	c.mu.Unlock()
	return c.Redis.Owners(ctx, fulls)
}

func (c *counted) Reject(reason string, attrs ...any) {
	c.mu.Lock()
	c.refused = append(c.refused, fmt.Sprint(append([]any{reason}, attrs...)...))
	c.mu.Unlock()
	c.Redis.Reject(reason, attrs...)
}

// eventChat is a fakeChat that logs, in order, the sessions it mirrors
// and drops and the stanzas it delivers, and wakes a waiter after each.
type eventChat struct {
	*fakeChat
	mu     sync.Mutex
	events []string
	wake   chan struct{}
}

func (c *eventChat) note(ev string) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *eventChat) SetRemote(sess chat.Session, st chat.ResourceState) {
	c.fakeChat.SetRemote(sess, st)
	c.note("state " + sess.JID().String())
}

func (c *eventChat) DropRemote(ctx context.Context, sess chat.Session, announce bool) {
	c.fakeChat.DropRemote(ctx, sess, announce)
	c.note("gone " + sess.JID().String())
}

func (c *eventChat) SendTo(sess chat.Session, el *stanza.Element) bool {
	ok := c.fakeChat.SendTo(sess, el)
	c.note("deliver " + el.From())
	return ok
}

// until waits, without polling, for cond to hold after what the chat was
// told.
func (c *eventChat) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.fakeChat.mu.Lock()
		ok := cond()
		c.fakeChat.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.wake:
		case <-deadline:
			c.fakeChat.mu.Lock()
			n := len(c.remote)
			c.fakeChat.mu.Unlock()
			c.mu.Lock()
			t.Logf("events: %q", c.events[max(0, len(c.events)-5):])
			c.mu.Unlock()
			c.fakeChat.mu.Lock()
			t.Logf("offline: %q", c.offline)
			c.fakeChat.mu.Unlock()
			t.Fatalf("timed out waiting for %s (%d sessions mirrored)", what, n)
		}
	}
}

type redisNode struct {
	chat *eventChat
	link *Link
	cl   *counted
}

// startRedisNode starts a node on the test Redis under prefix, with its
// link attached.
func startRedisNode(t *testing.T, addr, prefix string, secret []byte, id cluster.NodeID) *redisNode {
	t.Helper()
	n := &redisNode{chat: &eventChat{fakeChat: newFakeChat(), wake: make(chan struct{}, 1)}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n.link = New(Config{Chat: n.chat, Rooms: &fakeRooms{}, Logger: quiet})
	r, err := cluster.NewRedis(cluster.Config{
		Node: cluster.Node{ID: id}, URL: "redis://" + addr, Prefix: prefix, Secret: secret,
		HeartbeatInterval: 100 * time.Millisecond, NodeTTL: 2 * time.Second, OpTimeout: time.Second,
		ReadBlock: 100 * time.Millisecond, Logger: quiet,
		Handler: n.link.Handle, Undeliverable: n.link.Undeliverable, NodeGone: n.link.NodeGone,
		NodeJoined: n.link.NodeJoined, HealthChanged: n.link.HealthChanged, SessionLost: n.link.SessionLost,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.cl = &counted{Redis: r, sent: map[byte]int{}}
	t.Cleanup(func() { n.link.Close(); r.Stop() })
	n.link.Attach(context.Background(), n.cl)
	return n
}

// On a real Redis: a burst of logins on one node reaches the other in
// far fewer stream entries than logins; a message sent right after a
// login arrives after that login's state; and a forged entry in a batch
// is refused while the rest applies.
func TestRedisBatchedAnnouncements(t *testing.T) {
	addr := testenv.RedisAddr(t)
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "poosmstest:" + hex.EncodeToString(b) + ":"
	admin := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() {
		ctx := context.Background()
		var ks []string
		iter := admin.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			ks = append(ks, iter.Val())
		}
		if len(ks) > 0 {
			admin.Del(ctx, ks...)
		}
		admin.Close()
	})
	secret := make([]byte, cluster.MinSecretLen)
	rand.Read(secret)
	ctx := context.Background()

	na := startRedisNode(t, addr, prefix, secret, "a")
	first := na.chat.session("a0@x/r")
	na.link.Bound(ctx, first)
	na.chat.fakeChat.mu.Lock()
	na.chat.local["a0@x/r"] = chat.ResourceState{}
	na.chat.fakeChat.mu.Unlock()
	nb := startRedisNode(t, addr, prefix, secret, "b")
	// b greeted a, which answered with its snapshot: each knows the other.
	nb.chat.until(t, "b to mirror a's first session", func() bool { _, ok := nb.chat.remote["a0@x/r"]; return ok })

	// A burst of logins on a.
	const n, workers = 600, 4
	before := na.cl.sentOf(kindStates)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				s := na.chat.session(fmt.Sprintf("u%d@x/r", i))
				na.link.Bound(ctx, s)
				// As chat does: a snapshot a sends meanwhile lists it.
				na.chat.fakeChat.mu.Lock()
				na.chat.local[s.JID().String()] = chat.ResourceState{Available: true}
				na.chat.fakeChat.mu.Unlock()
				na.link.SessionChanged(s.JID(), chat.ResourceState{})
				na.link.SessionChanged(s.JID(), chat.ResourceState{Available: true})
			}
		})
	}
	wg.Wait()
	nb.chat.until(t, "b to mirror the burst", func() bool {
		for i := range n {
			if !nb.chat.remote[fmt.Sprintf("u%d@x/r", i)].Available {
				return false
			}
		}
		return true
	})
	payloads := na.cl.sentOf(kindStates) - before
	nb.cl.mu.Lock()
	lookups, refused := nb.cl.lookups, slices.Clone(nb.cl.refused)
	nb.cl.mu.Unlock()
	t.Logf("%d logins, %d announcements: %d stream entries, %d directory look-ups on the receiver", n, 2*n, payloads, lookups)
	if payloads >= n {
		t.Errorf("%d logins took %d payloads, want fewer", n, payloads)
	}
	if lookups > payloads+2 {
		t.Errorf("%d directory look-ups for %d payloads", lookups, payloads)
	}
	if len(refused) != 0 {
		t.Fatalf("b refused %q", refused)
	}

	// A message sent from a right after a login there reaches b after
	// that login's state.
	bee := nb.chat.session("bee@x/r")
	nb.link.Bound(ctx, bee)
	nb.chat.fakeChat.mu.Lock()
	nb.chat.local["bee@x/r"] = chat.ResourceState{Available: true}
	nb.chat.fakeChat.mu.Unlock()
	nb.link.SessionChanged(bee.JID(), chat.ResourceState{Available: true})
	na.chat.until(t, "a to mirror bee", func() bool { _, ok := na.chat.remote["bee@x/r"]; return ok })
	release := hold(na.link)
	late := na.chat.session("late@x/r")
	na.link.Bound(ctx, late)
	na.chat.fakeChat.mu.Lock()
	na.chat.local["late@x/r"] = chat.ResourceState{Available: true}
	na.chat.fakeChat.mu.Unlock()
	na.link.SessionChanged(late.JID(), chat.ResourceState{Available: true})
	release()
	na.link.mu.Lock()
	r := na.link.remotes["bee@x/r"]
	na.link.mu.Unlock()
	if err := r.Send(stanza.New(stanza.NSClient, "message").SetAttr("to", "bee@x/r").SetAttr("from", "late@x/r")); err != nil {
		t.Fatal(err)
	}
	nb.chat.until(t, "the message to reach bee", func() bool { return len(bee.Received()) == 1 })
	nb.chat.mu.Lock()
	ev := slices.Clone(nb.chat.events)
	nb.chat.mu.Unlock()
	st, dl := slices.Index(ev, "state late@x/r"), slices.Index(ev, "deliver late@x/r")
	if st < 0 || dl < st {
		t.Fatalf("b saw late's state at %d and his message at %d: %q", st, dl, ev[max(0, len(ev)-4):])
	}

	// a forges an entry for ghost, whom no node serves, amid its own.
	ghost := batchPayload([]change{
		stateChange("u1@x/r", chat.ResourceState{Priority: 7}),
		stateChange("ghost@x/r", chat.ResourceState{Available: true}),
		goneChange("u2@x/r"),
	})
	if err := na.cl.Send(ctx, "b", ghost); err != nil {
		t.Fatal(err)
	}
	nb.chat.until(t, "the batch to apply", func() bool {
		_, u2 := nb.chat.remote["u2@x/r"]
		return nb.chat.remote["u1@x/r"].Priority == 7 && !u2
	})
	if _, ok := nb.chat.remote["ghost@x/r"]; ok {
		t.Fatal("b mirrored a session a does not serve")
	}
	nb.cl.mu.Lock()
	refused = slices.Clone(nb.cl.refused)
	nb.cl.mu.Unlock()
	if len(refused) != 1 || !strings.Contains(refused[0], "ghost@x/r") {
		t.Fatalf("b refused %q, want the ghost entry", refused)
	}
}

func (c *counted) sentOf(kind byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent[kind]
}

func (c *eventChat) session(full string) *fakeSession {
	return (&testNode{}).session(full)
}
