package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"poosms.org/poosms/cluster"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
)

// A clustered node refuses to start without a cluster secret of at least
// 32 bytes, naming the setting and how to make one; config check hides
// the secret.
func TestClusterNeedsSecret(t *testing.T) {
	bin := testenv.BuildPoosmsd(t)
	// Nothing listens on port 1: the refusal must come before any connection.
	base := []string{"--redis", "redis://127.0.0.1:1", "--db", "mysql://u:p@tcp(127.0.0.1:1)/d", "--data-dir", t.TempDir()}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("too-short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no secret", nil, base, "--cluster-secret"},
		{"short secret", []string{"POOSMS_CLUSTER_SECRET=not-32-bytes"}, base, "at least 32 bytes"},
		{"short secret file", nil, append(base, "--cluster-secret-file", short), "--cluster-secret-file"},
	} {
		for _, cmd := range [][]string{{"config", "check"}, {"serve"}} {
			code, stderr := runPoosmsd(t, bin, tc.env, append(cmd, tc.args...)...)
			if code != exitConfig || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "openssl rand") {
				t.Errorf("%s, poosmsd %s: exit %d, stderr %q; want exit 2 naming %s and how to make a secret", tc.name, cmd[0], code, stderr, tc.want)
			}
			if strings.Contains(stderr, "not-32-bytes") || strings.Contains(stderr, "too-short") {
				t.Errorf("%s: the error shows the secret: %q", tc.name, stderr)
			}
		}
	}
	secret := randomSecret()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout strings.Builder
	if code := run(ctx, append([]string{"config", "check"}, base...), []string{"POOSMS_CLUSTER_SECRET=" + secret},
		strings.NewReader(""), &stdout, io.Discard); code != exitOK {
		t.Fatalf("config check with a good secret: exit %d", code)
	}
	if out := stdout.String(); strings.Contains(out, secret) || !strings.Contains(out, "cluster_secret: (set)") {
		t.Errorf("config check shows the cluster secret, or not that it is set:\n%s", out)
	}
}

// On a running cluster of real poosmsd processes, nothing written into
// Redis without the cluster secret is believed, and a peer holding the
// secret is believed only about the sessions it serves: a message written
// straight into a node's stream (unsigned, badly signed, or signed with
// another secret) never reaches its user; a peer that says it serves a
// user of another node does not get that user's messages; a peer that
// tells a node to end a session it does not serve is ignored. The nodes
// count and log each refusal and go on working together.
func TestClusterBusRefusesForgeries(t *testing.T) {
	redisURL := sharedRedisURL(t)
	bin := testenv.BuildPoosmsd(t)
	c := newCluster(t, bin, redisURL, 2)
	c.addUsers("alice", "bob")
	n1 := c.node("n1")
	alice := dialPeer(t, n1, "alice", "desk", true)
	bob := dialPeer(t, c.node("n2"), "bob", "phone", true)
	aliceFull, bobFull := "alice@localhost/desk", "bob@localhost/phone"
	bob.chat("alice@localhost", "real 1")
	alice.expectBody(10*time.Second, bobFull, "real 1")
	ctx := context.Background()

	forged := func(body string) []byte {
		m := stanza.New(stanza.NSClient, "message").SetAttr("from", bobFull).SetAttr("to", aliceFull).SetAttr("type", "chat")
		m.Append(stanza.New(stanza.NSClient, "body").SetText(body))
		return linkPayload(1, aliceFull, m.String()) // deliver to alice's session
	}

	// Written straight into n1's stream, as n2, without the secret.
	rc := c.redis()
	defer rc.Close()
	junk := make([]byte, 48)
	rand.Read(junk)
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	for _, v := range []map[string]any{
		{"f": "n2", "t": now, "p": forged("forged, unsigned")},
		{"f": "n2", "t": now, "p": forged("forged, junk signature"), "a": junk},
	} {
		if err := rc.XAdd(ctx, &redis.XAddArgs{Stream: c.prefix + "stream:n1", Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A node with another secret.
	liar := startPeer(t, c, "liar", randomSecret(), nil)
	if err := liar.Send(ctx, "n1", forged("forged, another secret")); err != nil {
		t.Fatal(err)
	}
	// A peer with the secret: it says it serves bob's phone, and that a
	// login on it took alice's desk.
	var mu sync.Mutex
	var toPeer []string
	peer := startPeer(t, c, "n3", c.secret, func(ctx context.Context, from cluster.NodeID, p []byte) error {
		mu.Lock()
		toPeer = append(toPeer, string(p))
		mu.Unlock()
		return nil
	})
	state := binary.AppendVarint([]byte{3, 0}, 1) // kindState, no snapshot flags, one entry
	state = binary.AppendUvarint(state, uint64(len(bobFull)))
	state = append(state, bobFull...)
	state = append(state, 1)               // available
	state = binary.AppendVarint(state, 50) // priority
	state = binary.AppendUvarint(state, 0) // no presence
	state = binary.AppendVarint(state, -1) // capabilities unknown
	for _, p := range [][]byte{state, linkPayload(5, aliceFull, "")} {
		if err := peer.Send(ctx, "n1", p); err != nil {
			t.Fatal(err)
		}
	}

	// The cluster goes on. bob's next message reaches n1 after all of
	// that (one stream, in order): alice is still connected, gets it and
	// none of the forged ones, and her message reaches bob on n2, not
	// the peer.
	bob.chat("alice@localhost", "real 2")
	alice.expectBody(10*time.Second, bobFull, "real 2")
	if el, err := alice.next(time.Second, func(e *stanza.Element) bool {
		return strings.HasPrefix(e.ChildText("", "body"), "forged")
	}); err == nil {
		t.Errorf("alice received %s", el)
	}
	alice.ping("still-connected")
	alice.chat("bob@localhost", "to the real bob")
	bob.expectBody(10*time.Second, aliceFull, "to the real bob")
	mu.Lock()
	for _, p := range toPeer {
		if strings.Contains(p, "to the real bob") {
			t.Errorf("the peer that claimed bob's session got alice's message")
		}
	}
	mu.Unlock()
	n1.waitMetric(t, `poosms_cluster_rejected_total{reason="not_owner"}`, 10*time.Second, "the peer's two claims refused",
		func(v float64, _ bool) bool { return v == 2 })
	n1.waitMetric(t, `poosms_cluster_rejected_total{reason="bad_signature"}`, 10*time.Second, "three payloads without the secret refused",
		func(v float64, _ bool) bool { return v == 3 })
	if !strings.Contains(n1.log.tail(200), "refused what was read from redis") {
		t.Errorf("n1 did not log the refusals:\n%s", n1.log.tail(50))
	}
}

// linkPayload encodes a cluster/link payload of kind carrying a JID and,
// unless el is empty, a stanza (the format of cluster/link/payload.go).
func linkPayload(kind byte, full, el string) []byte {
	p := binary.AppendUvarint([]byte{kind}, uint64(len(full)))
	p = append(p, full...)
	if el != "" {
		p = binary.AppendUvarint(p, uint64(len(el)))
		p = append(p, el...)
	}
	return p
}

// startPeer joins c's Redis as node id with secret, in this process: a
// peer that sends what the test tells it to.
func startPeer(t *testing.T, c *testCluster, id, secret string, h cluster.Handler) *cluster.Redis {
	t.Helper()
	r, err := cluster.NewRedis(cluster.Config{
		Node:    cluster.Node{ID: cluster.NodeID(id)},
		URL:     c.redisURL,
		Prefix:  c.prefix,
		Secret:  []byte(secret),
		Handler: h,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		r.Stop()
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}
