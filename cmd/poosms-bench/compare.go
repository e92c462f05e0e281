package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// The servers bench/compare.sh knows, in the order of the table's
// columns: poosms's own first, then the chat peers; coturn is a TURN
// peer only.
var (
	compareMine      = []string{"poosms", "poosms-mysql"}
	compareChatPeers = []string{"prosody", "ejabberd", "ejabberd-mysql"}
	compareTURN      = []string{"poosms", "coturn"}
)

// compareParams describes the run for the table's header and the JSON
// output; bench/compare.sh passes its own settings.
type compareParams struct {
	Clients         int       `json:"clients"`
	Rates           []float64 `json:"rates"`
	Duration        string    `json:"duration"`
	Drain           string    `json:"drain"`
	Mechanism       string    `json:"mechanism"`
	PeerArchive     bool      `json:"peer_archive"`
	Pinned          bool      `json:"pinned"`
	TMPFS           bool      `json:"tmpfs"`
	TURNAllocations int       `json:"turn_allocations"`
	TURNRate        int       `json:"turn_rate"`
	TURNSize        int       `json:"turn_size"`
	TURNDuration    string    `json:"turn_duration"`
	servers         []string
}

// compareServer is what one server's runs left in the results folder.
type compareServer struct {
	Chat  *chatResult  `json:"chat,omitempty"`
	TURN  *turnResult  `json:"turn,omitempty"`
	Media *mediaResult `json:"media,omitempty"`
	// IdleKiB is RSS after the last login minus RSS before the first,
	// per logged-in session.
	IdleKiB *float64 `json:"rss_per_idle_session_kib,omitempty"`
	// LoadAvg is the 1, 5 and 15 minute load average before the chat
	// run, then after it.
	LoadAvg []string `json:"load_average_before_after,omitempty"`
	// DBCPU is the database server's CPU seconds over the chat run
	// (the MySQL runs only).
	DBCPU *float64 `json:"database_server_cpu_seconds,omitempty"`
}

// compareRatio is poosms/peer for one pair; nil where either figure is
// missing or the peer's is 0.
type compareRatio struct {
	Mine    string             `json:"poosms"`
	Peer    string             `json:"peer"`
	Ceiling *float64           `json:"ceiling"`
	Steps   []compareStepRatio `json:"steps,omitempty"`
}

type compareStepRatio struct {
	Rate      float64  `json:"offered_messages_per_second"`
	P99       *float64 `json:"latency_p99"`
	CPUPerMsg *float64 `json:"server_cpu_per_message"`
}

type compareReport struct {
	Params        compareParams             `json:"params"`
	LoadAvgAtEnd  string                    `json:"load_average_at_end,omitempty"`
	Servers       map[string]*compareServer `json:"servers"`
	Ratios        []compareRatio            `json:"ratios"`
	chatColumns   []string
	turnColumns   []string
	mediaColumns  []string
	comparedRates []float64
}

