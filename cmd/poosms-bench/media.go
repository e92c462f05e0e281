package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"poosms.org/poosms/internal/confclient"
	"poosms.org/poosms/internal/xmppclient"
)

type mediaOptions struct {
	addr, domain         string
	userPrefix, password string
	rooms                int
	publishers           int
	subscribers          int
	simulcast, loopback  bool
	duration             time.Duration
	pid                  int
	json                 bool
	// target is the server: poosms, or livekit (joined through LiveKit's
	// Go SDK at lkURL with the API key lkKey and its secret).
	target                 string
	lkURL, lkKey, lkSecret string
}

type mediaResult struct {
	Rooms            int     `json:"rooms"`
	Participants     int     `json:"participants"`
	JoinErrors       int     `json:"join_errors"`
	JoinP50ms        float64 `json:"join_to_first_packet_p50_ms"`
	JoinP90ms        float64 `json:"join_to_first_packet_p90_ms"`
	JoinMaxms        float64 `json:"join_to_first_packet_max_ms"`
	Received         int64   `json:"packets_received"`
	Expected         int64   `json:"packets_expected"`
	ForwardedPerSec  float64 `json:"forwarded_packets_per_second"`
	LossPercent      float64 `json:"loss_percent"`
	JitterP50ms      float64 `json:"jitter_p50_ms"`
	JitterMaxms      float64 `json:"jitter_max_ms"`
	ServerCPUSecs    float64 `json:"server_cpu_seconds,omitempty"`
	CPUPerPacketUS   float64 `json:"server_cpu_microseconds_per_forwarded_packet,omitempty"`
	PacketsPerCoreSe float64 `json:"forwarded_packets_per_cpu_second,omitempty"`
	DurationSecond   float64 `json:"duration_seconds"`
}

// Each publisher sends one audio and one video packet (per layer) every 20 ms.
const packetsPerSecondPerKind = 50

func mediaCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o mediaOptions
	fs := pflag.NewFlagSet("media", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:5222", "server address (STARTTLS port)")
	fs.StringVar(&o.domain, "domain", "localhost", "XMPP domain (conferences are on conference.DOMAIN)")
	fs.StringVar(&o.userPrefix, "user-prefix", "bench", "accounts are PREFIX0, PREFIX1, … (they must exist)")
	fs.StringVar(&o.password, "password", "bench-password", "password of every bench account")
	fs.IntVar(&o.rooms, "rooms", 1, "conferences")
	fs.IntVar(&o.publishers, "publishers", 2, "publishers per conference (audio and video)")
	fs.IntVar(&o.subscribers, "subscribers", 2, "listeners per conference (receive only)")
	fs.BoolVar(&o.simulcast, "simulcast", false, "publish video as three simulcast layers")
	fs.BoolVar(&o.loopback, "loopback", true, "use loopback ICE candidates (server on this machine)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to measure once everyone receives")
	fs.IntVar(&o.pid, "pid", 0, "server process id: report its CPU per forwarded packet")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.StringVar(&o.target, "target", "poosms", "the server: poosms (XMPP at --addr), or livekit (at --livekit-url; rooms bench0, bench1, …)")
	fs.StringVar(&o.lkURL, "livekit-url", "ws://127.0.0.1:7880", "LiveKit server URL (--target livekit)")
	fs.StringVar(&o.lkKey, "livekit-key", "bench", "LiveKit API key (--target livekit)")
	fs.StringVar(&o.lkSecret, "livekit-secret", "", "LiveKit API secret (--target livekit)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if o.target != "poosms" && o.target != "livekit" {
		fmt.Fprintln(stderr, "poosms-bench: --target is poosms or livekit")
		return 2
	}
	if o.target == "livekit" && o.lkSecret == "" {
		fmt.Fprintln(stderr, "poosms-bench: --target livekit needs --livekit-secret")
		return 2
	}
	if o.rooms < 1 || o.publishers < 1 || o.publishers+o.subscribers < 2 {
		fmt.Fprintln(stderr, "poosms-bench: want --rooms ≥ 1, --publishers ≥ 1 and at least two participants per room")
		return 2
	}
	res, err := runMedia(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 1
	}
	if o.json {
		return printJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "conferences × participants\t%d × %d (%d failed to join)\n", res.Rooms, res.Participants/res.Rooms, res.JoinErrors)
	fmt.Fprintf(tw, "join → first packet p50 / p90 / max\t%.0f / %.0f / %.0f ms\n", res.JoinP50ms, res.JoinP90ms, res.JoinMaxms)
	fmt.Fprintf(tw, "forwarded packets/s\t%.0f\n", res.ForwardedPerSec)
	fmt.Fprintf(tw, "loss\t%.2f%% (%d of %d expected)\n", res.LossPercent, res.Expected-res.Received, res.Expected)
	fmt.Fprintf(tw, "jitter p50 / max\t%.2f / %.2f ms\n", res.JitterP50ms, res.JitterMaxms)
	if res.ServerCPUSecs > 0 {
		fmt.Fprintf(tw, "server CPU\t%.2f s (%.1f µs per forwarded packet, %.0f packets per CPU second)\n", res.ServerCPUSecs, res.CPUPerPacketUS, res.PacketsPerCoreSe)
	}
	tw.Flush()
	return 0
}

