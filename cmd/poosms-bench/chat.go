package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

type chatOptions struct {
	addr, domain     string
	clients          int
	userPrefix       string
	password         string
	mechanism        string
	rate             float64 // messages per second, all clients together; 0 = idle
	duration         time.Duration
	loginConcurrency int
	sources          string // first-last loopback source addresses
	pid              int
	json             bool
	progress         time.Duration
}

// chatResult is what a run measured; --json prints it as is.
type chatResult struct {
	Clients        int     `json:"clients"`
	LoginSeconds   float64 `json:"login_seconds"`
	LoginsPerSec   float64 `json:"logins_per_second"`
	LoginErrors    int64   `json:"login_errors"`
	OfferedRate    float64 `json:"offered_messages_per_second"`
	Sent           int64   `json:"sent"`
	Delivered      int64   `json:"delivered"`
	DeliveredRate  float64 `json:"delivered_messages_per_second"`
	DeliverySecs   float64 `json:"delivery_seconds"`               // first send to last delivery
	Throughput     float64 `json:"throughput_messages_per_second"` // Delivered/DeliverySecs: below the offered rate when the server fell behind
	SendErrors     int64   `json:"send_errors"`
	StanzaErrors   int64   `json:"stanza_errors"`
	LatencyP50ms   float64 `json:"latency_p50_ms"`
	LatencyP99ms   float64 `json:"latency_p99_ms"`
	LatencyP999ms  float64 `json:"latency_p999_ms"`
	ServerCPUSecs  float64 `json:"server_cpu_seconds,omitempty"`
	ServerPeakRSS  int64   `json:"server_peak_rss_bytes,omitempty"`
	ServerRSSIdle  int64   `json:"server_rss_after_login_bytes,omitempty"`
	RSSPerSession  float64 `json:"server_rss_per_session_bytes,omitempty"`
	DurationSecond float64 `json:"duration_seconds"`
}

func chatCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o chatOptions
	fs := pflag.NewFlagSet("chat", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:5222", "server address (STARTTLS port); several, comma-separated, spread the clients over the nodes of a cluster (client i on address i mod n)")
	fs.StringVar(&o.domain, "domain", "localhost", "XMPP domain")
	fs.IntVar(&o.clients, "clients", 100, "clients to log in")
	fs.StringVar(&o.userPrefix, "user-prefix", "bench", "accounts are PREFIX0, PREFIX1, … (they must exist)")
	fs.StringVar(&o.password, "password", "bench-password", "password of every bench account")
	fs.StringVar(&o.mechanism, "mechanism", "SCRAM-SHA-256", "SASL mechanism")
	fs.Float64Var(&o.rate, "rate", 0, "messages per second across all clients (0: clients stay idle)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send (or stay idle)")
	fs.IntVar(&o.loginConcurrency, "login-concurrency", 50, "logins in flight at once")
	fs.StringVar(&o.sources, "sources", "127.0.0.1-127.0.0.1", "loopback source address range FIRST-LAST for the client sockets (more addresses, more ports)")
	fs.IntVar(&o.pid, "pid", 0, "server process id: report its CPU seconds and peak RSS")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "progress line interval on standard error (0: none)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	srcs, err := sourceRange(o.sources)
	if err != nil || o.clients < 2 {
		fmt.Fprintf(stderr, "poosms-bench: %v (and --clients must be at least 2)\n", err)
		return 2
	}
	res, err := runChat(ctx, o, srcs, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 1
	}
	if o.json {
		return printJSON(stdout, res)
	}
	printChat(stdout, res)
	return 0
}

// sourceRange parses "127.0.0.1-127.0.0.20".
func sourceRange(s string) ([]netip.Addr, error) {
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		last = first
	}
	a, err1 := netip.ParseAddr(first)
	b, err2 := netip.ParseAddr(last)
	if err1 != nil || err2 != nil || !a.IsLoopback() || !b.IsLoopback() || b.Less(a) {
		return nil, fmt.Errorf("--sources %q: want a loopback range such as 127.0.0.1-127.0.0.20", s)
	}
	var out []netip.Addr
	for x := a; ; x = x.Next() {
		out = append(out, x)
		if x == b || len(out) > 1000 {
			break
		}
	}
	return out, nil
}

