package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// The abuse command replays the attacks of docs/security.md against a
// running server for a bounded time while normal clients chat, and
// reports what the normal clients lost, their latency without and with
// the attack, the server's peak memory and whether it still serves.
//
// Accounts (PREFIX0… must exist, all with one password), in order: the
// chatters, two fresh clients for the check afterwards, one account per
// XMPP attack, the sinks, and last the offline victim, who never logs in.

// abuseKinds are the attacks, in the order their accounts are numbered.
var abuseKinds = []string{"oversized", "nested", "wide", "pep", "offline", "offers", "sinks", "slowhttp", "connflood"}

// xmppAttacks are the kinds that log in with an account of their own.
var xmppAttacks = []string{"oversized", "nested", "wide", "pep", "offline", "offers", "sinks"}

type abuseOptions struct {
	clientFlags
	httpAddr, sources, floodSource   string
	kinds                            []string
	chatters                         int
	rate                             float64
	baseline, duration               time.Duration
	stanzaBytes, depth, wideElements int
	sinks, sinkStanzaBytes           int
	pepItemBytes                     int
	offlineRate                      float64
	mediaSections                    int
	slowConns, conns                 int
	pid                              int
	json                             bool
}

// attackStat is what one kind of attack did and what the server made of it.
type attackStat struct {
	Kind string `json:"kind"`
	// Sent counts stanzas, HTTP requests begun or connections opened.
	Sent int64 `json:"sent"`
	// Ended counts streams or connections the server closed: for the
	// stanza-shape attacks, that is the defence working.
	Ended int64 `json:"ended_by_server"`
	// Errors counts error replies (a limit answering), Accepted result
	// replies.
	Errors   int64 `json:"error_replies"`
	Accepted int64 `json:"accepted"`
	// Refused counts connections the server refused or closed before it
	// said anything (a per-address cap): expected, not a failure.
	Refused int64 `json:"refused"`
	// Failed counts the attacker's own failures (a login that failed for
	// another reason than a refused connection).
	Failed int64 `json:"failed"`
	// EndedAfterP50s and EndedAfterMaxS are how long the connections the
	// server ended (slowhttp, connflood) had been open, in seconds.
	EndedAfterP50s float64 `json:"ended_after_p50_seconds,omitempty"`
	EndedAfterMaxS float64 `json:"ended_after_max_seconds,omitempty"`
}

// attackCounts are an attack's counters while it runs.
type attackCounts struct {
	Kind                                         string
	sent, ended, errs, accepted, refused, failed atomic.Int64

	mu      sync.Mutex
	endedIn []float64 // seconds a connection the server ended had been open
}

// endedAfter counts a connection the server ended after d.
func (a *attackCounts) endedAfter(d time.Duration) {
	a.ended.Add(1)
	a.mu.Lock()
	a.endedIn = append(a.endedIn, d.Seconds())
	a.mu.Unlock()
}

func (a *attackCounts) snapshot() attackStat {
	s := attackStat{Kind: a.Kind, Sent: a.sent.Load(), Ended: a.ended.Load(), Errors: a.errs.Load(),
		Accepted: a.accepted.Load(), Refused: a.refused.Load(), Failed: a.failed.Load()}
	a.mu.Lock()
	in := slices.Clone(a.endedIn)
	a.mu.Unlock()
	if len(in) > 0 {
		slices.Sort(in)
		s.EndedAfterP50s, s.EndedAfterMaxS = in[len(in)/2], in[len(in)-1]
	}
	return s
}

type abuseResult struct {
	Chatters        int          `json:"chatters"`
	Rate            float64      `json:"chat_messages_per_second"`
	BaselineSeconds float64      `json:"baseline_seconds"`
	AttackSeconds   float64      `json:"attack_seconds"`
	ChatSent        int64        `json:"chat_sent"`
	ChatExpected    int64        `json:"chat_expected_deliveries"`
	ChatDelivered   int64        `json:"chat_delivered"`
	ChatLost        int64        `json:"chat_lost"`
	ChatErrors      int64        `json:"chat_errors"`
	BaselineP50ms   float64      `json:"baseline_latency_p50_ms"`
	BaselineP99ms   float64      `json:"baseline_latency_p99_ms"`
	AttackP50ms     float64      `json:"attack_latency_p50_ms"`
	AttackP99ms     float64      `json:"attack_latency_p99_ms"`
	Attacks         []attackStat `json:"attacks"`
	RSSBefore       int64        `json:"server_rss_before_bytes,omitempty"`
	RSSPeak         int64        `json:"server_rss_peak_bytes,omitempty"`
	RSSAfter        int64        `json:"server_rss_after_bytes,omitempty"`
	ServerCPUSecs   float64      `json:"server_cpu_seconds,omitempty"`
	LoadBefore      string       `json:"load_average_before,omitempty"`
	LoadAfter       string       `json:"load_average_after,omitempty"`
	ServerServes    bool         `json:"server_serves_after"`
	ServeCheck      string       `json:"serve_check,omitempty"`
}

func abuseCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o abuseOptions
	fs := pflag.NewFlagSet("abuse", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, "server address (STARTTLS port)",
		"accounts are PREFIX0, PREFIX1, …: chatters, 2 for the check afterwards, one per XMPP attack, sinks, the offline victim (they must exist)")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:5280", "server's HTTP address, for slow request bodies (empty: no slowhttp attack)")
	fs.StringSliceVar(&o.kinds, "attacks", abuseKinds, "attacks to run: "+strings.Join(abuseKinds, ","))
	fs.IntVar(&o.chatters, "chatters", 10, "normal clients chatting throughout, one to one and in a room of their own")
	fs.Float64Var(&o.rate, "rate", 20, "chatters' messages per second, all together")
	fs.DurationVar(&o.baseline, "baseline", 20*time.Second, "chat without the attack first, for the latency to compare with")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long the attack lasts")
	fs.IntVar(&o.stanzaBytes, "stanza-bytes", 1<<20, "size of an oversized stanza")
	fs.IntVar(&o.depth, "depth", 10000, "nesting depth of a deeply nested stanza")
	fs.IntVar(&o.wideElements, "wide-elements", 50000, "empty elements in a wide stanza")
	fs.IntVar(&o.sinks, "sinks", 10, "sessions that never read, sent large stanzas")
	fs.IntVar(&o.sinkStanzaBytes, "sink-stanza-bytes", 200000, "size of a stanza sent to a sink")
	fs.IntVar(&o.pepItemBytes, "pep-item-bytes", 8192, "size of a flooded PEP item")
	fs.Float64Var(&o.offlineRate, "offline-rate", 200, "messages per second to the offline victim")
	fs.IntVar(&o.mediaSections, "media-sections", 200, "media sections of a hostile conference offer")
	fs.IntVar(&o.slowConns, "slow-conns", 50, "HTTP connections sending their request body a byte a second")
	fs.IntVar(&o.conns, "conns", 500, "connections held open to the XMPP port, saying nothing after the stream header")
	fs.StringVar(&o.sources, "sources", "127.0.0.1-127.0.0.1", "loopback source address range FIRST-LAST for the client sockets")
	fs.StringVar(&o.floodSource, "flood-source", "", "loopback source address of every slowhttp and connflood connection (empty: spread over --sources), so that per-address caps meet one attacker and not the chatters")
	fs.IntVar(&o.pid, "server-pid", 0, "server process id: report its peak RSS (VmHWM) and CPU")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	srcs, err := sourceRange(o.sources)
	var flood netip.Addr
	if err == nil && o.floodSource != "" {
		if flood, err = netip.ParseAddr(o.floodSource); err == nil && !flood.IsLoopback() {
			err = fmt.Errorf("--flood-source %s: want a loopback address", flood)
		} else if err != nil {
			err = fmt.Errorf("--flood-source: %w", err)
		}
	}
	for _, k := range o.kinds {
		if err == nil && !slices.Contains(abuseKinds, k) {
			err = fmt.Errorf("--attacks: unknown attack %q; want some of %s", k, strings.Join(abuseKinds, ","))
		}
	}
	if err == nil && (o.chatters < 2 || o.rate <= 0 || o.sinks < 1 || o.duration <= 0) {
		err = errors.New("want --chatters ≥ 2, --rate > 0, --sinks ≥ 1, --duration > 0")
	}
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "accounts used: %s0 … %s%d\n", o.userPrefix, o.userPrefix, o.victim())
	res, err := runAbuse(ctx, o, srcs, flood, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 1
	}
	if o.json {
		printJSON(stdout, res)
	} else {
		printAbuse(stdout, res)
	}
	if res.ChatLost > 0 || !res.ServerServes {
		return 1
	}
	return 0
}