func compareCommand(args []string, stdout, stderr io.Writer) int {
	var (
		p       compareParams
		dir     string
		servers string
		asJSON  bool
	)
	flags := pflag.NewFlagSet("compare", pflag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVar(&dir, "results", "", "folder of the runs' results: NAME-chat.json, NAME-turn.json, NAME-media.json (poosms-bench --json), NAME-baseline, NAME-loadavg, NAME-dbcpu")
	flags.StringVar(&servers, "servers", strings.Join(append(append(slices.Clone(compareMine), compareChatPeers...), "coturn"), ","), "servers of the run, comma-separated")
	flags.Float64SliceVar(&p.Rates, "rates", nil, "offered chat rates in msgs/s, comma-separated (default: every rate of any server's steps)")
	flags.IntVar(&p.Clients, "clients", 0, "chat clients per server (header only)")
	flags.StringVar(&p.Duration, "duration", "", "each chat step's duration (header only)")
	flags.StringVar(&p.Drain, "drain", "", "longest wait for a step's deliveries (header only)")
	flags.StringVar(&p.Mechanism, "mechanism", "", "SASL mechanism (header only)")
	flags.BoolVar(&p.PeerArchive, "peer-archive", false, "the peers archived into SQL (header only)")
	flags.BoolVar(&p.Pinned, "pinned", false, "servers on CPU 1, the load tool on CPU 0 (header only)")
	flags.BoolVar(&p.TMPFS, "tmpfs", false, "data folders on tmpfs (header only)")
	flags.IntVar(&p.TURNAllocations, "turn-allocations", 0, "TURN allocations (header only)")
	flags.IntVar(&p.TURNRate, "turn-rate", 0, "TURN packets/s per allocation (header only)")
	flags.IntVar(&p.TURNSize, "turn-size", 0, "TURN payload bytes (header only)")
	flags.StringVar(&p.TURNDuration, "turn-duration", "", "TURN load duration (header only)")
	flags.BoolVar(&asJSON, "json", false, "print the parameters, every server's results and the ratios as JSON")
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if dir == "" {
		fmt.Fprintln(stderr, "poosms-bench compare: --results is required (the folder bench/compare.sh writes its runs' results to)")
		return 2
	}
	p.servers = splitList(servers)
	for _, r := range p.Rates {
		if r <= 0 {
			fmt.Fprintf(stderr, "poosms-bench compare: --rates: %v is not a positive rate in msgs/s\n", r)
			return 2
		}
	}
	rep, err := collectCompare(dir, p, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench compare: %v\n", err)
		return 1
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		rep.LoadAvgAtEnd = strings.Join(firstFields(string(la), 3), " ")
	}
	if asJSON {
		return printJSON(stdout, rep)
	}
	if err := rep.writeTable(stdout); err != nil {
		fmt.Fprintf(stderr, "poosms-bench compare: %v\n", err)
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func firstFields(s string, n int) []string {
	f := strings.Fields(s)
	return f[:min(n, len(f))]
}

// collectCompare reads every wanted server's results from dir. A missing
// or empty result is a server that did not run or failed before printing;
// one that does not decode (a run cut short while printing) is named on
// warn. Either way its column is left out, as the script goes on past a
// failed server. A file that is there but cannot be read is an error.
func collectCompare(dir string, p compareParams, warn io.Writer) (*compareReport, error) {
	rep := &compareReport{Params: p, Servers: map[string]*compareServer{}}
	readJSONResult := func(path string, v any) (bool, error) {
		ok, err := readJSONFile(path, v)
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		if errors.As(err, &syn) || errors.As(err, &typ) {
			fmt.Fprintf(warn, "poosms-bench compare: %v; left out\n", err)
			return false, nil
		}
		return ok, err
	}
	want := func(s string) bool { return slices.Contains(p.servers, s) }
	for _, s := range append(slices.Clone(compareMine), compareChatPeers...) {
		if !want(s) {
			continue
		}
		var chat chatResult
		ok, err := readJSONResult(filepath.Join(dir, s+"-chat.json"), &chat)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		srv := rep.server(s)
		srv.Chat = &chat
		rep.chatColumns = append(rep.chatColumns, s)
		if base, err := readNumbers(filepath.Join(dir, s+"-baseline")); err != nil {
			return nil, err
		} else if len(base) > 0 && chat.ServerRSSIdle > 0 {
			if n := int64(chat.Clients) - chat.LoginErrors; n > 0 {
				kib := (float64(chat.ServerRSSIdle) - base[0]) / float64(n) / 1024
				srv.IdleKiB = &kib
			}
		}
		if la, err := os.ReadFile(filepath.Join(dir, s+"-loadavg")); err == nil {
			srv.LoadAvg = strings.Fields(string(la))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read load average: %w", err)
		}
		// NAME-dbcpu: the database server's CPU seconds before the run,
		// then after it.
		if db, err := readNumbers(filepath.Join(dir, s+"-dbcpu")); err != nil {
			return nil, err
		} else if len(db) >= 2 {
			d := db[1] - db[0]
			srv.DBCPU = &d
		}
	}
	if want("coturn") {
		for _, s := range compareTURN {
			if !want(s) {
				continue
			}
			var turn turnResult
			ok, err := readJSONResult(filepath.Join(dir, s+"-turn.json"), &turn)
			if err != nil {
				return nil, err
			}
			if ok {
				rep.server(s).TURN = &turn
				rep.turnColumns = append(rep.turnColumns, s)
			}
		}
	}
	for _, s := range p.servers {
		var media mediaResult
		ok, err := readJSONResult(filepath.Join(dir, s+"-media.json"), &media)
		if err != nil {
			return nil, err
		}
		if ok {
			rep.server(s).Media = &media
			rep.mediaColumns = append(rep.mediaColumns, s)
		}
	}
	rep.comparedRates = slices.Clone(p.Rates)
	if len(rep.comparedRates) == 0 {
		for _, s := range rep.chatColumns {
			for _, st := range rep.Servers[s].Chat.Steps {
				if !slices.Contains(rep.comparedRates, st.OfferedRate) {
					rep.comparedRates = append(rep.comparedRates, st.OfferedRate)
				}
			}
		}
		slices.Sort(rep.comparedRates)
	}
	rep.Ratios = rep.ratios()
	return rep, nil
}

func (r *compareReport) server(name string) *compareServer {
	if s, ok := r.Servers[name]; ok {
		return s
	}
	s := &compareServer{}
	r.Servers[name] = s
	return s
}

// readJSONFile decodes one poosms-bench --json output; ok is false when
// the file does not exist or is empty (a run that failed before printing).
func readJSONFile(path string, v any) (ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read result: %w", err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", path, err)
	}
	return true, nil
}

// readNumbers reads a file of whitespace-separated numbers; none when it
// does not exist.
func readNumbers(path string) ([]float64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	var out []float64
	for _, f := range strings.Fields(string(b)) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", path, f)
		}
		out = append(out, v)
	}
	return out, nil
}

