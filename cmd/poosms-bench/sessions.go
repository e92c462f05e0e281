package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// The sessions command: how many authenticated sessions a server (or a
// cluster) holds, how fast they log in, and what each costs it.
//
// One process may hold only as many sockets as its open-file limit
// allows (20,000 on the development machine), so the clients are spread
// over worker processes, each this same program run as "sessions-worker",
// each holding at most --per-process sessions. The parent starts them,
// reads their progress (JSON lines on their standard output), tells them
// to stop logging in when one meets a limit ("stop" on their standard
// input), and ends them by closing their standard input.

type sessionsOptions struct {
	clientFlags
	sessions, first, perProcess, concurrency int
	sources                                  string
	directTLS                                bool
	maxFailures                              int
	timeout, hold, progress                  time.Duration
	pid                                      int
	json                                     bool
}

// sessionsResult is what a run measured; --json prints it as is.
type sessionsResult struct {
	Requested    int    `json:"sessions_requested"`
	Processes    int    `json:"processes"`
	Sources      int    `json:"source_addresses"`
	LoggedIn     int    `json:"logged_in"`
	Failed       int    `json:"failed_logins"`
	StopReason   string `json:"stop_reason"` // "all logged in", or the limit met
	FirstFailure string `json:"first_failure,omitempty"`
	// RampSeconds runs from the first login attempt to the last success;
	// LoginsPerSec is LoggedIn over it, and LoginsPerSecSeries the rate
	// in each --progress interval of the ramp.
	RampSeconds        float64   `json:"ramp_seconds"`
	LoginsPerSec       float64   `json:"logins_per_second"`
	LoginsPerSecSeries []float64 `json:"logins_per_second_series"`
	// AliveAtEnd counts the sessions still open after --hold (none closed
	// by the server).
	AliveAtEnd      int     `json:"alive_at_end"`
	HoldSeconds     float64 `json:"hold_seconds"`
	ServerRSSBefore int64   `json:"server_rss_before_bytes,omitempty"`
	ServerRSSAfter  int64   `json:"server_rss_after_bytes,omitempty"`
	RSSPerSession   float64 `json:"server_rss_per_session_bytes,omitempty"` // (after − before) / logged in
	ServerCPUSecs   float64 `json:"server_cpu_seconds,omitempty"`
	ServerOpenFiles int     `json:"server_open_files,omitempty"` // at the end of the ramp
	ServerFileLimit int64   `json:"server_file_limit,omitempty"`
}

func sessionsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o sessionsOptions
	fs := pflag.NewFlagSet("sessions", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, "server address (STARTTLS port, or the TLS port with --direct-tls); several, comma-separated, spread the sessions over the nodes of a cluster (session i on address i mod n)",
		"accounts are PREFIX0, PREFIX1, … (they must exist)")
	fs.IntVar(&o.sessions, "sessions", 1000, "sessions to log in and hold")
	fs.IntVar(&o.first, "first", 0, "the first account number: sessions use PREFIX<first> … PREFIX<first+sessions-1>")
	fs.BoolVar(&o.directTLS, "direct-tls", false, "TLS from the first byte (XEP-0368) instead of STARTTLS")
	fs.IntVar(&o.perProcess, "per-process", 18000, "sessions per worker process: each session is one open file, and a process here may hold 20,000")
	fs.IntVar(&o.concurrency, "login-concurrency", 50, "logins in flight at once, in each worker process")
	fs.StringVar(&o.sources, "sources", "127.0.0.1-127.0.0.1", "loopback source address range FIRST-LAST (session i uses address i mod n); each address gives about 28,000 ports")
	fs.IntVar(&o.maxFailures, "max-failures", 0, "failed logins tolerated before the ramp stops (0: stop at the first)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "one login's time limit")
	fs.DurationVar(&o.hold, "hold", 10*time.Second, "how long to hold the sessions after the ramp before measuring the server and closing them")
	fs.DurationVar(&o.progress, "progress", 2*time.Second, "progress interval: a line on standard error, and one point of the logins/s series")
	fs.IntVar(&o.pid, "pid", 0, "server process id: report its RSS per session, CPU seconds and open files")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	srcs, err := sourceRange(o.sources)
	if err == nil && (o.sessions < 1 || o.perProcess < 1 || o.concurrency < 1 || o.progress <= 0) {
		err = errors.New("want --sessions, --per-process and --login-concurrency ≥ 1, --progress > 0")
	}
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 2
	}
	if ports := localPorts(); ports > 0 && (o.sessions+len(srcs)-1)/len(srcs) > ports {
		fmt.Fprintf(stderr, "poosms-bench: %d sessions over %d source addresses is more than the %d local ports each has: widen --sources\n", o.sessions, len(srcs), ports)
		return 2
	}
	res, err := runSessions(ctx, o, len(srcs), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 1
	}
	if o.json {
		printJSON(stdout, res)
	} else {
		printSessions(stdout, res)
	}
	if res.Failed > 0 || res.LoggedIn < res.Requested {
		return 1
	}
	return 0
}