// Account numbers.
func (o *abuseOptions) checker(i int) int { return o.chatters + i }
func (o *abuseOptions) attacker(kind string) int {
	return o.chatters + 2 + slices.Index(xmppAttacks, kind)
}
func (o *abuseOptions) sink(i int) int { return o.chatters + 2 + len(xmppAttacks) + i }
func (o *abuseOptions) victim() int    { return o.sink(o.sinks) }

type abuseRun struct {
	o      abuseOptions
	f      *floodRun // the chatters
	srcs   []netip.Addr
	flood  netip.Addr // source of the connection attacks; invalid: srcs
	log    io.Writer
	victim string               // bare JID
	sinks  []*xmppclient.Client // logged in, never reading
}

func runAbuse(ctx context.Context, o abuseOptions, srcs []netip.Addr, flood netip.Addr, progress io.Writer) (*abuseResult, error) {
	f := &floodRun{o: floodOptions{clientFlags: o.clientFlags, rate: o.rate}, srcs: srcs, log: progress}
	f.chatJID = fmt.Sprintf("abuse-chat-%x@conference.%s", time.Now().UnixNano(), o.domain)
	a := &abuseRun{o: o, f: f, srcs: srcs, flood: flood, log: progress, victim: o.userPrefix + strconv.Itoa(o.victim()) + "@" + o.domain}
	res := &abuseResult{Chatters: o.chatters, Rate: o.rate, LoadBefore: loadAverage()}

	chatters := make([]*chatter, o.chatters)
	for i := range chatters {
		c, err := f.login(ctx, i, "chat")
		if err != nil {
			return nil, err
		}
		defer c.Close()
		nick := "chatter" + strconv.Itoa(i)
		if i == 0 {
			err = createRoom(c, f.chatJID, nick)
		} else {
			err = joined(c, f.chatJID, nick)
		}
		if err != nil {
			return nil, err
		}
		chatters[i] = &chatter{c: c, jid: c.JID.String(), nick: nick, done: make(chan struct{})}
		go f.readChat(chatters[i])
	}
	if slices.Contains(o.kinds, "sinks") {
		defer func() {
			for _, c := range a.sinks {
				c.Close()
			}
		}()
		if err := a.logInSinks(ctx); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(progress, "%d chatters and %d sinks logged in; %s of chat without the attack\n", o.chatters, len(a.sinks), o.baseline)
	server := sampleServer(o.pid)
	res.RSSBefore, _ = server.rss()
	server.watchPeak()

	start := time.Now()
	if o.baseline > 0 {
		bctx, cancel := context.WithTimeout(ctx, o.baseline)
		f.chat(bctx, chatters)
		cancel()
	}
	res.BaselineSeconds = time.Since(start).Seconds()
	a.settleChat(ctx)
	f.mu.Lock()
	n0 := len(f.lat)
	base := slices.Clone(f.lat)
	f.mu.Unlock()
	slices.Sort(base)
	res.BaselineP50ms, res.BaselineP99ms = pct(base, 0.5), pct(base, 0.99)

	fmt.Fprintf(progress, "attack: %s for %s\n", strings.Join(o.kinds, ", "), o.duration)
	actx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	var counts []*attackCounts
	for _, kind := range o.kinds {
		st := &attackCounts{Kind: kind}
		counts = append(counts, st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.attack(actx, kind, st)
		}()
	}
	start = time.Now()
	f.chat(actx, chatters)
	wg.Wait()
	res.AttackSeconds = time.Since(start).Seconds()
	a.settleChat(ctx)

	res.ServerServes, res.ServeCheck = a.serves(ctx)
	res.RSSAfter, _ = server.rss()
	res.RSSPeak = server.peakRSS()
	if cpu, ok := server.cpu(); ok {
		res.ServerCPUSecs = cpu
	}
	res.LoadAfter = loadAverage()
	for _, st := range counts {
		res.Attacks = append(res.Attacks, st.snapshot())
	}
	res.ChatSent, res.ChatExpected, res.ChatDelivered, res.ChatErrors = f.chatSent.Load(), f.chatExpected.Load(), f.chatDelivered.Load(), f.chatErrors.Load()
	res.ChatLost = res.ChatExpected - res.ChatDelivered
	f.mu.Lock()
	during := slices.Clone(f.lat[n0:])
	f.mu.Unlock()
	slices.Sort(during)
	res.AttackP50ms, res.AttackP99ms = pct(during, 0.5), pct(during, 0.99)
	return res, nil
}

// settleChat waits until every chat message sent has arrived, or until
// no more arrive for 5 s (bounded at 60 s).
func (a *abuseRun) settleChat(ctx context.Context) {
	f := a.f
	deadline := time.Now().Add(60 * time.Second)
	last, since := int64(-1), time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		d := f.chatDelivered.Load()
		if d >= f.chatExpected.Load() {
			return
		}
		if d != last {
			last, since = d, time.Now()
		} else if time.Since(since) > 5*time.Second {
			return
		}
		<-tick.C
	}
}

