package cluster

import (
	"context"
	"errors"
	"testing"

	"mellium.im/xmpp/jid"
)

func mustJID(t testing.TB, s string) jid.JID {
	t.Helper()
	j, err := jid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestLocalDirectory(t *testing.T) {
	ctx := context.Background()
	l, err := NewLocal(Node{ID: "solo"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	phone := mustJID(t, "alice@example.org/phone")
	laptop := mustJID(t, "alice@example.org/laptop")
	if prev, err := l.Bind(ctx, phone, "solo"); err != nil || prev != "" {
		t.Fatalf("first bind: prev %q err %v, want none", prev, err)
	}
	if prev, err := l.Bind(ctx, phone, "solo"); err != nil || prev != "solo" {
		t.Fatalf("second bind of the same resource: prev %q err %v, want solo", prev, err)
	}
	if _, err := l.Bind(ctx, laptop, "solo"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Bind(ctx, mustJID(t, "alice@example.org"), "solo"); err == nil {
		t.Error("binding a bare jid succeeded")
	}
	got, err := l.Resources(ctx, mustJID(t, "alice@example.org/whatever"))
	if err != nil || len(got) != 2 {
		t.Fatalf("resources: %v %v, want two", got, err)
	}
	if err := l.Unbind(ctx, phone, "other"); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Resources(ctx, phone); len(got) != 2 {
		t.Fatalf("unbind by a node that does not hold the session removed it: %v", got)
	}
	if err := l.Unbind(ctx, phone, "solo"); err != nil {
		t.Fatal(err)
	}
	got, _ = l.Resources(ctx, phone)
	if len(got) != 1 || !got[0].Full.Equal(laptop) || got[0].Node != "solo" {
		t.Fatalf("after unbind: %v, want only the laptop", got)
	}
}

func TestLocalSendAndPlace(t *testing.T) {
	ctx := context.Background()
	var got []string
	l, err := NewLocal(Node{ID: "solo", C2S: "127.0.0.1:5222"}, func(ctx context.Context, from NodeID, p []byte) error {
		if from != "solo" {
			t.Errorf("from %q, want solo", from)
		}
		if string(p) == "refuse" {
			return errors.New("full")
		}
		got = append(got, string(p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Nodes(ctx); len(n) != 0 {
		t.Errorf("nodes before start: %v", n)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if n, _ := l.Nodes(ctx); len(n) != 1 || n[0].C2S != "127.0.0.1:5222" {
		t.Errorf("nodes: %v, want this one", n)
	}
	if n, err := l.Node(ctx, "solo"); err != nil || n.C2S != "127.0.0.1:5222" {
		t.Errorf("Node(solo) = %+v, %v", n, err)
	}
	if _, err := l.Node(ctx, "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Node(other): %v, want ErrNotFound", err)
	}
	if err := l.Send(ctx, "solo", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := l.Send(ctx, "solo", []byte("refuse")); err == nil {
		t.Error("a refused payload was reported as sent")
	}
	if err := l.Send(ctx, "elsewhere", []byte("two")); !errors.Is(err, ErrNodeGone) {
		t.Errorf("send to another node: %v, want ErrNodeGone", err)
	}
	if len(got) != 1 || got[0] != "one" {
		t.Errorf("handler got %q", got)
	}
	host, moved, err := l.Place(ctx, "room@conference.example.org")
	if err != nil || host != "solo" || moved {
		t.Errorf("place: %q %v %v", host, moved, err)
	}
	if err := l.Release(ctx, "room@conference.example.org"); err != nil {
		t.Error(err)
	}
	if !l.Healthy() {
		t.Error("local cluster unhealthy")
	}
}

func TestNodeIDValidate(t *testing.T) {
	for _, tc := range []struct {
		id NodeID
		ok bool
	}{
		{"node-1", true}, {"a.b_c", true}, {"", false}, {"has space", false}, {"a:b", false}, {"ü", false},
	} {
		if err := tc.id.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
	if _, err := NewLocal(Node{ID: "bad id"}, nil); err == nil {
		t.Error("NewLocal accepted a bad id")
	}
	if _, err := NewRedis(Config{Node: Node{ID: "n"}}); err == nil {
		t.Error("NewRedis accepted a config without url")
	}
	secret := make([]byte, MinSecretLen)
	if _, err := NewRedis(Config{Node: Node{ID: "n"}, URL: "redis://127.0.0.1:1", Secret: secret, HeartbeatInterval: 10e9, NodeTTL: 5e9}); err == nil {
		t.Error("NewRedis accepted a ttl shorter than the heartbeat")
	}
	if _, err := NewRedis(Config{Node: Node{ID: "n"}, URL: "redis://127.0.0.1:1", Secret: secret[1:]}); err == nil {
		t.Error("NewRedis accepted a secret shorter than MinSecretLen")
	}
	if _, err := NewRedis(Config{Node: Node{ID: "n"}, URL: "rediss://127.0.0.1:1?skip_verify=true", Secret: secret}); err == nil {
		t.Error("NewRedis accepted a TLS URL that skips verifying the server")
	}
	r, err := NewRedis(Config{Node: Node{ID: "n"}, URL: "redis://127.0.0.1:1", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	r.Stop()
}
