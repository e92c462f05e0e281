package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"poosms.org/poosms/cluster"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// Helpers for the multi-node tests in cluster_test.go: a cluster of real
// poosmsd processes sharing one MySQL database and one Redis, each node's
// log kept apart so a failure shows what every node said; and a client
// whose stream is read by one goroutine, so a test can wait for any
// stanza with a deadline without losing the ones that come first.

// Fast cluster timings: a node is declared gone about a second after it
// stops heartbeating.
var fastCluster = []string{"--cluster-heartbeat", "250ms", "--cluster-node-ttl", "1s", "--cluster-lease-ttl", "1500ms"}

const (
	nsMUC      = "http://jabber.org/protocol/muc"
	nsMUCUser  = "http://jabber.org/protocol/muc#user"
	nsMUCOwner = "http://jabber.org/protocol/muc#owner"
	nsSM       = "urn:xmpp:sm:3"
	nsStreams  = "urn:ietf:params:xml:ns:xmpp-streams"
	nsMAM      = "urn:xmpp:mam:2"
	nsRSM      = "http://jabber.org/protocol/rsm"
)

// sharedRedisURL returns the URL of the test Redis (POOSMS_TEST_REDIS_ADDR),
// skipping (failing under CI) when it is missing or does not answer.
func sharedRedisURL(t *testing.T) string {
	t.Helper()
	addr := testenv.RedisAddr(t)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rc.Ping(ctx).Err(); err != nil {
		testenv.Require(t, "Redis at POOSMS_TEST_REDIS_ADDR does not answer: "+err.Error())
	}
	return "redis://" + addr
}

// runPoosmsd runs bin with args (and env added to this process's) and
// returns its exit status and standard error; it must exit within 20s.
func runPoosmsd(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("poosmsd %v did not exit within 20s (it should refuse at once); stderr:\n%s", args, stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("poosmsd %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// mysqlForCluster returns a fresh MySQL store DSN, skipping (failing under
// CI) when POOSMS_TEST_MYSQL_DSN is not set.
func mysqlForCluster(t *testing.T) string {
	t.Helper()
	if os.Getenv("POOSMS_TEST_MYSQL_DSN") == "" {
		testenv.Require(t, "POOSMS_TEST_MYSQL_DSN is not set")
	}
	return testenv.MySQLDSN(t)
}

func randomPrefix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b) + ":"
}

// randomSecret is a cluster secret for one test cluster.
func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testCluster is a set of poosmsd processes forming one cluster.
type testCluster struct {
	t        *testing.T
	bin      string
	dsn      string
	redisURL string
	prefix   string
	secret   string // the cluster secret every node is given
	nodes    []*clusterNode
}

// newCluster starts n nodes (n1, n2, …) on the same database, Redis and
// key prefix, one after the other. extra flags go to every node.
func newCluster(t *testing.T, bin, redisURL string, n int, extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, bin: bin, dsn: mysqlForCluster(t), redisURL: redisURL, prefix: randomPrefix(), secret: randomSecret()}
	t.Cleanup(c.cleanup)
	for i := 1; i <= n; i++ {
		c.addNode(fmt.Sprintf("n%d", i), extra...)
	}
	for _, nd := range c.nodes {
		nd.start(t)
	}
	return c
}

func (c *testCluster) addNode(id string, extra ...string) *clusterNode {
	args := append([]string{"--db", c.dsn, "--redis", c.redisURL, "--redis-prefix", c.prefix, "--cluster-secret", c.secret,
		"--node-id", id, "--log-level", "info", "--metrics-token", metricsToken}, fastCluster...)
	args = append(args, extra...)
	d := testenv.NewDaemon(c.t, c.bin, args...)
	nd := &clusterNode{id: id, d: d, log: &nodeLog{}}
	c.nodes = append(c.nodes, nd)
	return nd
}

// node returns the node with the given id.
func (c *testCluster) node(id string) *clusterNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %s", id)
	return nil
}

// addUsers creates accounts (password NAME-password) in the shared store.
func (c *testCluster) addUsers(names ...string) {
	c.t.Helper()
	for _, name := range names {
		c.nodes[0].d.Run(c.t, name+"-password\n", "user", "add", name, "--db", c.dsn)
	}
}