// serves checks that the server still serves: two fresh logins, one
// sends the other a message, which arrives.
func (a *abuseRun) serves(ctx context.Context) (bool, string) {
	from, err := a.f.login(ctx, a.o.checker(0), "check")
	if err != nil {
		return false, err.Error()
	}
	defer from.Close()
	to, err := a.f.login(ctx, a.o.checker(1), "check")
	if err != nil {
		return false, err.Error()
	}
	defer to.Close()
	body := "still there? " + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := from.Send(stanza.New(stanza.NSClient, "message").SetAttr("to", to.JID.String()).SetAttr("type", "chat").
		Append(stanza.New(stanza.NSClient, "body").SetText(body))); err != nil {
		return false, err.Error()
	}
	if _, err := to.Expect(30*time.Second, func(e *stanza.Element) bool { return e.ChildText("", "body") == body }); err != nil {
		return false, "message after the attack: " + err.Error()
	}
	return true, "fresh login and message delivered"
}

func (a *abuseRun) attack(ctx context.Context, kind string, st *attackCounts) {
	switch kind {
	case "oversized":
		body := "<body>" + strings.Repeat("x", a.o.stanzaBytes) + "</body>"
		a.shapeAttack(ctx, kind, st, func(to string) string { return "<message to='" + to + "' type='chat'>" + body + "</message>" })
	case "nested":
		inner := strings.Repeat("<a>", a.o.depth) + strings.Repeat("</a>", a.o.depth)
		a.shapeAttack(ctx, kind, st, func(to string) string { return "<message to='" + to + "' type='chat'>" + inner + "</message>" })
	case "wide":
		inner := "<body>wide</body>" + strings.Repeat("<a/>", a.o.wideElements)
		a.shapeAttack(ctx, kind, st, func(to string) string { return "<message to='" + to + "' type='chat'>" + inner + "</message>" })
	case "pep":
		a.pepFlood(ctx, st)
	case "offline":
		a.offlineFlood(ctx, st)
	case "offers":
		a.hostileOffers(ctx, st)
	case "sinks":
		a.neverRead(ctx, st)
	case "slowhttp":
		a.slowHTTP(ctx, st)
	case "connflood":
		a.connFlood(ctx, st)
	}
}

// login logs in account i for an attack, counting a refused connection
// as refused and any other failure as failed; after a failure it waits a
// little before the caller tries again.
func (a *abuseRun) login(ctx context.Context, i int, st *attackCounts) *xmppclient.Client {
	c, err := xmppclient.Dial(ctx, a.o.login(a.o.addr, i, "abuse", a.srcs[i%len(a.srcs)]))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if refusedErr(err) {
			st.refused.Add(1)
		} else {
			st.failed.Add(1)
			fmt.Fprintf(a.log, "%s: log in: %v\n", st.Kind, err)
		}
		pause(ctx, 500*time.Millisecond)
		return nil
	}
	return c
}

// refusedErr reports whether err is the server refusing or dropping a
// connection before the stream got going, as a connection cap does.
func refusedErr(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE)
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ended waits up to d for the server to end c's stream, reading and
// discarding what it sends; it reports whether it did.
func ended(c *xmppclient.Client, d time.Duration) bool {
	_ = c.Conn().SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.Conn())
	return err == nil || !isTimeout(err)
}

