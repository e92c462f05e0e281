package web

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"poosms.org/poosms/internal/clientaddr"
	"poosms.org/poosms/internal/connlimit"
)

// tooManyConns is what a client refused at a per-address limit reads.
const tooManyConns = "too many connections from your address\n"

// LimitListener caps the connections each peer address holds on ln at
// once (lim; give it the trusted proxies as exempt addresses, since they
// carry many clients: LimitProxied counts those). A connection past the
// cap is answered 429 and closed at once, before it costs a goroutine.
func LimitListener(ln net.Listener, lim *connlimit.Limiter) net.Listener {
	return &limitListener{Listener: ln, lim: lim}
}

type limitListener struct {
	net.Listener
	lim *connlimit.Limiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := l.lim.Acquire(connlimit.AddrOf(c.RemoteAddr()))
		if ok {
			return &limitedConn{Conn: c, release: release}, nil
		}
		// A fresh socket's send buffer is empty: this write does not
		// wait. A request already received makes the close a reset,
		// which the client may see instead of the answer.
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n" +
			"Connection: close\r\nRetry-After: 10\r\nContent-Length: " + strconv.Itoa(len(tooManyConns)) + "\r\n\r\n" + tooManyConns))
		_ = c.Close()
	}
}

// limitedConn gives its place back when closed.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// ReadFrom keeps sendfile for responses served from files.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// LimitProxied caps, per client, the requests a trusted proxy carries at
// once: behind a proxy the listener sees only the proxy, so the client it
// names (proxies.Client) is counted here instead, and answered 429 past
// lim. Requests from any other peer pass: LimitListener counted them.
func LimitProxied(h http.Handler, lim *connlimit.Limiter, proxies *clientaddr.Resolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := clientaddr.Peer(r)
		client := proxies.Client(r)
		if !proxies.Trusts(peer) || client == peer {
			h.ServeHTTP(w, r)
			return
		}
		release, ok := lim.Acquire(client)
		if !ok {
			w.Header().Set("Retry-After", "10")
			http.Error(w, tooManyConns, http.StatusTooManyRequests)
			return
		}
		defer release()
		h.ServeHTTP(w, r)
	})
}

// transferChunk is what a transfer must move within each window of its
// read or write timeout to go on.
const transferChunk = 32 << 10

// Transfer lets h's requests run past the server's read and write
// timeouts, which bound a whole request and a whole response, for as long
// as their bodies keep moving: each transferChunk (32 KiB) read gives the
// body another read window (and the response, which waits for it, another
// write window), each 32 KiB written another write window. A
// transfer slower than 32 KiB a window (about 1 KiB/s with the default
// 30s) is cut off; so is one that stops. For uploads and downloads of
// files, whose size only their limits bound.
func Transfer(h http.Handler, read, write time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// While the body comes in, the response waits: each step of the
		// body renews both deadlines.
		extend := func(read, write time.Duration) {
			now := time.Now()
			if read > 0 {
				_ = rc.SetReadDeadline(now.Add(read))
			}
			if write > 0 {
				_ = rc.SetWriteDeadline(now.Add(write))
			}
		}
		extend(read, write)
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &movingBody{ReadCloser: r.Body, extend: func() { extend(read, write) }}
		}
		if write > 0 {
			w = &movingWriter{ResponseWriter: w, extend: func() { extend(0, write) }}
		}
		h.ServeHTTP(w, r)
	})
}

// movingBody extends the read deadline each transferChunk bytes.
type movingBody struct {
	io.ReadCloser
	moved  int
	extend func()
}

func (b *movingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.moved += n; b.moved >= transferChunk || err == io.EOF {
		b.moved = 0
		b.extend()
	}
	return n, err
}

// movingWriter extends the write deadline each transferChunk bytes.
type movingWriter struct {
	http.ResponseWriter
	moved  int
	extend func()
}

func (w *movingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if w.moved += n; w.moved >= transferChunk {
		w.moved = 0
		w.extend()
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *movingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
