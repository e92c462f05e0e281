package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"poosms.org/poosms/internal/xmppclient"
)

// workerEnv marks a process started as a sessions worker, so that a test
// binary standing in for poosms-bench knows to run the worker.
const workerEnv = "POOSMS_BENCH_SESSIONS_WORKER"

// fdSpare is what a worker keeps free of its open-file limit besides its
// sessions: standard files, the runtime's poller, DNS.
const fdSpare = 32

// sessionsWorkerCommand logs in its share of the sessions, holds them,
// and closes them when its standard input ends. It writes workerEvent
// lines on stdout; "stop" on its standard input ends its ramp early.
func sessionsWorkerCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o sessionsOptions
	fs := pflag.NewFlagSet("sessions-worker", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "", "")
	fs.StringVar(&o.domain, "domain", "", "")
	fs.StringVar(&o.userPrefix, "user-prefix", "", "")
	fs.StringVar(&o.password, "password", "", "")
	fs.StringVar(&o.mechanism, "mechanism", "", "")
	fs.IntVar(&o.first, "first", 0, "")
	fs.IntVar(&o.sessions, "sessions", 0, "")
	fs.StringVar(&o.sources, "sources", "", "")
	fs.IntVar(&o.concurrency, "login-concurrency", 1, "")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "")
	fs.DurationVar(&o.progress, "progress", time.Second, "")
	fs.BoolVar(&o.directTLS, "direct-tls", false, "")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	srcs, err := sourceRange(o.sources)
	addrs := splitAddrs(o.addr)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no --addr")
	}
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench worker: %v\n", err)
		return 2
	}
	if lim, err := processFileLimit(os.Getpid()); err == nil && int64(o.sessions+fdSpare) > lim {
		fmt.Fprintf(stderr, "poosms-bench worker: %d sessions need more open files than this process's limit of %d: lower --per-process\n", o.sessions, lim)
		return 2
	}
	out := &eventWriter{w: stdout}

	// Standard input: "stop" ends the ramp, its end ends everything.
	stopRamp, closeAll := make(chan struct{}), make(chan struct{})
	go func() {
		var once sync.Once
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if sc.Text() == "stop" {
				once.Do(func() { close(stopRamp) })
			}
		}
		once.Do(func() { close(stopRamp) })
		close(closeAll)
	}()
	loginCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-closeAll:
			cancel()
		case <-loginCtx.Done():
		}
	}()

	var (
		mu      sync.Mutex
		conns   []net.Conn
		failure string
		limit   string
	)
	var loggedIn, failed atomic.Int64
	var lastOK atomic.Int64
	event := func(kind string) workerEvent {
		mu.Lock()
		defer mu.Unlock()
		return workerEvent{Kind: kind, LoggedIn: int(loggedIn.Load()), Failed: int(failed.Load()), Failure: failure, Limit: limit, LastOK: lastOK.Load()}
	}
	progressDone := make(chan struct{})
	go func() {
		t := time.NewTicker(o.progress)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				out.send(event("progress"))
			}
		}
	}()

	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	stopped := false
ramp:
	for i := o.first; i < o.first+o.sessions; i++ {
		select {
		case <-stopRamp:
			stopped = true
			break ramp
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := xmppclient.Dial(loginCtx, xmppclient.Options{
				Addr: addrs[i%len(addrs)], Domain: o.domain, Username: o.userPrefix + strconv.Itoa(i), Password: o.password,
				Resource: "hold", Mechanism: o.mechanism, Timeout: o.timeout, DirectTLS: o.directTLS,
				LocalAddr: &net.TCPAddr{IP: srcs[i%len(srcs)].AsSlice()},
			})
			if err != nil {
				if loginCtx.Err() != nil {
					return // ended by the parent, not a failure
				}
				failed.Add(1)
				mu.Lock()
				if failure == "" {
					failure = fmt.Sprintf("%s%d: %v", o.userPrefix, i, err)
					limit = loginLimit(err)
				}
				mu.Unlock()
				out.send(event("progress")) // the parent decides at once whether to stop
				return
			}
			// Only the connection is kept: the client's decoder and
			// buffers would cost the bench more than the session costs
			// the server.
			conn := c.Conn()
			_ = conn.SetDeadline(time.Time{})
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			loggedIn.Add(1)
			lastOK.Store(time.Now().UnixNano())
		}(i)
	}
	wg.Wait()
	close(progressDone)
	ev := event("ramp")
	ev.Stopped = stopped
	out.send(ev)

	<-closeAll
	// Which sessions did the server keep? A session it ended reads EOF
	// (or an error); one it kept has nothing to read.
	var alive atomic.Int64
	par := make(chan struct{}, 256)
	for _, conn := range conns {
		par <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-par }()
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			var one [1]byte
			if _, err := conn.Read(one[:]); err == nil || isTimeout(err) {
				alive.Add(1)
			}
			_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(conn, "</stream:stream>")
			_ = conn.Close()
		}()
	}
	wg.Wait()
	ev = event("closed")
	ev.Alive = int(alive.Load())
	out.send(ev)
	return 0
}

// loginLimit names the limit a failed login most likely met.
func loginLimit(err error) string {
	var auth *xmppclient.AuthError
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "the bench's open-file limit (EMFILE): lower --per-process"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port (EADDRNOTAVAIL): widen --sources"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: is the server up?"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection (its open-file limit, or a connection limit: see its log)"
	case isTimeout(err):
		return "login timed out (the server at its open-file limit, or saturated: see its log)"
	case errors.As(err, &auth) && auth.Condition == "temporary-auth-failure":
		return "the server could not check a password (temporary-auth-failure): its open-file limit or its database: see its log"
	case errors.As(err, &auth):
		return "authentication failed: do the accounts exist?"
	}
	return "login failed"
}

// splitAddrs splits a comma-separated address list.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