// shapeAttack logs in and sends one stanza the limits must refuse
// (oversized, deeply nested, too many elements), then waits for the
// server to end the stream; again and again.
func (a *abuseRun) shapeAttack(ctx context.Context, kind string, st *attackCounts, msg func(to string) string) {
	for ctx.Err() == nil {
		c := a.login(ctx, a.o.attacker(kind), st)
		if c == nil {
			continue
		}
		err := c.SendRaw(msg(a.victim))
		st.sent.Add(1)
		if err != nil || ended(c, 10*time.Second) {
			// A write that fails is the server having closed already.
			st.ended.Add(1)
		} else {
			st.accepted.Add(1)
		}
		c.Close()
	}
}

// session runs one logged-in attack session: send is called until it
// fails or ctx ends, while the server's replies are read and counted
// (iq results as accepted, errors as error replies); send may wait for
// the next reply with answered. A stream the server ends is counted and
// logged in again.
func (a *abuseRun) session(ctx context.Context, kind string, st *attackCounts, setup func(c *xmppclient.Client) error,
	send func(c *xmppclient.Client, n int, answered func()) error) {
	n := 0
	for ctx.Err() == nil {
		c := a.login(ctx, a.o.attacker(kind), st)
		if c == nil {
			continue
		}
		if setup != nil {
			if err := setup(c); err != nil {
				fmt.Fprintf(a.log, "%s: %v\n", kind, err)
				c.Close()
				pause(ctx, time.Second)
				continue
			}
		}
		done := make(chan struct{})
		replies := make(chan struct{}, 1)
		var closing atomic.Bool
		go func() {
			defer close(done)
			for {
				el, err := c.RecvTimeout(time.Hour)
				if err != nil {
					if !closing.Load() {
						st.ended.Add(1)
					}
					return
				}
				switch {
				case el.Type() == "error":
					st.errs.Add(1)
				case el.Local == "iq" && el.Type() == "result":
					st.accepted.Add(1)
				default:
					continue
				}
				select {
				case replies <- struct{}{}:
				default:
				}
			}
		}()
		// answered waits (up to 10 s) for the next reply.
		answered := func() {
			t := time.NewTimer(10 * time.Second)
			defer t.Stop()
			select {
			case <-replies:
			case <-done:
			case <-ctx.Done():
			case <-t.C:
			}
		}
		for ctx.Err() == nil {
			if err := send(c, n, answered); err != nil {
				break
			}
			n++
			st.sent.Add(1)
			select {
			case <-done:
			default:
				continue
			}
			break
		}
		closing.Store(ctx.Err() != nil)
		c.Close()
		<-done
	}
}

// pepFlood publishes large items to ever new PEP nodes and item ids,
// one at a time (waiting for each answer keeps it to what one client
// can do).
func (a *abuseRun) pepFlood(ctx context.Context, st *attackCounts) {
	item := strings.Repeat("p", a.o.pepItemBytes)
	a.session(ctx, "pep", st, nil, func(c *xmppclient.Client, n int, answered func()) error {
		err := c.SendRaw(fmt.Sprintf("<iq type='set' id='pep%d'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:poosms:abuse:%d'>"+
			"<item id='i%d'><x xmlns='urn:poosms:abuse'>%s</x></item></publish></pubsub></iq>", n, n%1000, n, item))
		if err == nil {
			answered()
		}
		return err
	})
}

// offlineFlood sends messages to an account that is offline, at a
// steady rate.
func (a *abuseRun) offlineFlood(ctx context.Context, st *attackCounts) {
	every := time.Duration(float64(time.Second) / a.o.offlineRate)
	body := strings.Repeat("o", 1000)
	a.session(ctx, "offline", st, nil, func(c *xmppclient.Client, n int, _ func()) error {
		pause(ctx, every)
		return c.SendRaw(fmt.Sprintf("<message to='%s' type='chat' id='o%d'><body>%d %s</body></message>", a.victim, n, n, body))
	})
}

