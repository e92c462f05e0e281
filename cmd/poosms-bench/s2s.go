package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// The s2s command measures one server-to-server stream: clients of one
// server send messages to clients of another, so every message crosses
// the stream between the two domains; the receivers time each message
// from the stamp in its body (both ends run on this machine's clock).

type s2sOptions struct {
	fromAddr, fromDomain string
	toAddr, toDomain     string
	pairs                int
	userPrefix, password string
	mechanism            string
	rates                []float64
	duration             time.Duration
	pids                 []int
	json                 bool
}

// s2sStep is what one offered rate gave.
type s2sStep struct {
	OfferedRate   float64 `json:"offered_messages_per_second"`
	Sent          int64   `json:"sent"`
	Delivered     int64   `json:"delivered"`
	Errors        int64   `json:"errors"`           // error stanzas back to the senders (bounces)
	DeliverySecs  float64 `json:"delivery_seconds"` // first send to last delivery
	Throughput    float64 `json:"throughput_messages_per_second"`
	LatencyP50ms  float64 `json:"latency_p50_ms"`
	LatencyP99ms  float64 `json:"latency_p99_ms"`
	LatencyP999ms float64 `json:"latency_p999_ms"`
	ServerCPUSecs float64 `json:"server_cpu_seconds,omitempty"` // both servers together
}

// s2sResult is a whole run; --json prints it as is.
type s2sResult struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	Pairs     int       `json:"pairs"`
	WarmupSec float64   `json:"warmup_seconds"` // first message of every pair: the streams are set up
	Steps     []s2sStep `json:"steps"`
}

func s2sCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o s2sOptions
	var rates, pids []string
	fs := pflag.NewFlagSet("s2s", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.fromAddr, "from-addr", "127.0.0.1:5222", "the sending server's client address (STARTTLS)")
	fs.StringVar(&o.fromDomain, "from-domain", "a.test", "the sending server's domain")
	fs.StringVar(&o.toAddr, "to-addr", "127.0.0.2:5222", "the receiving server's client address (STARTTLS)")
	fs.StringVar(&o.toDomain, "to-domain", "b.test", "the receiving server's domain")
	fs.IntVar(&o.pairs, "pairs", 10, "sender and receiver pairs: PREFIX0… on both servers (the accounts must exist)")
	fs.StringVar(&o.userPrefix, "user-prefix", "bench", "accounts are PREFIX0, PREFIX1, …")
	fs.StringVar(&o.password, "password", "bench-password", "password of every bench account")
	fs.StringVar(&o.mechanism, "mechanism", "SCRAM-SHA-256", "SASL mechanism")
	fs.StringSliceVar(&rates, "rates", []string{"500"}, "offered messages per second, all pairs together; each rate is one step of --duration")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each step sends")
	fs.StringSliceVar(&pids, "pids", nil, "server process ids: report their CPU seconds per step")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	for _, r := range rates {
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(stderr, "poosms-bench: --rates %q: want positive numbers\n", r)
			return 2
		}
		o.rates = append(o.rates, v)
	}
	for _, p := range pids {
		v, err := strconv.Atoi(p)
		if err != nil || v <= 0 {
			fmt.Fprintf(stderr, "poosms-bench: --pids %q: want process ids\n", p)
			return 2
		}
		o.pids = append(o.pids, v)
	}
	if o.pairs < 1 {
		fmt.Fprintln(stderr, "poosms-bench: --pairs must be at least 1")
		return 2
	}
	res, err := runS2S(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 1
	}
	if o.json {
		return printJSON(stdout, res)
	}
	printS2S(stdout, res)
	return 0
}

// s2sReceiver is a receiving client; its reader owns the latencies.
type s2sReceiver struct {
	c  *xmppclient.Client
	mu sync.Mutex
	// per step: latencies, and the time of the last delivery
	lat  map[int][]time.Duration
	last map[int]time.Time
	got  map[int]int64
}