// cleanup kills every node, prints the nodes' logs when the test failed
// and removes the test's keys from the shared Redis.
func (c *testCluster) cleanup() {
	for _, n := range c.nodes {
		n.kill()
	}
	if c.t.Failed() {
		for _, n := range c.nodes {
			c.t.Logf("---- log of node %s (last lines) ----\n%s", n.id, n.log.tail(120))
		}
	}
	rc := c.redis()
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := rc.Scan(ctx, 0, c.prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		_ = rc.Del(ctx, keys...).Err()
	}
}

// redis opens a client of the cluster's Redis; the caller closes it.
func (c *testCluster) redis() *redis.Client {
	addr := strings.TrimPrefix(c.redisURL, "redis://")
	if i := strings.IndexByte(addr, '/'); i >= 0 {
		addr = addr[:i]
	}
	return redis.NewClient(&redis.Options{Addr: addr})
}

// nodeRecord reads the record node id keeps in Redis while it is alive.
func (c *testCluster) nodeRecord(id string) (cluster.Node, error) {
	rc := c.redis()
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var n cluster.Node
	raw, err := rc.Get(ctx, c.prefix+"node:"+id).Bytes()
	if err != nil {
		return n, fmt.Errorf("node %s's record: %w", id, err)
	}
	// The record is the hex HMAC (64 characters), then the JSON.
	if len(raw) < 64 {
		return n, fmt.Errorf("node %s's record %q: too short", id, raw)
	}
	if err := json.Unmarshal(raw[64:], &n); err != nil {
		return n, fmt.Errorf("node %s's record %q: %w", id, raw, err)
	}
	return n, nil
}

// leases returns the room placement leases in Redis (key → node).
func (c *testCluster) leases() map[string]string {
	rc := c.redis()
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out := map[string]string{}
	iter := rc.Scan(ctx, 0, c.prefix+"lease:*", 500).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		v, err := rc.Get(ctx, k).Result()
		if err == nil {
			out[strings.TrimPrefix(k, c.prefix+"lease:")] = v
		}
	}
	return out
}

// clusterNode is one poosmsd process of a test cluster. The process is
// started here rather than with testenv.Daemon.Start so that its output is
// kept per node.
type clusterNode struct {
	id     string
	d      *testenv.Daemon // arguments, ports and data directory
	log    *nodeLog
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func (n *clusterNode) String() string { return n.id + "(" + n.d.C2S + ")" }

func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	cmd := exec.Command(n.d.Bin, n.d.Args...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		n.log.Write([]byte(fmt.Sprintf("[process ended: %v]\n", err)))
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("node %s exited during start:\n%s", n.id, n.log.tail(40))
		default:
		}
		if r, err := http.Get("http://" + n.d.HTTP + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not become healthy within 30s:\n%s", n.id, n.log.tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to end. Safe to repeat.
func (n *clusterNode) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// metricsToken lets the tests read /metrics on a node's HTTP port.
const metricsToken = "cluster-test-metrics-token"

// metrics fetches /metrics and sums each metric family's samples over
// their labels (histograms: the _count and _sum series by name); each
// labelled series is there too under its full name, such as
// poosms_cluster_rejected_total{reason="replay"}.
func (n *clusterNode) metrics() (map[string]float64, error) {
	req, err := http.NewRequest("GET", "http://"+n.d.HTTP+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+metricsToken)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", r.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[name] += v
		if name != line[:sp] {
			out[line[:sp]] = v // one labelled series, by its full name
		}
	}
	return out, sc.Err()
}

// waitMetric polls /metrics until cond holds for metric name, failing after d.
func (n *clusterNode) waitMetric(t *testing.T, name string, d time.Duration, what string, cond func(v float64, ok bool) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		m, err := n.metrics()
		if err == nil {
			v, ok := m[name]
			if cond(v, ok) {
				return
			}
			last = fmt.Sprintf("%s=%v (present %v)", name, v, ok)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %s not seen within %v; last: %s", n.id, what, d, last)
		}
		<-tick.C
	}
}

// nodeLog keeps a node's output in memory.
type nodeLog struct {
	mu  sync.Mutex
	buf []byte
}

func (l *nodeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf = append(l.buf, p...)
	if len(l.buf) > 4<<20 { // keep the last 2 MiB or so
		l.buf = append([]byte(nil), l.buf[len(l.buf)-2<<20:]...)
	}
	l.mu.Unlock()
	return len(p), nil
}

var _ io.Writer = (*nodeLog)(nil)

