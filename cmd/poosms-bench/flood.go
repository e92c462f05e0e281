package main

import (
	"context"
	"errors"
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

// floodOptions: sinks log in and never read again; senders send them
// large stanzas, directly and through a room they are all in; chatters
// talk normally meanwhile, one to one and in a room of their own.
type floodOptions struct {
	clientFlags
	sinks, senders, chatters int
	sinkSM                   float64 // share of sinks with stream management (XEP-0198) and resumption
	room                     string  // localpart of the flooded room; "" for direct messages only
	shape                    string
	stanzaBytes              int
	messages                 int     // attack stanzas in all; 0: until the duration ends
	attackRate               float64 // attack stanzas per second per sender; 0: as fast as the server reads
	rate                     float64 // chatters' messages per second, all together
	duration, settle         time.Duration
	maxRSS                   int64 // MiB; 0: no bound
	sources                  string
	pid                      int
	json                     bool
}

// floodResult is what a run measured.
type floodResult struct {
	Sinks           int     `json:"sinks"`
	SinksSM         int     `json:"sinks_with_stream_management"`
	Senders         int     `json:"senders"`
	Chatters        int     `json:"chatters"`
	Shape           string  `json:"shape"`
	StanzaBytes     int     `json:"stanza_bytes"`
	AttackSent      int64   `json:"attack_stanzas_sent"`
	AttackBytes     int64   `json:"attack_bytes_sent"`
	AttackRefused   int64   `json:"attack_streams_ended_by_server"`
	ChatSent        int64   `json:"chat_sent"`
	ChatExpected    int64   `json:"chat_expected_deliveries"`
	ChatDelivered   int64   `json:"chat_delivered"`
	ChatLost        int64   `json:"chat_lost"`
	ChatErrors      int64   `json:"chat_errors"`
	LatencyP50ms    float64 `json:"chat_latency_p50_ms"`
	LatencyP99ms    float64 `json:"chat_latency_p99_ms"`
	LatencyMaxms    float64 `json:"chat_latency_max_ms"`
	RSSBefore       int64   `json:"server_rss_before_bytes,omitempty"`
	RSSPeak         int64   `json:"server_rss_peak_bytes,omitempty"`
	RSSAfter        int64   `json:"server_rss_after_bytes,omitempty"`
	RSSBound        int64   `json:"server_rss_bound_bytes,omitempty"`
	AttackSeconds   float64 `json:"attack_seconds"`
	ServerCPUSecs   float64 `json:"server_cpu_seconds,omitempty"`
	ServerSurvived  bool    `json:"server_serves_after"`
	SinksDisconnect int     `json:"sinks_disconnected"`
}

func floodCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o floodOptions
	fs := pflag.NewFlagSet("flood", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, "server address (STARTTLS port)",
		"accounts are PREFIX0, PREFIX1, … (sinks first, then senders, then chatters; they must exist)")
	fs.IntVar(&o.sinks, "sinks", 100, "sessions that log in, join the room and never read again")
	fs.Float64Var(&o.sinkSM, "sink-sm", 0.5, "share of the sinks that enable stream management with resumption first")
	fs.IntVar(&o.senders, "senders", 4, "sessions sending large stanzas to the sinks and the room")
	fs.IntVar(&o.chatters, "chatters", 10, "sessions chatting normally meanwhile, one to one and in the room ROOM-chat")
	fs.StringVar(&o.room, "room", "flood", "room (on conference.DOMAIN) the sinks and senders join; empty: direct messages only")
	fs.StringVar(&o.shape, "shape", "text", "attack stanzas: text (one large body), elements (mostly empty child elements), mixed (as many elements as the default limits allow, with text)")
	fs.IntVar(&o.stanzaBytes, "stanza-bytes", 240000, "size of an attack stanza")
	fs.IntVar(&o.messages, "messages", 0, "attack stanzas in all (0: send until --duration ends)")
	fs.Float64Var(&o.attackRate, "attack-rate", 0, "attack stanzas per second per sender (0: as fast as the server reads them)")
	fs.Float64Var(&o.rate, "rate", 20, "chatters' messages per second, all together")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long the attack and the chat last")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "wait after the attack before measuring RSS again")
	fs.Int64Var(&o.maxRSS, "max-rss", 0, "fail (exit 1) if the server's RSS went over this many MiB (needs --pid)")
	fs.StringVar(&o.sources, "sources", "127.0.0.1-127.0.0.1", "loopback source address range FIRST-LAST for the client sockets")
	fs.IntVar(&o.pid, "pid", 0, "server process id: report its RSS and CPU")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	srcs, err := sourceRange(o.sources)
	if err == nil && (o.sinks < 1 || o.senders < 1 || o.chatters == 1 || o.stanzaBytes < 100) {
		err = errors.New("want --sinks ≥ 1, --senders ≥ 1, --chatters 0 or ≥ 2, --stanza-bytes ≥ 100")
	}
	if err == nil && !slices.Contains([]string{"text", "elements", "mixed"}, o.shape) {
		err = fmt.Errorf("--shape %q: want text, elements or mixed", o.shape)
	}
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 2
	}
	res, err := runFlood(ctx, o, srcs, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 1
	}
	if o.json {
		printJSON(stdout, res)
	} else {
		printFlood(stdout, res)
	}
	if res.ChatLost > 0 || !res.ServerSurvived || (res.RSSBound > 0 && res.RSSPeak > res.RSSBound) {
		return 1
	}
	return 0
}