func (r *compareReport) step(server string, rate float64) *chatStep {
	srv := r.Servers[server]
	if srv == nil || srv.Chat == nil {
		return nil
	}
	for i := range srv.Chat.Steps {
		if srv.Chat.Steps[i].OfferedRate == rate {
			return &srv.Chat.Steps[i]
		}
	}
	return nil
}

// ratio is a/b, nil when b is 0 (a figure the run did not give).
func ratio(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	v := a / b
	return &v
}

// ratioGiven is ratio for figures left out of the JSON when not measured
// (omitempty): nil when either is 0.
func ratioGiven(a, b float64) *float64 {
	if a == 0 {
		return nil
	}
	return ratio(a, b)
}

// ratios pairs each of poosms's chat columns with each peer's.
func (r *compareReport) ratios() []compareRatio {
	out := []compareRatio{}
	for _, mine := range r.chatColumns {
		if !slices.Contains(compareMine, mine) {
			continue
		}
		for _, peer := range r.chatColumns {
			if !slices.Contains(compareChatPeers, peer) {
				continue
			}
			a, b := r.Servers[mine].Chat, r.Servers[peer].Chat
			cr := compareRatio{Mine: mine, Peer: peer, Ceiling: ratio(a.Ceiling, b.Ceiling)}
			for _, rate := range r.comparedRates {
				sa, sb := r.step(mine, rate), r.step(peer, rate)
				if sa == nil || sb == nil {
					continue
				}
				cr.Steps = append(cr.Steps, compareStepRatio{
					Rate:      rate,
					P99:       ratio(sa.LatencyP99ms, sb.LatencyP99ms),
					CPUPerMsg: ratioGiven(sa.CPUPer1000, sb.CPUPer1000),
				})
			}
			out = append(out, cr)
		}
	}
	return out
}

