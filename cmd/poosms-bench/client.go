package main

import (
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"poosms.org/poosms/internal/xmppclient"
)

// clientFlags are the flags a load command's clients connect with: where
// the server is and which accounts they log in as (PREFIX0, PREFIX1, …,
// all with one password).
type clientFlags struct {
	addr, domain, userPrefix, password, mechanism string
}

// register declares --addr, --domain, --user-prefix, --password and
// --mechanism on fs. addrUsage and prefixUsage say what --addr and
// --user-prefix mean to the command.
func (c *clientFlags) register(fs *pflag.FlagSet, addrUsage, prefixUsage string) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:5222", addrUsage)
	fs.StringVar(&c.domain, "domain", "localhost", "XMPP domain")
	fs.StringVar(&c.userPrefix, "user-prefix", "bench", prefixUsage)
	fs.StringVar(&c.password, "password", "bench-password", "password of every bench account")
	fs.StringVar(&c.mechanism, "mechanism", "SCRAM-SHA-256", "SASL mechanism")
}

// username is the localpart of account i.
func (c *clientFlags) username(i int) string { return c.userPrefix + strconv.Itoa(i) }

// login is how account i logs in at addr (one of --addr's) with resource,
// from the loopback source src.
func (c *clientFlags) login(addr string, i int, resource string, src netip.Addr) xmppclient.Options {
	return xmppclient.Options{
		Addr: addr, Domain: c.domain, Username: c.username(i), Password: c.password,
		Resource: resource, Mechanism: c.mechanism, Timeout: 30 * time.Second,
		LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
	}
}

// serverSampler measures the server process given with --pid while a run
// lasts: its CPU seconds since the sampler started, its RSS now, and its
// peak RSS. Without a pid (or a /proc to read) every reading fails, and
// what the caller reports stays zero.
type serverSampler struct {
	pid    int
	cpu0   float64
	cpuErr error

	peak atomic.Int64
	stop chan struct{} // nil until watchPeak
	done chan struct{}
}

// sampleServer starts measuring process pid: CPU time counts from now.
func sampleServer(pid int) *serverSampler {
	s := &serverSampler{pid: pid}
	s.cpu0, s.cpuErr = processCPU(pid)
	return s
}

// cpu returns the CPU seconds the server used since sampleServer, and
// whether they could be read.
func (s *serverSampler) cpu() (float64, bool) {
	if s.cpuErr != nil {
		return 0, false
	}
	now, err := processCPU(s.pid)
	if err != nil {
		return 0, false
	}
	return now - s.cpu0, true
}

// rss returns the server's resident set size now.
func (s *serverSampler) rss() (int64, error) { return processRSS(s.pid) }

// watchPeak samples the server's RSS every 50 ms until peakRSS.
func (s *serverSampler) watchPeak() {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, err := processRSS(s.pid); err == nil && rss > s.peak.Load() {
				s.peak.Store(rss)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// peakRSS stops the sampling watchPeak started and returns the highest
// RSS seen, or the kernel's high-water mark (VmHWM) when it is higher; 0
// when neither could be read.
func (s *serverSampler) peakRSS() int64 {
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
	if hwm, err := processPeakRSS(s.pid); err == nil && hwm > s.peak.Load() {
		return hwm
	}
	return s.peak.Load()
}
