package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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
	clientFlags
	clients          int
	rates            []float64 // offered messages per second, all clients together, one step each; 0 = idle
	duration         time.Duration
	drain            time.Duration
	allSteps         bool
	loginConcurrency int
	sources          string // first-last loopback source addresses
	pid              int
	json             bool
	progress         time.Duration
	presence         bool // pair the clients as contacts before the steps
}

// chatResult is what a run measured; --json prints it as is.
type chatResult struct {
	Clients        int        `json:"clients"`
	LoginSeconds   float64    `json:"login_seconds"`
	LoginsPerSec   float64    `json:"logins_per_second"`
	LoginErrors    int64      `json:"login_errors"`
	ServerCPULogin float64    `json:"server_cpu_seconds_logins,omitempty"`
	ServerRSSIdle  int64      `json:"server_rss_after_login_bytes,omitempty"`
	RSSPerSession  float64    `json:"server_rss_per_session_bytes,omitempty"`
	Steps          []chatStep `json:"steps"`
	// Ceiling is the highest offered rate of a step delivered in full
	// (see chatStep.InFull); 0 when none was.
	Ceiling       float64 `json:"ceiling_messages_per_second"`
	ServerCPUSecs float64 `json:"server_cpu_seconds,omitempty"` // logins and every step
	ServerPeakRSS int64   `json:"server_peak_rss_bytes,omitempty"`
	// Presence is what --presence measured; nil without it.
	Presence *presenceResult `json:"presence,omitempty"`
}

// presenceResult: the clients were paired (0 with 1, 2 with 3, …), each
// sent its initial presence, and each pair subscribed to each other with
// the clients approving what they were asked; a client counts once its
// contact's available presence reached it.
type presenceResult struct {
	Clients   int     `json:"clients_with_a_contact"`
	SawOnline int     `json:"clients_that_saw_their_contact_online"`
	Seconds   float64 `json:"seconds"`
	P50ms     float64 `json:"contact_online_after_p50_ms"`
	P99ms     float64 `json:"contact_online_after_p99_ms"`
}

// chatStep is what one offered rate gave. Every rate is measured over
// delivery, not sending: a server that falls behind and delivers late
// shows a delivery window longer than the send window and a delivered
// rate below the offered one.
type chatStep struct {
	OfferedRate float64 `json:"offered_messages_per_second"`
	Sent        int64   `json:"sent"`
	// SendWindow is how long the load tool sent; SentRate is Sent over it
	// (below OfferedRate when the load tool could not keep up).
	SendWindow float64 `json:"send_window_seconds"`
	SentRate   float64 `json:"sent_messages_per_second"`
	Delivered  int64   `json:"delivered"`
	// Lost counts messages sent and not delivered when the tool stopped
	// waiting (see --drain): dropped, or too late to count.
	Lost int64 `json:"lost"`
	// DeliveryWindow runs from the first send to the last delivery;
	// DeliveredRate is Delivered over it.
	DeliveryWindow float64 `json:"delivery_window_seconds"`
	DeliveredRate  float64 `json:"delivered_per_second_over_delivery_window"`
	SendErrors     int64   `json:"send_errors"`
	StanzaErrors   int64   `json:"stanza_errors"`
	LatencyP50ms   float64 `json:"latency_p50_ms"`
	LatencyP99ms   float64 `json:"latency_p99_ms"`
	LatencyP999ms  float64 `json:"latency_p999_ms"`
	// InFull: nothing lost, no errors, p99 within maxCeilingP99, and the
	// load tool sent at least 95 % of the offered rate.
	InFull        bool    `json:"delivered_in_full"`
	ServerCPUSecs float64 `json:"server_cpu_seconds,omitempty"`
	CPUPer1000    float64 `json:"server_cpu_seconds_per_1000_delivered,omitempty"`
}

// maxCeilingP99 is the latest a step's 99th percentile may be for the
// step to count as delivered in full.
const maxCeilingP99 = time.Second

// stepCounts is what the load tool counted during one step.
type stepCounts struct {
	offered              float64
	sent, delivered      int64
	sendErrs, stanzaErrs int64
	sendStart, sendEnd   time.Time
	lastDelivery         time.Time // zero: nothing delivered
	latencies            []time.Duration
	cpuSeconds           float64 // server CPU over the step, 0 if not measured
}