func (r *s2sReceiver) read(warm chan<- struct{}, errs *atomic.Int64) {
	warmed := false
	for {
		el, err := r.c.RecvTimeout(time.Hour)
		if err != nil {
			return
		}
		if el.Local != "message" {
			continue
		}
		if el.IsError() {
			errs.Add(1)
			continue
		}
		f := strings.Fields(el.ChildText("", "body"))
		if len(f) != 4 || f[0] != "s2s" {
			continue
		}
		if f[1] == "warmup" {
			if !warmed {
				warmed = true
				warm <- struct{}{}
			}
			continue
		}
		step, _ := strconv.Atoi(f[1])
		sentAt, _ := strconv.ParseInt(f[2], 10, 64)
		now := time.Now()
		r.mu.Lock()
		r.lat[step] = append(r.lat[step], now.Sub(time.Unix(0, sentAt)))
		r.last[step] = now
		r.got[step]++
		r.mu.Unlock()
	}
}

// readErrors counts the error stanzas (bounces) a sender receives.
func readErrors(c *xmppclient.Client, errs *atomic.Int64) {
	for {
		el, err := c.RecvTimeout(time.Hour)
		if err != nil {
			return
		}
		if el.Local == "message" && el.IsError() {
			errs.Add(1)
		}
	}
}