// floodPayload is the inside of an attack message of about size bytes.
func floodPayload(shape string, size int) string {
	const ns = "<x xmlns='urn:poosms:flood'>"
	size -= 150 // the message around it
	switch shape {
	case "elements":
		return "<body>flood</body>" + ns + strings.Repeat("<a/>", max(0, size-60)/4) + "</x>"
	case "mixed":
		// The costliest tree the default limits let through.
		n := min(stanza.DefaultMaxElements-4, max(1, size/20))
		pad := strings.Repeat("x", max(0, (size-80)/n-len("<a b=''></a>"))/2)
		return "<body>flood</body>" + ns + strings.Repeat("<a b='"+pad+"'>"+pad+"</a>", n) + "</x>"
	}
	return "<body>" + strings.Repeat("x", max(0, size)) + "</body>"
}

type floodRun struct {
	o       floodOptions
	srcs    []netip.Addr
	log     io.Writer
	mucJID  string // the flooded room, room@conference.DOMAIN
	chatJID string // the chatters' room

	attackSent, attackBytes, attackRefused atomic.Int64
	chatSent, chatExpected, chatDelivered  atomic.Int64
	chatErrors                             atomic.Int64
	mu                                     sync.Mutex
	lat                                    []time.Duration
}

func (f *floodRun) login(ctx context.Context, i int, res string) (*xmppclient.Client, error) {
	c, err := xmppclient.Dial(ctx, f.o.login(f.o.addr, i, res, f.srcs[i%len(f.srcs)]))
	if err != nil {
		return nil, fmt.Errorf("log in %s%d: %w", f.o.userPrefix, i, err)
	}
	return c, c.Send(stanza.New(stanza.NSClient, "presence"))
}

// join enters room (a room JID; "": none) as nick.
func join(c *xmppclient.Client, room, nick string) error {
	if room == "" {
		return nil
	}
	return c.SendRaw("<presence to='" + room + "/" + nick + "'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>")
}

// joined enters room as nick and waits until c, which reads the
// answers, is in.
func joined(c *xmppclient.Client, room, nick string) error {
	if room == "" {
		return nil
	}
	if err := join(c, room, nick); err != nil {
		return err
	}
	el, err := c.Expect(30*time.Second, func(e *stanza.Element) bool { return e.Local == "presence" && e.From() == room+"/"+nick })
	if err == nil && el.Type() == "error" {
		err = fmt.Errorf("refused: %s", el)
	}
	if err != nil {
		return fmt.Errorf("join %s: %w", room, err)
	}
	return nil
}