// hostileOffers enters a room of its own, joins its conference and sends
// offers with far too many media sections, one at a time.
func (a *abuseRun) hostileOffers(ctx context.Context, st *attackCounts) {
	room := fmt.Sprintf("abuse-call-%x@conference.%s", time.Now().UnixNano(), a.o.domain)
	sdp := hostileSDP(a.o.mediaSections)
	setup := func(c *xmppclient.Client) error {
		if err := createRoom(c, room, "caller"); err != nil {
			return err
		}
		if err := c.SendRaw("<iq type='set' id='call' to='" + room + "'><join xmlns='urn:poosms:conference:0'/></iq>"); err != nil {
			return err
		}
		el, err := c.Expect(30*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == "call" })
		if err == nil && el.Type() != "result" {
			err = fmt.Errorf("join the conference: %s", el)
		}
		return err
	}
	a.session(ctx, "offers", st, setup, func(c *xmppclient.Client, n int, answered func()) error {
		err := c.SendRaw(fmt.Sprintf("<iq type='set' id='offer%d' to='%s'><offer xmlns='urn:poosms:conference:0'>%s</offer></iq>", n, room, sdp))
		if err == nil {
			answered()
		}
		return err
	})
}

// hostileSDP is an offer with n audio media sections.
func hostileSDP(n int) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE")
	for i := range n {
		fmt.Fprintf(&b, " %d", i)
	}
	b.WriteString("\r\na=msid-semantic: WMS\r\n")
	fp := strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	for i := range n {
		fmt.Fprintf(&b, "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"+
			"a=ice-ufrag:abuse\r\na=ice-pwd:abuseabuseabuseabuseabuse\r\na=fingerprint:sha-256 %s\r\na=setup:actpass\r\n"+
			"a=mid:%d\r\na=sendrecv\r\na=msid:s%d t%d\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=ssrc:%d cname:abuse\r\n", fp, i, i, i, 1000+i)
	}
	return b.String()
}

// logInSinks logs in the sessions that will never read, with stream
// management and resumption enabled, before the clock starts.
func (a *abuseRun) logInSinks(ctx context.Context) error {
	for i := range a.o.sinks {
		c, err := a.f.login(ctx, a.o.sink(i), "sink")
		if err == nil {
			err = c.SendRaw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
		}
		if err != nil {
			return fmt.Errorf("sink %d: %w", i, err)
		}
		a.sinks = append(a.sinks, c)
	}
	return nil
}

// neverRead sends the sinks, which never read, large stanzas in turn
// from one sender.
func (a *abuseRun) neverRead(ctx context.Context, st *attackCounts) {
	sinks := a.sinks
	if len(sinks) == 0 {
		return
	}
	payload := floodPayload("mixed", a.o.sinkStanzaBytes)
	a.session(ctx, "sinks", st, nil, func(c *xmppclient.Client, n int, _ func()) error {
		pause(ctx, 20*time.Millisecond)
		return c.SendRaw("<message to='" + sinks[n%len(sinks)].JID.String() + "' type='chat'>" + payload + "</message>")
	})
	st.ended.Add(int64(countClosed(sinks)))
}

// slowHTTP holds connections that send a request body a byte a second.
func (a *abuseRun) slowHTTP(ctx context.Context, st *attackCounts) {
	if a.o.httpAddr == "" {
		return
	}
	var wg sync.WaitGroup
	for i := range a.o.slowConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				a.slowRequest(ctx, i, st)
			}
		}()
	}
	wg.Wait()
}

// floodAddr is the source address of connection attack i.
func (a *abuseRun) floodAddr(i int) *net.TCPAddr {
	if a.flood.IsValid() {
		return &net.TCPAddr{IP: a.flood.AsSlice()}
	}
	return &net.TCPAddr{IP: a.srcs[i%len(a.srcs)].AsSlice()}
}

// heard reads conn until it ends and reports the first bytes the server
// sent (up to 4 KiB).
func heard(conn net.Conn) []byte {
	head := make([]byte, 0, 4096)
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		head = append(head, buf[:min(n, cap(head)-len(head))]...)
		if err != nil {
			return head
		}
	}
}