func (l *nodeLog) tail(lines int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimRight(string(l.buf), "\n")
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// peer is a logged-in XMPP client of a test cluster. One goroutine reads
// the stream; expect takes the first buffered or arriving stanza that
// matches and keeps the others for later calls.
type peer struct {
	t     *testing.T
	user  string
	node  *clusterNode
	x     *xmppclient.Client
	in    chan *stanza.Element
	done  chan struct{} // closed when the stream ended
	err   error         // why, valid after done
	acked atomic.Int64  // last XEP-0198 <a h/> seen
	kept  []*stanza.Element
}

func (p *peer) String() string {
	if p.node == nil {
		return p.user
	}
	return p.user + "@" + p.node.id
}

// dialPeer logs user in on node with resource res. presence sends the
// initial presence.
func dialPeer(t *testing.T, node *clusterNode, user, res string, presence bool) *peer {
	t.Helper()
	p, err := tryDialPeer(t, node, user, res)
	if err != nil {
		t.Fatalf("%s logs in on %s: %v", user, node, err)
	}
	if presence {
		p.send(stanza.New(stanza.NSClient, "presence"))
	}
	return p
}

func tryDialPeer(t *testing.T, node *clusterNode, user, res string) (*peer, error) {
	x, err := xmppclient.Dial(context.Background(), xmppclient.Options{
		Addr: node.d.C2S, Domain: "localhost", Username: user, Password: user + "-password", Resource: res, Timeout: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return newPeer(t, x, user, node), nil
}

// newPeer starts reading x, a logged-in stream of user (node may be nil
// outside a cluster); the stream is closed when the test ends.
func newPeer(t *testing.T, x *xmppclient.Client, user string, node *clusterNode) *peer {
	p := &peer{t: t, user: user, node: node, x: x, in: make(chan *stanza.Element, 4096), done: make(chan struct{})}
	go p.read()
	t.Cleanup(func() { p.x.Conn().Close() })
	return p
}

func (p *peer) read() {
	defer close(p.done)
	for {
		el, err := p.x.RecvTimeout(10 * time.Minute)
		if err != nil {
			p.err = err
			return
		}
		if el.Local == "a" && el.Space == nsSM {
			h, _ := strconv.ParseInt(el.Attr("h"), 10, 64)
			p.acked.Store(h)
			continue
		}
		p.in <- el
	}
}

func (p *peer) send(el *stanza.Element) {
	p.t.Helper()
	if err := p.x.Send(el); err != nil {
		p.t.Fatalf("%s sends %s: %v", p, el, err)
	}
}

func (p *peer) sendRaw(s string) {
	p.t.Helper()
	if err := p.x.SendRaw(s); err != nil {
		p.t.Fatalf("%s sends %s: %v", p, s, err)
	}
}

// next returns the first kept or arriving stanza matching match, or an
// error when d passes or the stream ends first.
func (p *peer) next(d time.Duration, match func(*stanza.Element) bool) (*stanza.Element, error) {
	for i, el := range p.kept {
		if match(el) {
			p.kept = append(p.kept[:i:i], p.kept[i+1:]...)
			return el, nil
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case el := <-p.in:
			if match(el) {
				return el, nil
			}
			p.kept = append(p.kept, el)
		case <-p.done:
			// Take what the reader queued before it stopped.
			for {
				select {
				case el := <-p.in:
					if match(el) {
						return el, nil
					}
					p.kept = append(p.kept, el)
				default:
					return nil, fmt.Errorf("stream ended: %v", p.err)
				}
			}
		case <-timer.C:
			return nil, fmt.Errorf("nothing matching within %v", d)
		}
	}
}

// expect is next that fails the test, describing what was awaited and
// what came instead.
func (p *peer) expect(d time.Duration, what string, match func(*stanza.Element) bool) *stanza.Element {
	p.t.Helper()
	el, err := p.next(d, match)
	if err != nil {
		p.t.Fatalf("%s waiting for %s: %v\n%s", p, what, err, p.keptSummary())
	}
	return el
}

func (p *peer) keptSummary() string {
	var b strings.Builder
	from := 0
	if len(p.kept) > 15 {
		from = len(p.kept) - 15
		fmt.Fprintf(&b, "(%d stanzas received and not matched; the last 15:)\n", len(p.kept))
	} else if len(p.kept) > 0 {
		b.WriteString("stanzas received and not matched:\n")
	}
	for _, el := range p.kept[from:] {
		s := el.String()
		if len(s) > 400 {
			s = s[:400] + "…"
		}
		b.WriteString("  " + s + "\n")
	}
	return b.String()
}

func (p *peer) chat(to, body string) {
	p.t.Helper()
	p.send(stanza.New(stanza.NSClient, "message").SetAttr("to", to).SetAttr("type", "chat").
		Append(stanza.New(stanza.NSClient, "body").SetText(body)))
}

// expectBody waits for a message with body, from fromBare (bare or full).
func (p *peer) expectBody(d time.Duration, from, body string) *stanza.Element {
	p.t.Helper()
	return p.expect(d, fmt.Sprintf("message %q from %s", body, from), func(e *stanza.Element) bool {
		return e.Local == "message" && e.ChildText("", "body") == body && (e.From() == from || bareOf(e.From()) == from)
	})
}

// expectPresence waits for presence of the given type ("" = available)
// from the full JID from.
func (p *peer) expectPresence(d time.Duration, from, typ string) *stanza.Element {
	p.t.Helper()
	name := typ
	if name == "" {
		name = "available"
	}
	return p.expect(d, name+" presence from "+from, func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == from && e.Type() == typ
	})
}

// ping makes an IQ round trip with the peer's own server.
func (p *peer) ping(id string) {
	p.t.Helper()
	p.send(stanza.NewIQ(stanza.GetIQ).SetAttr("id", id).SetAttr("to", "localhost").
		Append(stanza.New("urn:xmpp:ping", "ping")))
	r := p.expect(10*time.Second, "ping result "+id, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
	if r.IQType() != stanza.ResultIQ {
		p.t.Fatalf("%s ping: %s", p, r)
	}
}

// iqResult waits for the answer to IQ id and fails unless it is a result.
func (p *peer) iqResult(id string) *stanza.Element {
	p.t.Helper()
	r := p.expect(10*time.Second, "result of iq "+id, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
	if r.IQType() != stanza.ResultIQ {
		p.t.Fatalf("%s iq %s: %s", p, id, r)
	}
	return r
}

// close ends the stream and waits (bounded) until the server closes it too.
func (p *peer) close() {
	_ = p.x.SendRaw("<presence type='unavailable'/></stream:stream>")
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	p.x.Conn().Close()
}

func bareOf(full string) string {
	if i := strings.IndexByte(full, '/'); i >= 0 {
		return full[:i]
	}
	return full
}

// subscribe makes a and b subscribed to each other's presence (RFC 6121
// section 3), both online with initial presence sent, and waits until
// each sees the other's available presence.
func subscribe(t *testing.T, a, b *peer) {
	t.Helper()
	for _, pair := range [][2]*peer{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		fromBare, toBare := from.user+"@localhost", to.user+"@localhost"
		from.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", toBare).SetAttr("type", "subscribe"))
		to.expect(15*time.Second, "subscription request from "+fromBare, func(e *stanza.Element) bool {
			return e.Local == "presence" && e.PresenceType() == stanza.SubscribePresence && bareOf(e.From()) == fromBare
		})
		to.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", fromBare).SetAttr("type", "subscribed"))
		from.expect(15*time.Second, "presence of "+toBare+" after subscribed", func(e *stanza.Element) bool {
			return e.Local == "presence" && e.PresenceType() == stanza.AvailablePresence && e.From() == to.x.JID.String()
		})
	}
}

// muc helpers

// joinRoom sends presence to room/nick and waits for the self-presence
// (status 110). It returns the self-presence.
func joinRoom(p *peer, room, nick string) *stanza.Element {
	p.t.Helper()
	p.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", room+"/"+nick).Append(stanza.New(nsMUC, "x")))
	el := p.expect(15*time.Second, "self-presence in "+room+" as "+nick, func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == room+"/"+nick && (hasStatus(e, 110) || e.IsError())
	})
	if el.IsError() {
		p.t.Fatalf("%s joining %s: %s", p, room, el)
	}
	return el
}

// createRoom joins (creating) room as nick and makes it an instant room.
func createRoom(p *peer, room, nick string) {
	p.t.Helper()
	self := joinRoom(p, room, nick)
	if hasStatus(self, 201) {
		id := "instant-" + nick
		p.send(stanza.NewIQ(stanza.SetIQ).SetAttr("to", room).SetAttr("id", id).
			Append(stanza.New(nsMUCOwner, "query").Append(stanza.New("jabber:x:data", "x").SetAttr("type", "submit"))))
		p.iqResult(id)
	}
}

func hasStatus(e *stanza.Element, code int) bool {
	x := e.Child(nsMUCUser, "x")
	if x == nil {
		return false
	}
	for _, s := range x.Elements() {
		if s.Local == "status" && s.Attr("code") == strconv.Itoa(code) {
			return true
		}
	}
	return false
}

// groupchat sends a message to the room.
func groupchat(p *peer, room, body string) {
	p.t.Helper()
	p.send(stanza.New(stanza.NSClient, "message").SetAttr("to", room).SetAttr("type", "groupchat").
		Append(stanza.New(stanza.NSClient, "body").SetText(body)))
}

// enableSM turns XEP-0198 on for p.
func enableSM(p *peer) {
	p.t.Helper()
	p.sendRaw("<enable xmlns='urn:xmpp:sm:3'/>")
	p.expect(10*time.Second, "<enabled/>", func(e *stanza.Element) bool {
		if e.Local == "failed" && e.Space == nsSM {
			p.t.Fatalf("%s: stream management refused: %s", p, e)
		}
		return e.Local == "enabled" && e.Space == nsSM
	})
}

// collectStored sends initial presence and queries the archive (XEP-0313)
// page by page (the server caps a page at 250), and returns the bodies
// that came as offline messages and those from the archive, in arrival
// order.
func collectStored(p *peer) (offline, archive []string) {
	p.t.Helper()
	p.send(stanza.New(stanza.NSClient, "presence"))
	after := ""
	for page := 0; ; page++ {
		id := fmt.Sprintf("mam-%d", page)
		set := stanza.New(nsRSM, "set").Append(stanza.New(nsRSM, "max").SetText("250"))
		if after != "" {
			set.Append(stanza.New(nsRSM, "after").SetText(after))
		}
		p.send(stanza.NewIQ(stanza.SetIQ).SetAttr("id", id).
			Append(stanza.New(nsMAM, "query").SetAttr("queryid", id).Append(set)))
		for {
			el := p.expect(30*time.Second, "offline messages and the end of archive query "+id, func(e *stanza.Element) bool {
				return e.Local == "message" || (e.Local == "iq" && e.ID() == id)
			})
			if el.Local == "iq" {
				if el.IQType() != stanza.ResultIQ {
					p.t.Fatalf("%s archive query: %s", p, el)
				}
				fin := el.Child(nsMAM, "fin")
				if fin == nil {
					p.t.Fatalf("%s archive query without <fin/>: %s", p, el)
				}
				last := ""
				if s := fin.Child(nsRSM, "set"); s != nil {
					last = s.ChildText(nsRSM, "last")
				}
				if fin.Attr("complete") == "true" || last == "" {
					return offline, archive
				}
				after = last
				break
			}
			if r := el.Child(nsMAM, "result"); r != nil {
				if fw := r.Child("", "forwarded"); fw != nil {
					if m := fw.Child("", "message"); m != nil {
						archive = append(archive, m.ChildText("", "body"))
					}
				}
				continue
			}
			if b := el.ChildText("", "body"); b != "" {
				offline = append(offline, b)
			}
		}
		if page > 20 {
			p.t.Fatalf("%s: archive query still incomplete after %d pages", p, page)
		}
	}
}

// ownRedis is a redis-server process the test starts, kills and restarts.
type ownRedis struct {
	bin, port string
	cmd       *exec.Cmd
	exited    chan struct{}
	log       *nodeLog
}

func startOwnRedis(t *testing.T) *ownRedis {
	t.Helper()
	bin := testenv.Command(t, "redis-server", "apt-get install redis-server")
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	r := &ownRedis{bin: bin, port: port, log: &nodeLog{}}
	r.start(t)
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			t.Logf("---- redis-server on %s ----\n%s", port, r.log.tail(30))
		}
	})
	return r
}

func (r *ownRedis) addr() string { return "127.0.0.1:" + r.port }
func (r *ownRedis) url() string  { return "redis://" + r.addr() }

func (r *ownRedis) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(r.bin, "--port", r.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	r.cmd, r.exited = cmd, exited
	go func() { _ = cmd.Wait(); close(exited) }()
	rc := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer rc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rc.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("redis-server on %s exited:\n%s", r.port, r.log.tail(20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer within 10s: %v", r.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *ownRedis) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
}