// createRoom makes room an instant room owned by c, which reads the
// answers, with no limit on its occupants.
func createRoom(c *xmppclient.Client, room, nick string) error {
	if err := joined(c, room, nick); err != nil || room == "" {
		return err
	}
	if err := c.SendRaw("<iq type='set' id='cfg' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>" +
		"<field var='muc#roomconfig_maxusers'><value>none</value></field></x></query></iq>"); err != nil {
		return err
	}
	el, err := c.Expect(30*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == "cfg" })
	if err == nil && el.Type() != "result" {
		err = fmt.Errorf("configure %s: %s", room, el)
	}
	return err
}

func runFlood(ctx context.Context, o floodOptions, srcs []netip.Addr, progress io.Writer) (*floodResult, error) {
	f := &floodRun{o: o, srcs: srcs, log: progress}
	if o.room != "" {
		f.mucJID = o.room + "@conference." + o.domain
		f.chatJID = o.room + "-chat@conference." + o.domain
	}
	res := &floodResult{Sinks: o.sinks, Senders: o.senders, Chatters: o.chatters, Shape: o.shape, StanzaBytes: o.stanzaBytes}
	if o.maxRSS > 0 {
		res.RSSBound = o.maxRSS << 20
	}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()

	// Chatters first: the first creates their room.
	chatters := make([]*chatter, o.chatters)
	for i := range chatters {
		c, err := f.login(ctx, o.sinks+o.senders+i, "chat")
		if err != nil {
			return nil, err
		}
		closers = append(closers, c)
		nick := "chatter" + strconv.Itoa(i)
		if i == 0 {
			err = createRoom(c, f.chatJID, nick)
		} else {
			err = join(c, f.chatJID, nick)
		}
		if err != nil {
			return nil, err
		}
		chatters[i] = &chatter{c: c, jid: c.JID.String(), nick: nick, done: make(chan struct{})}
	}
	// Sinks: log in, maybe enable stream management, join, never read.
	// The first creates the flooded room.
	sinks := make([]*xmppclient.Client, o.sinks)
	for i := range sinks {
		c, err := f.login(ctx, i, "sink")
		if err != nil {
			return nil, err
		}
		closers = append(closers, c)
		if i == 0 {
			if err := createRoom(c, f.mucJID, "sink0"); err != nil {
				return nil, err
			}
		}
		if float64(i) < o.sinkSM*float64(o.sinks) {
			res.SinksSM++
			if err := c.SendRaw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>"); err != nil {
				return nil, err
			}
			if _, err := c.Expect(30*time.Second, func(e *stanza.Element) bool { return e.Local == "enabled" || e.Local == "failed" }); err != nil {
				return nil, fmt.Errorf("sink %d: enable stream management: %w", i, err)
			}
		}
		if i > 0 {
			if err := join(c, f.mucJID, "sink"+strconv.Itoa(i)); err != nil {
				return nil, err
			}
		}
		sinks[i] = c
	}
	fmt.Fprintf(progress, "%d sinks (%d with stream management), %d chatters logged in\n", o.sinks, res.SinksSM, o.chatters)
	for _, c := range chatters {
		go f.readChat(c)
	}
	// Let the joins settle, then measure the server at rest.
	time.Sleep(time.Second)
	server := sampleServer(o.pid)
	res.RSSBefore, _ = server.rss()
	server.watchPeak()

	attackCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var budget atomic.Int64
	budget.Store(int64(o.messages))
	for i := range o.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.attack(attackCtx, o.sinks+i, sinks, &budget)
		}()
	}
	if len(chatters) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.chat(attackCtx, chatters)
		}()
	}
	wg.Wait()
	res.AttackSeconds = time.Since(start).Seconds()
	fmt.Fprintf(progress, "attack over after %.1fs: %d stanzas, %.1f MiB sent\n", res.AttackSeconds, f.attackSent.Load(), float64(f.attackBytes.Load())/(1<<20))

	// Chat messages in flight arrive (or not) within a few seconds.
	for last, deadline := int64(-1), time.Now().Add(30*time.Second); f.chatDelivered.Load() != last && time.Now().Before(deadline); {
		last = f.chatDelivered.Load()
		time.Sleep(time.Second)
	}
	// The server still serves: a new login and a ping round trip.
	if c, err := f.login(ctx, o.sinks, "after"); err == nil {
		closers = append(closers, c)
		res.ServerSurvived = c.SendRaw("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>") == nil
		if _, err := c.Expect(30*time.Second, func(e *stanza.Element) bool { return e.ID() == "alive" }); err != nil {
			res.ServerSurvived = false
		}
	}
	res.SinksDisconnect = countClosed(sinks)
	time.Sleep(o.settle)
	res.RSSAfter, _ = server.rss()
	res.RSSPeak = server.peakRSS()
	if cpu, ok := server.cpu(); ok {
		res.ServerCPUSecs = cpu
	}
	res.AttackSent, res.AttackBytes, res.AttackRefused = f.attackSent.Load(), f.attackBytes.Load(), f.attackRefused.Load()
	res.ChatSent, res.ChatExpected, res.ChatDelivered, res.ChatErrors = f.chatSent.Load(), f.chatExpected.Load(), f.chatDelivered.Load(), f.chatErrors.Load()
	res.ChatLost = res.ChatExpected - res.ChatDelivered
	f.mu.Lock()
	slices.Sort(f.lat)
	res.LatencyP50ms, res.LatencyP99ms = pct(f.lat, 0.5), pct(f.lat, 0.99)
	if len(f.lat) > 0 {
		res.LatencyMaxms = float64(f.lat[len(f.lat)-1]) / float64(time.Millisecond)
	}
	f.mu.Unlock()
	return res, nil
}