func runS2S(ctx context.Context, o s2sOptions, progress io.Writer) (*s2sResult, error) {
	res := &s2sResult{From: o.fromDomain, To: o.toDomain, Pairs: o.pairs}
	login := func(addr, domain string, i int) (*xmppclient.Client, error) {
		c, err := xmppclient.Dial(ctx, xmppclient.Options{
			Addr: addr, Domain: domain, Username: o.userPrefix + strconv.Itoa(i), Password: o.password,
			Resource: "s2s", Mechanism: o.mechanism, Timeout: 30 * time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("%s%d@%s logs in: %w", o.userPrefix, i, domain, err)
		}
		// Available, so that messages to the bare JID reach the session.
		return c, c.Send(stanza.New(stanza.NSClient, "presence"))
	}
	senders := make([]*xmppclient.Client, o.pairs)
	receivers := make([]*s2sReceiver, o.pairs)
	defer func() {
		for i := range o.pairs {
			if senders[i] != nil {
				senders[i].Close()
			}
			if receivers[i] != nil {
				receivers[i].c.Close()
			}
		}
	}()
	var errs atomic.Int64
	warm := make(chan struct{}, o.pairs)
	for i := range o.pairs {
		s, err := login(o.fromAddr, o.fromDomain, i)
		if err != nil {
			return nil, err
		}
		senders[i] = s
		rc, err := login(o.toAddr, o.toDomain, i)
		if err != nil {
			return nil, err
		}
		receivers[i] = &s2sReceiver{c: rc, lat: map[int][]time.Duration{}, last: map[int]time.Time{}, got: map[int]int64{}}
		go receivers[i].read(warm, &errs)
		go readErrors(s, &errs)
	}
	bare := func(i int) string { return o.userPrefix + strconv.Itoa(i) + "@" + o.toDomain }
	message := func(i int, body string) *stanza.Element {
		return stanza.New(stanza.NSClient, "message").SetAttr("to", bare(i)).SetType(stanza.ChatMessage).
			Append(stanza.New(stanza.NSClient, "body").SetText(body))
	}

	// Warm-up: one message per pair sets up the streams (and the
	// authentication) before anything is timed.
	start := time.Now()
	for i, s := range senders {
		if err := s.Send(message(i, "s2s warmup 0 0")); err != nil {
			return nil, err
		}
	}
	for range o.pairs {
		select {
		case <-warm:
		case <-time.After(60 * time.Second):
			return nil, errors.New("the warm-up messages did not all arrive within 60s: are the servers federating?")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res.WarmupSec = time.Since(start).Seconds()
	fmt.Fprintf(progress, "%s → %s: %d pairs logged in, warm-up %.2fs\n", o.fromDomain, o.toDomain, o.pairs, res.WarmupSec)

	for step, rate := range o.rates {
		st := s2sStep{OfferedRate: rate}
		cpu0 := serversCPU(o.pids)
		errs0 := errs.Load()
		var sent atomic.Int64
		stepCtx, cancel := context.WithTimeout(ctx, o.duration)
		begin := time.Now()
		var wg sync.WaitGroup
		interval := time.Duration(float64(time.Second) * float64(o.pairs) / rate)
		for i, s := range senders {
			wg.Add(1)
			go func(i int, s *xmppclient.Client) {
				defer wg.Done()
				// Pairs start spread over one interval, not all at once.
				next := begin.Add(interval * time.Duration(i) / time.Duration(o.pairs))
				for seq := 0; ; seq++ {
					select {
					case <-stepCtx.Done():
						return
					case <-time.After(time.Until(next)):
					}
					next = next.Add(interval)
					body := "s2s " + strconv.Itoa(step) + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + " " + strconv.Itoa(seq)
					if s.Send(message(i, body)) == nil {
						sent.Add(1)
					}
				}
			}(i, s)
		}
		wg.Wait()
		cancel()
		// Messages in flight: wait until all are delivered, or deliveries
		// stopped for 5 s, or a minute has passed.
		delivered := func() int64 {
			var n int64
			for _, r := range receivers {
				r.mu.Lock()
				n += r.got[step]
				r.mu.Unlock()
			}
			return n
		}
		for last, grew, deadline := int64(-1), time.Now(), time.Now().Add(time.Minute); ; {
			n := delivered()
			if n >= sent.Load() || time.Since(grew) > 5*time.Second || time.Now().After(deadline) {
				break
			}
			if n != last {
				last, grew = n, time.Now()
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		st.Sent, st.Delivered, st.Errors = sent.Load(), delivered(), errs.Load()-errs0
		var all []time.Duration
		var lastAt time.Time
		for _, r := range receivers {
			r.mu.Lock()
			all = append(all, r.lat[step]...)
			if r.last[step].After(lastAt) {
				lastAt = r.last[step]
			}
			r.mu.Unlock()
		}
		slices.Sort(all)
		st.DeliverySecs = max(lastAt.Sub(begin), o.duration).Seconds()
		st.Throughput = float64(st.Delivered) / st.DeliverySecs
		st.LatencyP50ms, st.LatencyP99ms, st.LatencyP999ms = pct(all, 0.50), pct(all, 0.99), pct(all, 0.999)
		if cpu0 >= 0 {
			st.ServerCPUSecs = serversCPU(o.pids) - cpu0
		}
		res.Steps = append(res.Steps, st)
		fmt.Fprintf(progress, "%.0f msgs/s offered: %d sent, %d delivered, %.0f/s, p99 %.1f ms\n",
			rate, st.Sent, st.Delivered, st.Throughput, st.LatencyP99ms)
	}
	return res, nil
}

// serversCPU sums the CPU seconds of pids; -1 when there are none or one
// cannot be read.
func serversCPU(pids []int) float64 {
	if len(pids) == 0 {
		return -1
	}
	var sum float64
	for _, p := range pids {
		v, err := processCPU(p)
		if err != nil {
			return -1
		}
		sum += v
	}
	return sum
}

func printS2S(w io.Writer, r *s2sResult) {
	fmt.Fprintf(w, "%s → %s, %d pairs on one stream, warm-up %.2fs\n", r.From, r.To, r.Pairs, r.WarmupSec)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "offered/s\tsent\tdelivered\terrors\tdelivered/s\tp50 ms\tp99 ms\tp99.9 ms\tserver CPU s")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%.0f\t%d\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\n", s.OfferedRate, s.Sent, s.Delivered, s.Errors,
			s.Throughput, s.LatencyP50ms, s.LatencyP99ms, s.LatencyP999ms, s.ServerCPUSecs)
	}
	tw.Flush()
}