type benchClient struct {
	c    *xmppclient.Client
	jid  string
	lat  []time.Duration // receive latencies, owned by the reader goroutine
	mu   sync.Mutex
	done chan struct{}
}

func runChat(ctx context.Context, o chatOptions, srcs []netip.Addr, progress io.Writer) (*chatResult, error) {
	addrs := strings.Split(o.addr, ",")
	res := &chatResult{Clients: o.clients, OfferedRate: o.rate}
	cpu0, _ := processCPU(o.pid)

	// Log in.
	clients := make([]*benchClient, o.clients)
	var loginErrs atomic.Int64
	var firstErr atomic.Pointer[error] // errors of different types: atomic.Value would panic
	sem := make(chan struct{}, o.loginConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := xmppclient.Dial(ctx, xmppclient.Options{
				Addr: addrs[i%len(addrs)], Domain: o.domain, Username: o.userPrefix + strconv.Itoa(i), Password: o.password,
				Resource: "bench", Mechanism: o.mechanism, Timeout: 30 * time.Second,
				LocalAddr: &net.TCPAddr{IP: srcs[i%len(srcs)].AsSlice()},
			})
			if err != nil {
				loginErrs.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			clients[i] = &benchClient{c: c, jid: c.JID.String(), done: make(chan struct{})}
		}(i)
	}
	wg.Wait()
	res.LoginSeconds = time.Since(start).Seconds()
	res.LoginErrors = loginErrs.Load()
	live := slices.DeleteFunc(clients, func(c *benchClient) bool { return c == nil })
	res.LoginsPerSec = float64(len(live)) / res.LoginSeconds
	defer func() {
		for _, c := range live {
			c.c.Close()
		}
	}()
	if len(live) < 2 {
		var err error
		if p := firstErr.Load(); p != nil {
			err = *p
		}
		return nil, fmt.Errorf("only %d clients logged in: %v", len(live), err)
	}
	fmt.Fprintf(progress, "logged in %d clients in %.1fs (%.0f/s), %d failed\n", len(live), res.LoginSeconds, res.LoginsPerSec, res.LoginErrors)
	if p := firstErr.Load(); p != nil {
		fmt.Fprintf(progress, "first login error: %v\n", *p)
	}
	if rss, err := processRSS(o.pid); err == nil {
		res.ServerRSSIdle = rss
		res.RSSPerSession = float64(rss) / float64(len(live))
	}

	// Readers: one per client, measuring latency from the stamp in the body.
	var delivered, stanzaErrs, lastDelivery atomic.Int64
	for _, c := range live {
		go func(c *benchClient) {
			defer close(c.done)
			for {
				el, err := c.c.RecvTimeout(o.duration + time.Minute)
				if err != nil {
					return
				}
				if el.Local != "message" {
					continue
				}
				if el.Type() == "error" {
					stanzaErrs.Add(1)
					continue
				}
				body := el.ChildText("", "body")
				if ns, ok := strings.CutPrefix(body, "bench "); ok {
					sentAt, _ := strconv.ParseInt(strings.Fields(ns)[0], 10, 64)
					d := time.Duration(time.Now().UnixNano() - sentAt)
					c.mu.Lock()
					c.lat = append(c.lat, d)
					c.mu.Unlock()
					delivered.Add(1)
					lastDelivery.Store(time.Now().UnixNano())
				}
			}
		}(c)
	}

	// Senders: a ticker paces the total rate; each tick picks a random pair.
	var sent, sendErrs atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	if o.progress > 0 {
		go func() {
			t := time.NewTicker(o.progress)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
					fmt.Fprintf(progress, "%s sent %d delivered %d errors %d\n", time.Now().Format("15:04:05"), sent.Load(), delivered.Load(), sendErrs.Load()+stanzaErrs.Load())
				}
			}
		}()
	}
	sendStart := time.Now()
	if o.rate > 0 {
		workers := min(len(live), 64)
		per := o.rate / float64(workers)
		var swg sync.WaitGroup
		for w := 0; w < workers; w++ {
			swg.Add(1)
			go func(w int) {
				defer swg.Done()
				interval := time.Duration(float64(time.Second) / per)
				next := time.Now()
				r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				for seq := 0; ; seq++ {
					next = next.Add(interval)
					select {
					case <-runCtx.Done():
						return
					case <-time.After(time.Until(next)):
					}
					from := live[r.IntN(len(live))]
					to := live[r.IntN(len(live))]
					for to == from {
						to = live[r.IntN(len(live))]
					}
					m := stanza.New(stanza.NSClient, "message").SetAttr("to", to.jid).SetAttr("type", "chat").
						Append(stanza.New(stanza.NSClient, "body").SetText("bench " + strconv.FormatInt(time.Now().UnixNano(), 10) + " " + strconv.Itoa(seq)))
					from.mu.Lock()
					err := from.c.Send(m)
					from.mu.Unlock()
					if err != nil {
						sendErrs.Add(1)
						continue
					}
					sent.Add(1)
				}
			}(w)
		}
		swg.Wait()
	} else {
		<-runCtx.Done()
	}
	sendTime := time.Since(sendStart)
	// Give messages in flight a moment: wait until deliveries stop growing.
	for last := int64(-1); delivered.Load() != last; {
		last = delivered.Load()
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	res.DurationSecond = sendTime.Seconds()
	res.Sent, res.Delivered, res.SendErrors, res.StanzaErrors = sent.Load(), delivered.Load(), sendErrs.Load(), stanzaErrs.Load()
	res.DeliveredRate = float64(res.Delivered) / sendTime.Seconds()
	if last := lastDelivery.Load(); last > 0 {
		res.DeliverySecs = max(time.Duration(last-sendStart.UnixNano()), sendTime).Seconds()
		res.Throughput = float64(res.Delivered) / res.DeliverySecs
	}
	var all []time.Duration
	for _, c := range live {
		c.mu.Lock()
		all = append(all, c.lat...)
		c.mu.Unlock()
	}
	slices.Sort(all)
	res.LatencyP50ms, res.LatencyP99ms, res.LatencyP999ms = pct(all, 0.50), pct(all, 0.99), pct(all, 0.999)
	if cpu1, err := processCPU(o.pid); err == nil {
		res.ServerCPUSecs = cpu1 - cpu0
	}
	if peak, err := processPeakRSS(o.pid); err == nil {
		res.ServerPeakRSS = peak
	}
	return res, nil
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return float64(sorted[i]) / float64(time.Millisecond)
}