// measureStep turns one step's counts into its figures.
func measureStep(c stepCounts) chatStep {
	s := chatStep{OfferedRate: c.offered, Sent: c.sent, Delivered: c.delivered,
		SendErrors: c.sendErrs, StanzaErrors: c.stanzaErrs, ServerCPUSecs: c.cpuSeconds}
	s.SendWindow = c.sendEnd.Sub(c.sendStart).Seconds()
	if s.SendWindow > 0 {
		s.SentRate = float64(c.sent) / s.SendWindow
	}
	s.Lost = max(c.sent-c.delivered, 0)
	if !c.lastDelivery.IsZero() {
		s.DeliveryWindow = max(c.lastDelivery.Sub(c.sendStart), c.sendEnd.Sub(c.sendStart)).Seconds()
		s.DeliveredRate = float64(c.delivered) / s.DeliveryWindow
	}
	lat := slices.Clone(c.latencies)
	slices.Sort(lat)
	s.LatencyP50ms, s.LatencyP99ms, s.LatencyP999ms = pct(lat, 0.50), pct(lat, 0.99), pct(lat, 0.999)
	if c.delivered > 0 && c.cpuSeconds > 0 {
		s.CPUPer1000 = 1000 * c.cpuSeconds / float64(c.delivered)
	}
	s.InFull = c.offered > 0 && c.sent > 0 && s.Lost == 0 && c.sendErrs == 0 && c.stanzaErrs == 0 &&
		s.LatencyP99ms <= float64(maxCeilingP99/time.Millisecond) && s.SentRate >= 0.95*c.offered
	return s
}

// ceiling is the highest offered rate among the steps delivered in full.
func ceiling(steps []chatStep) float64 {
	var c float64
	for _, s := range steps {
		if s.InFull {
			c = max(c, s.OfferedRate)
		}
	}
	return c
}

func chatCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o chatOptions
	fs := pflag.NewFlagSet("chat", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, "server address (STARTTLS port); several, comma-separated, spread the clients over the nodes of a cluster (client i on address i mod n)",
		"accounts are PREFIX0, PREFIX1, … (they must exist)")
	fs.IntVar(&o.clients, "clients", 100, "clients to log in")
	fs.Float64SliceVar(&o.rates, "rate", []float64{0}, "messages per second across all clients (0: clients stay idle); several, comma-separated, are steps run one after the other on the same sessions")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each step sends (or stays idle)")
	fs.DurationVar(&o.drain, "drain", 30*time.Second, "after a step's sending, how long at most to wait for its deliveries; what has not arrived by then is lost")
	fs.BoolVar(&o.allSteps, "all-steps", false, "run every step even after one was not delivered in full (by default the run stops there)")
	fs.IntVar(&o.loginConcurrency, "login-concurrency", 50, "logins in flight at once")
	fs.StringVar(&o.sources, "sources", "127.0.0.1-127.0.0.1", "loopback source address range FIRST-LAST for the client sockets (more addresses, more ports)")
	fs.IntVar(&o.pid, "pid", 0, "server process id: report its CPU seconds and peak RSS")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "progress line interval on standard error (0: none)")
	fs.BoolVar(&o.presence, "presence", false, "before the steps, pair the clients (0 with 1, 2 with 3, …; with several addresses a pair spans two nodes): each sends its initial presence, the pair subscribe to each other and approve, and the run reports how many saw their contact come online and how soon (waits at most --drain)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	srcs, err := sourceRange(o.sources)
	if err != nil || o.clients < 2 {
		fmt.Fprintf(stderr, "poosms-bench: %v (and --clients must be at least 2)\n", err)
		return 2
	}
	if len(o.rates) == 0 || slices.ContainsFunc(o.rates, func(r float64) bool { return r < 0 }) {
		fmt.Fprintln(stderr, "poosms-bench: --rate: want one or more rates of at least 0, such as 1000,2000,4000")
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
	lat  [][]time.Duration // receive latencies per step
	mu   sync.Mutex
	done chan struct{}

	// --presence: the contact's bare JID ("" for none), whether this
	// client asked it for a subscription, and when its contact was first
	// seen online (Unix ns; 0 not yet).
	contact  string
	asked    atomic.Bool
	sawAt    atomic.Int64
	presence *presenceCounter
}

// presenceCounter counts the clients that saw their contact online.
type presenceCounter struct {
	start time.Time
	saw   atomic.Int64
	all   chan struct{} // closed when saw reaches want
	want  int64
}

// onPresence is the reader's part of --presence: approve a subscription
// request (and ask back the contact once), and note the contact's
// available presence.
func (c *benchClient) onPresence(el *stanza.Element) {
	from, _, _ := strings.Cut(el.From(), "/")
	switch el.PresenceType() {
	case stanza.SubscribePresence:
		_ = c.c.Send(stanza.NewPresence(stanza.SubscribedPresence).SetAttr("to", from))
		if from == c.contact && c.asked.CompareAndSwap(false, true) {
			_ = c.c.Send(stanza.NewPresence(stanza.SubscribePresence).SetAttr("to", from))
		}
	case stanza.AvailablePresence:
		if from != c.contact || c.presence == nil || !c.sawAt.CompareAndSwap(0, time.Now().UnixNano()) {
			return
		}
		if c.presence.saw.Add(1) == c.presence.want {
			close(c.presence.all)
		}
	}
}

// pairClients makes the live clients contacts two by two, before their
// readers start; the last one of an odd number has none.
func pairClients(live []*benchClient) (*presenceCounter, []*benchClient) {
	pc := &presenceCounter{all: make(chan struct{})}
	var paired []*benchClient
	for i := 0; i+1 < len(live); i += 2 {
		a, b := live[i], live[i+1]
		a.contact, _, _ = strings.Cut(b.jid, "/")
		b.contact, _, _ = strings.Cut(a.jid, "/")
		paired = append(paired, a, b)
	}
	pc.want = int64(len(paired))
	for _, c := range paired {
		c.presence = pc
	}
	return pc, paired
}

// pairPresence runs --presence over the paired clients: initial
// presence, then the first of each pair asks the second; the readers do
// the rest (onPresence).
func pairPresence(ctx context.Context, pc *presenceCounter, paired []*benchClient, wait time.Duration) *presenceResult {
	pc.start = time.Now()
	res := &presenceResult{Clients: len(paired)}
	if len(paired) == 0 {
		return res
	}
	for _, c := range paired {
		_ = c.c.Send(stanza.NewPresence(stanza.AvailablePresence))
	}
	for i := 0; i < len(paired); i += 2 {
		a := paired[i]
		if a.asked.CompareAndSwap(false, true) {
			_ = a.c.Send(stanza.NewPresence(stanza.SubscribePresence).SetAttr("to", a.contact))
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-pc.all:
	case <-t.C:
	case <-ctx.Done():
	}
	res.Seconds = time.Since(pc.start).Seconds()
	var ds []time.Duration
	for _, c := range paired {
		if at := c.sawAt.Load(); at != 0 {
			ds = append(ds, time.Unix(0, at).Sub(pc.start))
		}
	}
	res.SawOnline = len(ds)
	slices.Sort(ds)
	res.P50ms, res.P99ms = pct(ds, 0.50), pct(ds, 0.99)
	return res
}

func runChat(ctx context.Context, o chatOptions, srcs []netip.Addr, progress io.Writer) (*chatResult, error) {
	addrs := strings.Split(o.addr, ",")
	res := &chatResult{Clients: o.clients}
	server := sampleServer(o.pid)

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
			c, err := xmppclient.Dial(ctx, o.login(addrs[i%len(addrs)], i, "bench", srcs[i%len(srcs)]))
			if err != nil {
				loginErrs.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			clients[i] = &benchClient{c: c, jid: c.JID.String(), lat: make([][]time.Duration, len(o.rates)), done: make(chan struct{})}
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
	if rss, err := server.rss(); err == nil {
		res.ServerRSSIdle = rss
		res.RSSPerSession = float64(rss) / float64(len(live))
	}
	cpuLogin, cpuOK := server.cpu()
	if cpuOK {
		res.ServerCPULogin = cpuLogin
	}

	// Readers: one per client, measuring latency from the stamp in the
	// body and counting each delivery against the step that sent it.
	counters := make([]stepCounters, len(o.rates))
	var pc *presenceCounter
	var paired []*benchClient
	if o.presence {
		pc, paired = pairClients(live)
	}
	// A read timeout ends the stream (see RecvTimeout): wait as long as
	// the whole run may take; closing the clients at the end stops them.
	readFor := time.Duration(len(o.rates))*(o.duration+o.drain) + time.Minute
	for _, c := range live {
		go func(c *benchClient) {
			defer close(c.done)
			for {
				el, err := c.c.RecvTimeout(readFor)
				if err != nil {
					return
				}
				if el.Local == "presence" {
					c.onPresence(el)
					continue
				}
				if el.Local != "message" {
					continue
				}
				step, sentAt, ok := parseBenchBody(el.ChildText("", "body"))
				if !ok || step >= len(counters) {
					continue
				}
				if el.IsError() {
					counters[step].stanzaErrs.Add(1)
					continue
				}
				now := time.Now()
				c.mu.Lock()
				c.lat[step] = append(c.lat[step], now.Sub(time.Unix(0, sentAt)))
				c.mu.Unlock()
				counters[step].delivered.Add(1)
				counters[step].lastDelivery.Store(now.UnixNano())
			}
		}(c)
	}

	if o.presence {
		res.Presence = pairPresence(ctx, pc, paired, o.drain)
		p := res.Presence
		fmt.Fprintf(progress, "presence: %d of %d clients saw their contact online within %.1fs (p50 %.0f ms, p99 %.0f ms)\n",
			p.SawOnline, p.Clients, p.Seconds, p.P50ms, p.P99ms)
	}
	for i, rate := range o.rates {
		cpuBefore, _ := server.cpu()
		st := runStep(ctx, o, live, i, rate, &counters[i], progress)
		if cpuAfter, ok := server.cpu(); ok && cpuOK {
			st.cpuSeconds = cpuAfter - cpuBefore
		}
		for _, c := range live {
			c.mu.Lock()
			st.latencies = append(st.latencies, c.lat[i]...)
			c.mu.Unlock()
		}
		step := measureStep(st)
		res.Steps = append(res.Steps, step)
		if rate > 0 {
			fmt.Fprintf(progress, "step %.0f msgs/s: sent %d, delivered %d (%.0f/s over %.1fs), lost %d, p99 %.1f ms, in full: %v\n",
				rate, step.Sent, step.Delivered, step.DeliveredRate, step.DeliveryWindow, step.Lost, step.LatencyP99ms, step.InFull)
		}
		if rate > 0 && !step.InFull && !o.allSteps && i < len(o.rates)-1 {
			fmt.Fprintf(progress, "step %.0f msgs/s not delivered in full: the steps above it are left out (--all-steps runs them)\n", rate)
			break
		}
	}
	res.Ceiling = ceiling(res.Steps)
	if cpu, ok := server.cpu(); ok {
		res.ServerCPUSecs = cpu
	}
	res.ServerPeakRSS = server.peakRSS()
	return res, nil
}

// stepCounters are one step's counts, updated by senders and readers.
type stepCounters struct {
	sent, sendErrs, delivered, stanzaErrs, lastDelivery atomic.Int64
}

// benchBody is the body of every bench message: the send time in Unix
// nanoseconds, the step and a sequence number.
func benchBody(sentAt time.Time, step, seq int) string {
	return "bench " + strconv.FormatInt(sentAt.UnixNano(), 10) + " " + strconv.Itoa(step) + " " + strconv.Itoa(seq)
}

func parseBenchBody(body string) (step int, sentAt int64, ok bool) {
	rest, ok := strings.CutPrefix(body, "bench ")
	if !ok {
		return 0, 0, false
	}
	f := strings.Fields(rest)
	if len(f) != 3 {
		return 0, 0, false
	}
	sentAt, err1 := strconv.ParseInt(f[0], 10, 64)
	step, err2 := strconv.Atoi(f[1])
	return step, sentAt, err1 == nil && err2 == nil && step >= 0
}

// runStep sends at rate for o.duration (or stays idle at 0), then waits
// for the step's deliveries: until all have arrived, none arrived for
// 3 s, or o.drain has passed.
func runStep(ctx context.Context, o chatOptions, live []*benchClient, step int, rate float64, k *stepCounters, progress io.Writer) stepCounts {
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
					fmt.Fprintf(progress, "%s %.0f msgs/s: sent %d delivered %d errors %d\n", time.Now().Format("15:04:05"), rate,
						k.sent.Load(), k.delivered.Load(), k.sendErrs.Load()+k.stanzaErrs.Load())
				}
			}
		}()
	}
	sendStart := time.Now()
	if rate > 0 {
		workers := min(len(live), 64)
		per := rate / float64(workers)
		var swg sync.WaitGroup
		for w := 0; w < workers; w++ {
			swg.Add(1)
			go func(w int) {
				defer swg.Done()
				interval := time.Duration(float64(time.Second) / per)
				next := time.Now()
				r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				timer := time.NewTimer(0)
				defer timer.Stop()
				<-timer.C
				for seq := 0; ; seq++ {
					next = next.Add(interval)
					timer.Reset(time.Until(next))
					select {
					case <-runCtx.Done():
						return
					case <-timer.C:
					}
					from := live[r.IntN(len(live))]
					to := live[r.IntN(len(live))]
					for to == from {
						to = live[r.IntN(len(live))]
					}
					m := stanza.New(stanza.NSClient, "message").SetAttr("to", to.jid).SetType(stanza.ChatMessage).
						Append(stanza.New(stanza.NSClient, "body").SetText(benchBody(time.Now(), step, seq)))
					from.mu.Lock()
					err := from.c.Send(m)
					from.mu.Unlock()
					if err != nil {
						k.sendErrs.Add(1)
						continue
					}
					k.sent.Add(1)
				}
			}(w)
		}
		swg.Wait()
	} else {
		<-runCtx.Done()
	}
	sendEnd := time.Now()
	deadline := time.NewTimer(o.drain)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, lastChange := int64(-1), time.Now()