// slowRequest sends one request body a byte a second until the server
// ends the connection or ctx does. A connection answered "too many
// connections" (429), or closed without a word within a second, was
// refused by a cap; one the server closes otherwise was ended (/register
// may answer that with a 429 of its own, its rate limit, once the read
// timeout has ended the body).
func (a *abuseRun) slowRequest(ctx context.Context, i int, st *attackCounts) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: a.floodAddr(i)}
	began := time.Now()
	conn, err := d.DialContext(ctx, "tcp", a.o.httpAddr)
	if err != nil {
		if ctx.Err() == nil {
			if refusedErr(err) {
				st.refused.Add(1)
			} else {
				st.failed.Add(1)
			}
			pause(ctx, time.Second)
		}
		return
	}
	defer conn.Close()
	st.sent.Add(1)
	closed := make(chan []byte, 1) // what the server said before it closed
	go func() { closed <- heard(conn) }()
	end := func(head []byte) {
		if bytes.Contains(head, []byte("too many connections")) || (len(head) == 0 && time.Since(began) < time.Second) {
			st.refused.Add(1)
			pause(ctx, time.Second)
		} else {
			st.endedAfter(time.Since(began))
		}
	}
	_, _ = io.WriteString(conn, "POST /register HTTP/1.1\r\nHost: "+a.o.httpAddr+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\n")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			conn.Close()
			<-closed
			return
		case head := <-closed:
			end(head)
			return
		case <-tick.C:
			if _, err := conn.Write([]byte("a")); err != nil {
				// The server closed; what it said tells why.
				conn.Close()
				end(<-closed)
				return
			}
		}
	}
}

// connFlood keeps --conns connections open to the XMPP port, each having
// sent a stream header and nothing more; a connection the server ends is
// opened again (after a pause). One the server answers with a stream
// error before any stream features was refused by a cap.
func (a *abuseRun) connFlood(ctx context.Context, st *attackCounts) {
	header := "<?xml version='1.0'?><stream:stream to='" + a.o.domain + "' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
	var wg sync.WaitGroup
	for i := range a.o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pause(ctx, time.Duration(i)*2*time.Millisecond) // open them over a second or so
			for ctx.Err() == nil {
				d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: a.floodAddr(i)}
				began := time.Now()
				conn, err := d.DialContext(ctx, "tcp", a.o.addr)
				if err != nil {
					if ctx.Err() == nil {
						if refusedErr(err) {
							st.refused.Add(1)
						} else {
							st.failed.Add(1)
						}
						pause(ctx, time.Second)
					}
					continue
				}
				st.sent.Add(1)
				said := make(chan []byte, 1)
				go func() { said <- heard(conn) }()
				_, _ = io.WriteString(conn, header)
				select {
				case <-ctx.Done():
					conn.Close()
					<-said
				case head := <-said:
					conn.Close()
					if len(head) == 0 || (bytes.Contains(head, []byte("policy-violation")) && !bytes.Contains(head, []byte("features"))) {
						st.refused.Add(1)
					} else {
						st.endedAfter(time.Since(began))
					}
					pause(ctx, time.Second)
				}
			}
		}()
	}
	wg.Wait()
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func printAbuse(w io.Writer, r *abuseResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	row("chatters, rate", fmt.Sprintf("%d, %.0f msg/s; %.0fs without the attack, %.0fs with it", r.Chatters, r.Rate, r.BaselineSeconds, r.AttackSeconds))
	row("chat sent / expected / delivered", fmt.Sprintf("%d / %d / %d (lost %d, errors %d)", r.ChatSent, r.ChatExpected, r.ChatDelivered, r.ChatLost, r.ChatErrors))
	row("latency p50 / p99 without the attack", fmt.Sprintf("%.1f / %.1f ms", r.BaselineP50ms, r.BaselineP99ms))
	row("latency p50 / p99 under the attack", fmt.Sprintf("%.1f / %.1f ms", r.AttackP50ms, r.AttackP99ms))
	for _, s := range r.Attacks {
		after := ""
		if s.EndedAfterMaxS > 0 {
			after = fmt.Sprintf(" (after %.1f s median, %.1f s at most)", s.EndedAfterP50s, s.EndedAfterMaxS)
		}
		row("attack "+s.Kind, fmt.Sprintf("sent %d, ended by server %d%s, error replies %d, accepted %d, refused %d, failed %d",
			s.Sent, s.Ended, after, s.Errors, s.Accepted, s.Refused, s.Failed))
	}
	if r.RSSPeak > 0 {
		row("server RSS before / peak (VmHWM) / after", fmt.Sprintf("%s / %s / %s", mib(r.RSSBefore), mib(r.RSSPeak), mib(r.RSSAfter)))
		row("server CPU seconds", fmt.Sprintf("%.1f", r.ServerCPUSecs))
	}
	row("load average before / after", r.LoadBefore+" / "+r.LoadAfter)
	row("server serves after", fmt.Sprintf("%v (%s)", r.ServerServes, r.ServeCheck))
	tw.Flush()
}
