package cluster

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"poosms.org/poosms/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness starts nodes sharing one random key prefix on the test Redis
// and deletes every key under that prefix at the end.
type harness struct {
	t       testing.TB
	addr    string
	url     string         // what the nodes are given
	rootCAs *x509.CertPool // for a rediss:// url
	prefix  string
	secret  []byte // the cluster secret of the harness's nodes
	admin   *redis.Client
}

func newHarness(t testing.TB) *harness {
	addr := testenv.RedisAddr(t)
	b := make([]byte, 6)
	rand.Read(b)
	h := &harness{t: t, addr: addr, url: "redis://" + addr, prefix: "poosmstest:" + hex.EncodeToString(b) + ":", secret: make([]byte, MinSecretLen),
		admin: redis.NewClient(&redis.Options{Addr: addr})}
	rand.Read(h.secret)
	if err := h.admin.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("test redis at %s: %v", addr, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		var ks []string
		iter := h.admin.Scan(ctx, 0, h.prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			ks = append(ks, iter.Val())
		}
		if len(ks) > 0 {
			h.admin.Del(ctx, ks...)
		}
		h.admin.Close()
	})
	return h
}

// config is a node config with short timings: a node is declared gone
// 800ms after its last heartbeat (long enough for a loaded test machine
// not to miss one by accident).
func (h *harness) config(id NodeID) Config {
	return Config{
		Node:              Node{ID: id, C2S: "127.0.0.1:5222", HTTP: "127.0.0.1:5280", Media: "127.0.0.1:3478"},
		URL:               h.url,
		RootCAs:           h.rootCAs,
		Prefix:            h.prefix,
		Secret:            h.secret,
		HeartbeatInterval: 100 * time.Millisecond,
		NodeTTL:           800 * time.Millisecond,
		LeaseTTL:          time.Second,
		CleanupLockTTL:    5 * time.Second,
		OpTimeout:         500 * time.Millisecond,
		ReadBlock:         100 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// start creates and starts a node from cfg; it is stopped (leaving the
// cluster) at the end of the test unless the test crashed it first.
func (h *harness) start(cfg Config) *Redis {
	h.t.Helper()
	r, err := NewRedis(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(r.Stop)
	return r
}

// crash stops r the way a killed process stops: no leaving, no cleanup.
func crash(r *Redis) { r.stop(false) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv waits for a value on ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatal("unknown metric type")
	return 0
}

// proxy forwards loopback TCP to the test Redis and can be cut, so one
// node loses Redis while the server keeps serving everyone else.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, up: true, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if !up {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.conns[s] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut drops every connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = false
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.up = true
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}