// workerEvent is one line a worker writes.
type workerEvent struct {
	Kind     string `json:"kind"` // "progress", "ramp" (ramp over), "closed" (sessions closed, exiting)
	LoggedIn int    `json:"logged_in"`
	Failed   int    `json:"failed"`
	Failure  string `json:"failure,omitempty"` // the first failed login's error
	Limit    string `json:"limit,omitempty"`   // what the failure says was hit
	LastOK   int64  `json:"last_ok_unix_nano,omitempty"`
	Alive    int    `json:"alive,omitempty"`
	Stopped  bool   `json:"stopped,omitempty"` // told to stop before logging in all its sessions
	worker   int
}

// worker is one running worker process, owned by runSessions.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed once its output is read to the end
}

func runSessions(ctx context.Context, o sessionsOptions, nsrc int, log io.Writer) (*sessionsResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to start workers: %w", err)
	}
	res := &sessionsResult{Requested: o.sessions, Sources: nsrc, Processes: (o.sessions + o.perProcess - 1) / o.perProcess}
	server := sampleServer(o.pid)
	res.ServerRSSBefore, _ = server.rss()

	// The workers' standard error, and the parent's lines, go to log
	// through one lock.
	log = &lockedWriter{w: log}
	events := make(chan workerEvent, 64)
	workers := make([]*worker, 0, res.Processes)
	defer func() {
		// Closing standard input ends a worker: it closes its sessions
		// and exits. Wait for each.
		for _, w := range workers {
			w.stdin.Close()
		}
		for _, w := range workers {
			<-w.done
			_ = w.cmd.Wait()
		}
	}()
	start := time.Now()
	for k := range res.Processes {
		first := o.first + k*o.perProcess
		count := min(o.perProcess, o.first+o.sessions-first)
		args := []string{"sessions-worker", "--addr", o.addr, "--domain", o.domain, "--user-prefix", o.userPrefix,
			"--password", o.password, "--mechanism", o.mechanism, "--first", strconv.Itoa(first), "--sessions", strconv.Itoa(count),
			"--sources", o.sources, "--login-concurrency", strconv.Itoa(o.concurrency), "--timeout", o.timeout.String(),
			"--progress", (o.progress / 2).String(), "--direct-tls=" + strconv.FormatBool(o.directTLS)}
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), workerEnv+"=1")
		cmd.Stderr = log
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start worker %d: %w", k, err)
		}
		w := &worker{cmd: cmd, stdin: stdin, done: make(chan struct{})}
		workers = append(workers, w)
		go func() {
			defer close(w.done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var ev workerEvent
				if json.Unmarshal(sc.Bytes(), &ev) != nil {
					continue
				}
				ev.worker = k
				select {
				case events <- ev:
				case <-ctx.Done():
				}
			}
			_, _ = io.Copy(io.Discard, stdout)
			// Its output ended: it exited, whatever it said before.
			select {
			case events <- workerEvent{Kind: "exit", worker: k}:
			case <-ctx.Done():
			}
		}()
	}

	// The ramp: until every worker reports its ramp over.
	progress := make([]workerEvent, len(workers))
	rampDone := make([]bool, len(workers))
	exited := make([]bool, len(workers)) // its output ended
	stopped := false
	stop := func(why string) {
		if stopped {
			return
		}
		stopped = true
		if res.StopReason == "" {
			res.StopReason = why
		}
		for _, w := range workers {
			_, _ = io.WriteString(w.stdin, "stop\n")
		}
	}
	total := func() (in, failed int) {
		for _, p := range progress {
			in += p.LoggedIn
			failed += p.Failed
		}
		return
	}
	tick := time.NewTicker(o.progress)
	defer tick.Stop()
	lastIn, lastT := 0, start
	var lastOK int64
	for remaining := len(workers); remaining > 0; {
		select {
		case <-ctx.Done():
			stop("interrupted")
			return nil, ctx.Err()
		case ev := <-events:
			if ev.Failure != "" && res.FirstFailure == "" {
				res.FirstFailure = ev.Failure
			}
			if ev.LastOK > lastOK {
				lastOK = ev.LastOK
			}
			if _, failed := total(); failed > o.maxFailures {
				stop(ev.Limit)
			}
			if ev.Kind == "exit" {
				if !rampDone[ev.worker] {
					stop(fmt.Sprintf("worker %d exited during the ramp (its error is above)", ev.worker))
					rampDone[ev.worker] = true
					remaining--
				}
				exited[ev.worker] = true
				continue
			}
			progress[ev.worker] = ev
			if ev.Kind == "ramp" && !rampDone[ev.worker] {
				rampDone[ev.worker] = true
				remaining--
			}
		case now := <-tick.C:
			in, failed := total()
			rate := float64(in-lastIn) / now.Sub(lastT).Seconds()
			res.LoginsPerSecSeries = append(res.LoginsPerSecSeries, round1(rate))
			lastIn, lastT = in, now
			fmt.Fprintf(log, "%s logged in %d, failed %d, %.0f logins/s\n", now.Format("15:04:05"), in, failed, rate)
		}
	}
	res.LoggedIn, res.Failed = total()
	if res.StopReason == "" {
		res.StopReason = "all logged in"
		if res.LoggedIn < res.Requested {
			res.StopReason = "workers ended early"
		}
	}
	if lastOK > 0 {
		res.RampSeconds = time.Duration(lastOK - start.UnixNano()).Seconds()
		res.LoginsPerSec = round1(float64(res.LoggedIn) / res.RampSeconds)
	}
	res.ServerOpenFiles, _ = processOpenFiles(o.pid)
	res.ServerFileLimit, _ = processFileLimit(o.pid)
	fmt.Fprintf(log, "ramp over: %d logged in, %d failed in %.1fs (%.0f logins/s): %s\n", res.LoggedIn, res.Failed, res.RampSeconds, res.LoginsPerSec, res.StopReason)
	if res.FirstFailure != "" {
		fmt.Fprintf(log, "first failed login: %s\n", res.FirstFailure)
	}

	// Hold, measure, close.
	holdStart := time.Now()
	select {
	case <-time.After(o.hold):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res.HoldSeconds = time.Since(holdStart).Seconds()
	if rss, err := server.rss(); err == nil {
		res.ServerRSSAfter = rss
		if res.LoggedIn > 0 {
			res.RSSPerSession = round1(float64(rss-res.ServerRSSBefore) / float64(res.LoggedIn))
		}
	}
	if cpu, ok := server.cpu(); ok {
		res.ServerCPUSecs = round1(cpu)
	}
	for _, w := range workers {
		w.stdin.Close()
	}
	// A worker says "closed" (with the sessions still alive) before it
	// exits; one that exited earlier took its sessions with it.
	for remaining := len(workers) - count(exited); remaining > 0; {
		select {
		case ev := <-events:
			switch {
			case ev.Kind == "closed":
				res.AliveAtEnd += ev.Alive
			case ev.Kind == "exit" && !exited[ev.worker]:
				exited[ev.worker] = true
				remaining--
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Minute):
			return nil, errors.New("workers did not close their sessions within 2 minutes")
		}
	}
	return res, nil
}