// attack logs in as account i and sends attack stanzas, to the room and
// to each sink in turn, until ctx ends or the budget is spent. A stream
// the server ends is counted and logged in again.
func (f *floodRun) attack(ctx context.Context, i int, sinks []*xmppclient.Client, budget *atomic.Int64) {
	payload := floodPayload(f.o.shape, f.o.stanzaBytes)
	var interval time.Duration
	if f.o.attackRate > 0 {
		interval = time.Duration(float64(time.Second) / f.o.attackRate)
	}
	for turn := i; ctx.Err() == nil; {
		c, err := f.login(ctx, i, "attack")
		if err != nil {
			return
		}
		if err := joined(c, f.mucJID, "attacker"+strconv.Itoa(i)); err != nil {
			fmt.Fprintf(f.log, "sender %d: %v\n", i, err)
			c.Close()
			return
		}
		ended := make(chan struct{})
		var closing atomic.Bool // the bench ends the stream, not the server
		// Discard what the server sends, unparsed; notice the end.
		go func() {
			defer close(ended)
			_ = c.Conn().SetReadDeadline(time.Time{})
			_, _ = io.Copy(io.Discard, c.Conn())
			if !closing.Load() && ctx.Err() == nil {
				f.attackRefused.Add(1)
			}
		}()
		for ctx.Err() == nil {
			if f.o.messages > 0 && budget.Add(-1) < 0 {
				closing.Store(true)
				c.Close()
				<-ended
				return
			}
			// Every other stanza goes to the room, which hands it to
			// every sink; the others go to each sink in turn.
			to, typ := sinks[turn/2%len(sinks)].JID.String(), "chat"
			if f.mucJID != "" && turn%2 == 1 {
				to, typ = f.mucJID, "groupchat"
			} else if f.mucJID == "" {
				to = sinks[turn%len(sinks)].JID.String()
			}
			turn++
			m := "<message to='" + to + "' type='" + typ + "'>" + payload + "</message>"
			if err := c.SendRaw(m); err != nil {
				break
			}
			f.attackSent.Add(1)
			f.attackBytes.Add(int64(len(m)))
			select {
			case <-ended:
			case <-ctx.Done():
			case <-time.After(interval):
				continue
			}
			break
		}
		c.Close()
		<-ended
	}
}