// mediaClient is one participant of either server.
type mediaClient interface {
	WaitConnected(ctx context.Context) error
	Publish(keyEvery int) stopper
	Tracks() []confclient.Track
	Close()
}

type stopper interface{ Stop() }

// poosmsClient is a conference client over its XMPP stream.
type poosmsClient struct {
	*confclient.Client
	x *xmppclient.Client
}

func (c poosmsClient) Publish(keyEvery int) stopper { return c.Client.Publish(keyEvery) }

func (c poosmsClient) Close() {
	c.Client.Close()
	c.x.Close()
}

type participant struct {
	c         mediaClient
	publisher bool
	joined    time.Time
	media     stopper
}

func runMedia(ctx context.Context, o mediaOptions, progress io.Writer) (*mediaResult, error) {
	res := &mediaResult{Rooms: o.rooms}
	per := o.publishers + o.subscribers
	parts := make([][]*participant, o.rooms)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for r := 0; r < o.rooms; r++ {
		parts[r] = make([]*participant, per)
		for i := 0; i < per; i++ {
			wg.Add(1)
			go func(r, i int) {
				defer wg.Done()
				n := r*per + i
				p := &participant{publisher: i < o.publishers, joined: time.Now()}
				var err error
				p.c, err = joinMedia(ctx, o, r, n, p.publisher)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.JoinErrors++
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				parts[r][i] = p
			}(r, i)
		}
	}
	wg.Wait()
	var all []*participant
	for r := range parts {
		parts[r] = slices.DeleteFunc(parts[r], func(p *participant) bool { return p == nil })
		all = append(all, parts[r]...)
	}
	defer func() {
		for _, p := range all {
			if p.media != nil {
				p.media.Stop()
			}
			p.c.Close()
		}
	}()
	res.Participants = len(all)
	if len(all) < 2 {
		return nil, fmt.Errorf("only %d participants joined: %v", len(all), firstErr)
	}
	for _, p := range all {
		if err := p.c.WaitConnected(ctx); err != nil {
			return nil, err
		}
	}
	for _, p := range all {
		if p.publisher {
			p.media = p.c.Publish(50)
		}
	}
	// Wait (at most 30s) until every participant receives audio and video
	// from every other publisher.
	settle := time.Now().Add(30 * time.Second)
	for {
		ready := true
		for r := range parts {
			for _, p := range parts[r] {
				want := publishersHeard(parts[r], p)
				got := 0
				for _, t := range p.c.Tracks() {
					if t.Packets > 0 {
						got++
					}
				}
				if got < 2*want {
					ready = false
				}
			}
		}
		if ready || time.Now().After(settle) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var joins []time.Duration
	for _, p := range all {
		first := time.Time{}
		for _, t := range p.c.Tracks() {
			if t.Packets > 0 && (first.IsZero() || t.First.Before(first)) {
				first = t.First
			}
		}
		if !first.IsZero() {
			joins = append(joins, first.Sub(p.joined))
		}
	}
	slices.Sort(joins)
	if len(joins) > 0 {
		res.JoinP50ms = float64(joins[len(joins)/2]) / float64(time.Millisecond)
		res.JoinP90ms = float64(joins[(len(joins)*9+9)/10-1]) / float64(time.Millisecond) // nearest rank
		res.JoinMaxms = float64(joins[len(joins)-1]) / float64(time.Millisecond)
	}

	count := func() int64 {
		var n int64
		for _, p := range all {
			for _, t := range p.c.Tracks() {
				n += int64(t.Packets)
			}
		}
		return n
	}
	fmt.Fprintf(progress, "%d participants in %d conferences receiving; measuring for %s\n", len(all), o.rooms, o.duration)
	before := count()
	cpu0, _ := processCPU(o.pid)
	start := time.Now()
	select {
	case <-time.After(o.duration):
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	res.Received = count() - before
	cpu1, cpuErr := processCPU(o.pid)
	res.DurationSecond = elapsed.Seconds()
	res.ForwardedPerSec = float64(res.Received) / elapsed.Seconds()
	// Expected: each receiver gets audio + one video layer from every other publisher.
	var streams int64
	for r := range parts {
		for _, p := range parts[r] {
			streams += int64(2 * publishersHeard(parts[r], p))
		}
	}
	res.Expected = int64(float64(streams*packetsPerSecondPerKind) * elapsed.Seconds())
	if res.Expected > 0 {
		res.LossPercent = max(0, 100*(1-float64(res.Received)/float64(res.Expected)))
	}
	var jit []time.Duration
	for _, p := range all {
		for _, t := range p.c.Tracks() {
			jit = append(jit, t.Jitter)
		}
	}
	slices.Sort(jit)
	if len(jit) > 0 {
		res.JitterP50ms = float64(jit[len(jit)/2]) / float64(time.Millisecond)
		res.JitterMaxms = float64(jit[len(jit)-1]) / float64(time.Millisecond)
	}
	if cpuErr == nil && res.Received > 0 {
		res.ServerCPUSecs = cpu1 - cpu0
		res.CPUPerPacketUS = res.ServerCPUSecs * 1e6 / float64(res.Received)
		if res.ServerCPUSecs > 0 {
			res.PacketsPerCoreSe = float64(res.Received) / res.ServerCPUSecs
		}
	}
	return res, nil
}

// joinMedia joins participant n to conference r of the target server.
func joinMedia(ctx context.Context, o mediaOptions, r, n int, publisher bool) (mediaClient, error) {
	name := "p" + strconv.Itoa(n)
	if o.target == "livekit" {
		return joinLiveKit(ctx, o, "bench"+strconv.Itoa(r), name, publisher)
	}
	x, err := xmppclient.Dial(ctx, xmppclient.Options{
		Addr: o.addr, Domain: o.domain, Username: o.userPrefix + strconv.Itoa(n), Password: o.password,
		Resource: "media", Timeout: 30 * time.Second,
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+n%200))},
	})
	if err != nil {
		return nil, err
	}
	c, err := confclient.Join(ctx, x, confclient.Options{
		Room: fmt.Sprintf("bench%d@conference.%s", r, o.domain), Name: name,
		Audio: publisher, Video: publisher, Simulcast: o.simulcast && publisher, Loopback: o.loopback,
		Timeout: 30 * time.Second,
	})
	if err != nil {
		x.Close()
		return nil, err
	}
	return poosmsClient{Client: c, x: x}, nil
}

// publishersHeard is how many publishers in room p receives: all but itself.
func publishersHeard(room []*participant, p *participant) int {
	n := 0
	for _, q := range room {
		if q.publisher && q != p {
			n++
		}
	}
	return n
}