func count(bs []bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// localPorts is the size of the kernel's ephemeral port range: the
// connections one source address can open to one server port (0 when
// unknown).
func localPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0
	}
	return hi - lo + 1
}

// processOpenFiles counts pid's open files.
func processOpenFiles(pid int) (int, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// processFileLimit is pid's soft open-file limit.
func processFileLimit(pid int) (int64, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no open-file limit in /proc limits")
}

func printSessions(w io.Writer, r *sessionsResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("sessions logged in", fmt.Sprintf("%d of %d (%d failed), %d processes, %d source addresses", r.LoggedIn, r.Requested, r.Failed, r.Processes, r.Sources))
	row("stopped", r.StopReason)
	if r.FirstFailure != "" {
		row("first failed login", r.FirstFailure)
	}
	row("logins/s over the ramp", fmt.Sprintf("%.0f (%.1fs)", r.LoginsPerSec, r.RampSeconds))
	series := make([]string, len(r.LoginsPerSecSeries))
	for i, v := range r.LoginsPerSecSeries {
		series[i] = strconv.FormatFloat(v, 'f', 0, 64)
	}
	row("logins/s by interval", strings.Join(series, " "))
	row("alive after hold", fmt.Sprintf("%d (%.0fs)", r.AliveAtEnd, r.HoldSeconds))
	if r.ServerRSSAfter > 0 {
		row("server RSS before / after", fmt.Sprintf("%.1f / %.1f MiB", float64(r.ServerRSSBefore)/(1<<20), float64(r.ServerRSSAfter)/(1<<20)))
		row("server RSS per session", fmt.Sprintf("%.1f KiB", r.RSSPerSession/1024))
		row("server CPU seconds", fmt.Sprintf("%.1f", r.ServerCPUSecs))
		row("server open files / limit", fmt.Sprintf("%d / %d", r.ServerOpenFiles, r.ServerFileLimit))
	}
	tw.Flush()
}

// lockedWriter lets several processes' output share one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// eventWriter serialises a worker's event lines.
type eventWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *eventWriter) send(ev workerEvent) {
	b, _ := json.Marshal(ev)
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(append(b, '\n'))
}