wait:
	for rate > 0 && k.delivered.Load()+k.stanzaErrs.Load() < k.sent.Load() {
		select {
		case <-ctx.Done():
			break wait
		case <-deadline.C:
			break wait
		case now := <-tick.C:
			if d := k.delivered.Load(); d != last {
				last, lastChange = d, now
			} else if now.Sub(lastChange) > 3*time.Second {
				break wait
			}
		}
	}
	c := stepCounts{offered: rate, sent: k.sent.Load(), delivered: k.delivered.Load(), sendErrs: k.sendErrs.Load(),
		stanzaErrs: k.stanzaErrs.Load(), sendStart: sendStart, sendEnd: sendEnd}
	if ld := k.lastDelivery.Load(); ld > 0 {
		c.lastDelivery = time.Unix(0, ld)
	}
	return c
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
	for _, s := range r.Steps {
		if s.OfferedRate == 0 {
			continue
		}
		row(fmt.Sprintf("offered %.0f msgs/s", s.OfferedRate), fmt.Sprintf("sent %d at %.0f/s over %.1fs", s.Sent, s.SentRate, s.SendWindow))
		row("  delivered", fmt.Sprintf("%d, %.0f/s over %.1fs from first send to last delivery; %d lost", s.Delivered, s.DeliveredRate, s.DeliveryWindow, s.Lost))
		row("  latency p50 / p99 / p99.9", fmt.Sprintf("%.2f / %.2f / %.2f ms", s.LatencyP50ms, s.LatencyP99ms, s.LatencyP999ms))
		row("  errors (send / stanza)", fmt.Sprintf("%d / %d", s.SendErrors, s.StanzaErrors))
		if s.ServerCPUSecs > 0 {
			row("  server CPU s per 1,000 delivered", fmt.Sprintf("%.3f", s.CPUPer1000))
		}
		row("  delivered in full", s.InFull)
	}
	if p := r.Presence; p != nil {
		row("presence: contact seen online", fmt.Sprintf("%d of %d clients in %.1fs (p50 %.0f ms, p99 %.0f ms)", p.SawOnline, p.Clients, p.Seconds, p.P50ms, p.P99ms))
	}
	if len(r.Steps) > 1 || (len(r.Steps) == 1 && r.Steps[0].OfferedRate > 0) {
		row("ceiling (in full, p99 ≤ 1 s)", fmt.Sprintf("%.0f msgs/s", r.Ceiling))
	}
	if r.ServerCPUSecs > 0 || r.ServerPeakRSS > 0 {
		row("server CPU seconds", fmt.Sprintf("%.2f (logins %.2f)", r.ServerCPUSecs, r.ServerCPULogin))
		row("server peak RSS", fmt.Sprintf("%.1f MiB", float64(r.ServerPeakRSS)/(1<<20)))
		row("server RSS per session (idle)", fmt.Sprintf("%.1f KiB", r.RSSPerSession/1024))
	}
	tw.Flush()
}
