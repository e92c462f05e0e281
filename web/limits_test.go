package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/connlimit"
)

// pacedBody yields chunks of size bytes, one every gap.
type pacedBody struct {
	left, size int
	gap        time.Duration
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(b.gap)
	n := min(len(p), b.size, b.left)
	for i := range n {
		p[i] = 'x'
	}
	b.left -= n
	return n, nil
}

// TestTransferOutlivesTheReadTimeout: behind Transfer, an upload that
// takes far longer than the server's read timeout goes through while it
// keeps moving; one that trickles is cut off. Without Transfer the same
// upload is cut off by the read timeout.
func TestTransferOutlivesTheReadTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, "cut short", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "got %d", n)
	})
	mux := http.NewServeMux()
	mux.Handle("/transfer", Transfer(count, timeout, timeout))
	mux.Handle("/plain", count)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadTimeout: timeout, WriteTimeout: timeout}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String()

	put := func(path string, body *pacedBody) (string, error) {
		t.Helper()
		req, _ := http.NewRequest("PUT", url+path, body)
		req.ContentLength = int64(body.left)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", errors.New(resp.Status + ": " + string(b))
		}
		return string(b), nil
	}

	// 8 × 32 KiB, one every 100 ms: 800 ms in all, 32 KiB a window.
	moving := func() *pacedBody {
		return &pacedBody{left: 8 * transferChunk, size: transferChunk, gap: 100 * time.Millisecond}
	}
	if got, err := put("/transfer", moving()); err != nil || got != fmt.Sprintf("got %d", 8*transferChunk) {
		t.Fatalf("an upload that keeps moving: %q, %v", got, err)
	}
	if got, err := put("/plain", moving()); err == nil {
		t.Fatalf("without Transfer the same upload went through (%q): the test proves nothing", got)
	}
	start := time.Now()
	trickle := &pacedBody{left: 1 << 20, size: 100, gap: 20 * time.Millisecond} // 5 KB/s
	if got, err := put("/transfer", trickle); err == nil {
		t.Fatalf("a trickling upload went through: %q", got)
	}
	if d := time.Since(start); d > 10*timeout {
		t.Errorf("the trickle was cut off after %s, want about %s", d, timeout)
	}
}

// TestLimitListenerAnswers429: one peer address holds at most the cap; the next
// connection reads a 429 (or finds itself closed) at once.
func TestLimitListenerAnswers429(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := connlimit.New(1, nil)
	ll := LimitListener(ln, lim)
	defer ll.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ll.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	held := <-accepted
	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(second)
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 429 ")) || !strings.Contains(string(b), "too many connections") {
		t.Fatalf("the connection past the cap read %q", b)
	}
	held.Close() // gives the place back
	third, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a connection after one was closed was not accepted")
	}
}
