package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

var loopbackAddr = netip.MustParseAddr("127.0.0.1")

// dialHTTP opens a raw connection to the node's HTTP listener from the
// loopback address src.
func dialHTTP(t *testing.T, n *testNode, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", n.httpAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports whether the server closes c within d (reading and
// dropping what it writes meanwhile).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestHTTPTimeouts: a request body that trickles in and a kept-alive
// connection that sends nothing more are closed; a WebSocket stream lives
// on past every HTTP timeout.
func TestHTTPTimeouts(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.HTTPReadHeaderTimeout = 300 * time.Millisecond
	cfg.HTTPReadTimeout = 500 * time.Millisecond
	cfg.HTTPWriteTimeout = 500 * time.Millisecond
	cfg.HTTPIdleTimeout = 500 * time.Millisecond
	n := startTestNode(t, cfg)

	t.Run("slow body", func(t *testing.T) {
		c := dialHTTP(t, n, "127.0.0.1")
		io.WriteString(c, "POST /register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 100 { // 10 s at one byte per 100 ms
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("a body trickling in one byte at a time kept its connection 5 s (read timeout 500 ms)")
		}
		c.Close()
		<-done
	})
	t.Run("slow headers", func(t *testing.T) {
		c := dialHTTP(t, n, "127.0.0.1")
		io.WriteString(c, "GET /healthz HTTP/1.1\r\n")
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("unfinished headers kept their connection 5 s (header timeout 300 ms)")
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dialHTTP(t, n, "127.0.0.1")
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Close {
			t.Fatal("the server did not keep the connection alive at all")
		}
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("an idle kept-alive connection stayed open 5 s (idle timeout 500 ms)")
		}
	})
	t.Run("websocket outlives them", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws://"+n.httpAddr.String()+"/xmpp-websocket", &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		send := func(s string) {
			t.Helper()
			if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
				t.Fatalf("write %q: %v", s, err)
			}
		}
		recv := func() string {
			t.Helper()
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			return string(b)
		}
		send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
		recv()                              // open
		recv()                              // features
		time.Sleep(1500 * time.Millisecond) // three times the HTTP timeouts
		send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>" +
			base64.StdEncoding.EncodeToString([]byte("n,,n=alice,r=0123456789abcdef")) + "</auth>")
		if got := recv(); !strings.Contains(got, "<challenge") {
			t.Fatalf("a login begun after the HTTP timeouts: %s, want a SCRAM challenge", got)
		}
	})
}

// getFrom asks for /healthz on a new connection from src, with header.
func getFrom(t *testing.T, n *testNode, src string, header http.Header) (int, error) {
	t.Helper()
	c := dialHTTP(t, n, src)
	req, _ := http.NewRequest("GET", "http://localhost/healthz", nil)
	req.Header = header
	if err := req.Write(c); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestHTTPConnectionsPerAddress: one address holds at most
// http_max_conns_per_address connections, another still gets in; behind a
// trusted proxy, the client it names is what counts.
func TestHTTPConnectionsPerAddress(t *testing.T) {
	t.Run("direct", func(t *testing.T) {
		cfg := testConfig(t, "")
		cfg.HTTPMaxConnsPerAddress = 2
		cfg.ConnLimitExempt = nil
		n := startTestNode(t, cfg)
		first := dialHTTP(t, n, "127.0.0.1")
		dialHTTP(t, n, "127.0.0.1")
		waitFor(t, func() bool { return n.httpConns.Held(loopbackAddr) == 2 })
		if code, err := getFrom(t, n, "127.0.0.1", nil); code != 0 && code != http.StatusTooManyRequests {
			t.Fatalf("a third connection from one address: %d %v, want 429 or a closed connection", code, err)
		}
		if code, err := getFrom(t, n, "127.0.0.2", nil); code != http.StatusOK {
			t.Fatalf("another address: %d %v", code, err)
		}
		first.Close()
		waitFor(t, func() bool { return n.httpConns.Held(loopbackAddr) <= 1 })
		if code, err := getFrom(t, n, "127.0.0.1", nil); code != http.StatusOK {
			t.Fatalf("after one closed: %d %v", code, err)
		}
		if n.httpConns.Refused() != 1 {
			t.Errorf("refused %d, want 1", n.httpConns.Refused())
		}
	})
	t.Run("behind a trusted proxy", func(t *testing.T) {
		cfg := testConfig(t, "")
		cfg.HTTPMaxConnsPerAddress = 2
		cfg.ConnLimitExempt = nil
		cfg.TrustedProxies = []netip.Prefix{mustPrefix("127.0.0.1/32")}
		n := startTestNode(t, cfg)
		client := http.Header{"X-Forwarded-For": {"198.51.100.1"}}
		// Two requests of one client under way: bodies that do not come.
		for range 2 {
			c := dialHTTP(t, n, "127.0.0.1")
			io.WriteString(c, "POST /register HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 198.51.100.1\r\n"+
				"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n")
		}
		waitFor(t, func() bool { return n.httpProxied.Held(netip.MustParseAddr("198.51.100.1")) == 2 })
		if code, err := getFrom(t, n, "127.0.0.1", client); code != http.StatusTooManyRequests {
			t.Fatalf("a third request of one client behind the proxy: %d %v, want 429", code, err)
		}
		// The proxy itself is not held to the cap, and other clients
		// behind it get in.
		for range 3 {
			if code, err := getFrom(t, n, "127.0.0.1", http.Header{"X-Forwarded-For": {"198.51.100.2"}}); code != http.StatusOK {
				t.Fatalf("another client behind the proxy: %d %v", code, err)
			}
		}
	})
}