type chatter struct {
	c    *xmppclient.Client
	jid  string
	nick string
	mu   sync.Mutex // serialises sends
	done chan struct{}
}

// chat sends the chatters' messages at the total rate, one to one and to
// the room in turn, each stamped with its send time.
func (f *floodRun) chat(ctx context.Context, chatters []*chatter) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / f.o.rate))
	defer tick.Stop()
	r := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		from := chatters[r.IntN(len(chatters))]
		body := "bench " + strconv.FormatInt(time.Now().UnixNano(), 10) + " " + strconv.Itoa(seq)
		m := stanza.New(stanza.NSClient, "message").Append(stanza.New(stanza.NSClient, "body").SetText(body))
		if f.chatJID != "" && seq%2 == 1 {
			m.SetAttr("to", f.chatJID).SetAttr("type", "groupchat")
			f.chatExpected.Add(int64(len(chatters) - 1))
		} else {
			to := chatters[r.IntN(len(chatters))]
			for to == from {
				to = chatters[r.IntN(len(chatters))]
			}
			m.SetAttr("to", to.jid).SetAttr("type", "chat")
			f.chatExpected.Add(1)
		}
		from.mu.Lock()
		err := from.c.Send(m)
		from.mu.Unlock()
		if err == nil {
			f.chatSent.Add(1)
		}
	}
}

// readChat counts and times the chat messages c receives (not its own
// room messages, nor the attack).
func (f *floodRun) readChat(c *chatter) {
	defer close(c.done)
	for {
		el, err := c.c.RecvTimeout(time.Hour)
		if err != nil {
			return
		}
		if el.Local != "message" {
			continue
		}
		if el.Type() == "error" {
			f.chatErrors.Add(1)
			continue
		}
		ns, ok := strings.CutPrefix(el.ChildText("", "body"), "bench ")
		if !ok || el.From() == f.chatJID+"/"+c.nick {
			continue
		}
		sent, _ := strconv.ParseInt(strings.Fields(ns)[0], 10, 64)
		d := time.Duration(time.Now().UnixNano() - sent)
		f.chatDelivered.Add(1)
		f.mu.Lock()
		f.lat = append(f.lat, d)
		f.mu.Unlock()
	}
}

// countClosed counts the sinks whose stream the server ended: their
// socket gives EOF once what the server wrote is read (which the bench
// does only now, at the end).
func countClosed(sinks []*xmppclient.Client) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, c := range sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Conn().SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err := io.Copy(io.Discard, c.Conn())
			if err == nil || errors.Is(err, net.ErrClosed) || !isTimeout(err) {
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(n.Load())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func printFlood(w io.Writer, r *floodResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	row("sinks (with stream management)", fmt.Sprintf("%d (%d), %d disconnected by the server", r.Sinks, r.SinksSM, r.SinksDisconnect))
	row("attack", fmt.Sprintf("%d %s stanzas of %d bytes, %s in %.1fs; %d streams ended by the server", r.AttackSent, r.Shape, r.StanzaBytes, mib(r.AttackBytes), r.AttackSeconds, r.AttackRefused))
	row("chat sent / expected / delivered", fmt.Sprintf("%d / %d / %d (lost %d, errors %d)", r.ChatSent, r.ChatExpected, r.ChatDelivered, r.ChatLost, r.ChatErrors))
	row("chat latency p50 / p99 / max", fmt.Sprintf("%.1f / %.1f / %.1f ms", r.LatencyP50ms, r.LatencyP99ms, r.LatencyMaxms))
	if r.RSSBefore > 0 {
		row("server RSS before / peak / after", fmt.Sprintf("%s / %s / %s", mib(r.RSSBefore), mib(r.RSSPeak), mib(r.RSSAfter)))
		row("server CPU seconds", fmt.Sprintf("%.1f", r.ServerCPUSecs))
	}
	if r.RSSBound > 0 {
		row("RSS bound", mib(r.RSSBound))
	}
	row("server serves after", r.ServerSurvived)
	tw.Flush()
}