func printChat(w io.Writer, r *chatResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("clients logged in", fmt.Sprintf("%d (%d failed)", r.Clients-int(r.LoginErrors), r.LoginErrors))
	row("logins/s", fmt.Sprintf("%.0f", r.LoginsPerSec))
	row("offered messages/s", fmt.Sprintf("%.0f", r.OfferedRate))
	row("sent / delivered", fmt.Sprintf("%d / %d", r.Sent, r.Delivered))
	row("delivered messages/s", fmt.Sprintf("%.0f", r.DeliveredRate))
	row("throughput (to last delivery)", fmt.Sprintf("%.0f msgs/s over %.1fs", r.Throughput, r.DeliverySecs))
	row("latency p50 / p99 / p99.9", fmt.Sprintf("%.2f / %.2f / %.2f ms", r.LatencyP50ms, r.LatencyP99ms, r.LatencyP999ms))
	row("errors (send / stanza)", fmt.Sprintf("%d / %d", r.SendErrors, r.StanzaErrors))
	if r.ServerCPUSecs > 0 || r.ServerPeakRSS > 0 {
		row("server CPU seconds", fmt.Sprintf("%.2f", r.ServerCPUSecs))
		row("server peak RSS", fmt.Sprintf("%.1f MiB", float64(r.ServerPeakRSS)/(1<<20)))
		row("server RSS per session (idle)", fmt.Sprintf("%.1f KiB", r.RSSPerSession/1024))
	}
	tw.Flush()
}