// num formats v with thousands separators; digits < 0 picks 0 decimals
// from 100 up and 2 below.
func num(v float64, digits int) string {
	if digits < 0 {
		digits = 2
		if math.Abs(v) >= 100 {
			digits = 0
		}
	}
	s := strconv.FormatFloat(math.Abs(v), 'f', digits, 64)
	whole, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	if v < 0 && strings.Trim(s, "0.") != "" {
		b.WriteByte('-')
	}
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}

// numOr is num, or "-" for a figure the run did not give.
func numOr(v *float64, digits int) string {
	if v == nil {
		return "-"
	}
	return num(*v, digits)
}

func ratioText(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64)
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// writeTable prints the header, the chat table, the ratios and the TURN
// and media tables, in Markdown.
func (r *compareReport) writeTable(w io.Writer) error {
	var b strings.Builder
	p := r.Params
	fmt.Fprintf(&b, "Chat, %d clients, %s, each step %s (drain up to %s); peers archiving: %s; pinned: %s; data on %s\n",
		p.Clients, p.Mechanism, p.Duration, p.Drain,
		yesNo(p.PeerArchive, "yes (SQL)", "no (default stores)"),
		yesNo(p.Pinned, "server on CPU 1, load tool on CPU 0", "no"),
		yesNo(p.TMPFS, "tmpfs", "disk"))
	cols := r.chatColumns
	for _, s := range cols {
		srv := r.Servers[s]
		before, after := "-", "-"
		if la := srv.LoadAvg; len(la) >= 3 {
			before = strings.Join(la[:3], " ")
			if len(la) >= 6 {
				after = strings.Join(la[3:6], " ")
			}
		}
		db := ""
		if srv.DBCPU != nil {
			db = fmt.Sprintf("; MariaDB CPU %.2f s over the run (not pinned, shared)", *srv.DBCPU)
		}
		fmt.Fprintf(&b, "  %s: load average %s before, %s after%s\n", s, before, after, db)
	}
	if len(cols) > 0 {
		b.WriteString("\n| figure | " + strings.Join(cols, " | ") + " |\n")
		b.WriteString(strings.Repeat("|---", len(cols)+1) + "|\n")
		row := func(label string, cell func(s string, c *chatResult) string) {
			cells := make([]string, len(cols))
			for i, s := range cols {
				cells[i] = cell(s, r.Servers[s].Chat)
			}
			fmt.Fprintf(&b, "| %s | %s |\n", label, strings.Join(cells, " | "))
		}
		row("ceiling msgs/s (delivered in full, p99 ≤ 1 s)", func(_ string, c *chatResult) string { return num(c.Ceiling, 0) })
		row("logins/s", func(_ string, c *chatResult) string { return num(c.LoginsPerSec, 0) })
		row("failed logins", func(_ string, c *chatResult) string { return strconv.FormatInt(c.LoginErrors, 10) })
		row("RSS per idle session KiB", func(s string, _ *chatResult) string { return numOr(r.Servers[s].IdleKiB, 1) })
		row("peak RSS MiB", func(_ string, c *chatResult) string {
			if c.ServerPeakRSS == 0 {
				return "-"
			}
			return num(float64(c.ServerPeakRSS)/(1<<20), 0)
		})
		row("server CPU s, logins", func(_ string, c *chatResult) string {
			if c.ServerCPULogin == 0 {
				return "-"
			}
			return num(c.ServerCPULogin, 1)
		})
		for _, rate := range r.comparedRates {
			rt := num(rate, 0)
			row(rt+" offered: delivered/s over the delivery window", func(s string, _ *chatResult) string {
				st := r.step(s, rate)
				if st == nil {
					return "not run"
				}
				c := num(st.DeliveredRate, 0)
				if st.Lost > 0 {
					c += ", " + num(float64(st.Lost), 0) + " lost"
				}
				if e := st.SendErrors + st.StanzaErrors; e > 0 {
					c += fmt.Sprintf(", %d errors", e)
				}
				if st.SentRate < 0.95*rate {
					c += ", load tool sent only " + num(st.SentRate, 0) + "/s"
				}
				return c
			})
			row(rt+": p50 / p99 / p99.9 ms", func(s string, _ *chatResult) string {
				st := r.step(s, rate)
				if st == nil {
					return "-"
				}
				return num(st.LatencyP50ms, 1) + " / " + num(st.LatencyP99ms, 1) + " / " + num(st.LatencyP999ms, 1)
			})
			row(rt+": server CPU s per 1,000 delivered", func(s string, _ *chatResult) string {
				st := r.step(s, rate)
				if st == nil || st.CPUPer1000 == 0 {
					return "-"
				}
				return num(st.CPUPer1000, 3)
			})
		}
	}
	if len(r.Ratios) > 0 {
		b.WriteString("\n")
	}
	for _, cr := range r.Ratios {
		parts := []string{"ceiling " + ratioText(cr.Ceiling)}
		for _, st := range cr.Steps {
			parts = append(parts, fmt.Sprintf("at %s: p99 %s, CPU/msg %s", num(st.Rate, 0), ratioText(st.P99), ratioText(st.CPUPerMsg)))
		}
		fmt.Fprintf(&b, "%s/%s: %s\n", cr.Mine, cr.Peer, strings.Join(parts, "; "))
	}
	if len(r.turnColumns) > 0 {
		fmt.Fprintf(&b, "\n| TURN, %d allocations × %d pkts/s × %d B for %s | %s |\n",
			p.TURNAllocations, p.TURNRate, p.TURNSize, p.TURNDuration, strings.Join(r.turnColumns, " | "))
		b.WriteString(strings.Repeat("|---", len(r.turnColumns)+1) + "|\n")
		for _, f := range []struct {
			label string
			v     func(t *turnResult) float64
		}{
			{"relayed pkts/s", func(t *turnResult) float64 { return t.RelayedPerSec }},
			{"loss %", func(t *turnResult) float64 { return t.LossPercent }},
			{"server CPU µs per relayed pkt", func(t *turnResult) float64 { return t.CPUPerPacketUS }},
		} {
			cells := make([]string, len(r.turnColumns))
			for i, s := range r.turnColumns {
				cells[i] = num(f.v(r.Servers[s].TURN), -1)
			}
			fmt.Fprintf(&b, "| %s | %s |\n", f.label, strings.Join(cells, " | "))
		}
	}
	if len(r.mediaColumns) > 0 {
		b.WriteString("\n| media | " + strings.Join(r.mediaColumns, " | ") + " |\n")
		b.WriteString(strings.Repeat("|---", len(r.mediaColumns)+1) + "|\n")
		for _, f := range []struct {
			label string
			v     func(m *mediaResult) string
		}{
			{"rooms × participants", func(m *mediaResult) string { return fmt.Sprintf("%d × %d", m.Rooms, m.Participants) }},
			{"forwarded pkts/s", func(m *mediaResult) string { return num(m.ForwardedPerSec, -1) }},
			{"loss %", func(m *mediaResult) string { return num(m.LossPercent, -1) }},
			{"jitter p50 / max ms", func(m *mediaResult) string { return num(m.JitterP50ms, 1) + " / " + num(m.JitterMaxms, 1) }},
			{"server CPU µs per forwarded pkt", func(m *mediaResult) string { return num(m.CPUPerPacketUS, -1) }},
		} {
			cells := make([]string, len(r.mediaColumns))
			for i, s := range r.mediaColumns {
				cells[i] = f.v(r.Servers[s].Media)
			}
			fmt.Fprintf(&b, "| %s | %s |\n", f.label, strings.Join(cells, " | "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
