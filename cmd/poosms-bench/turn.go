package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	pionturn "github.com/pion/turn/v4"
	"github.com/spf13/pflag"

	"poosms.org/poosms/turn"
)

type turnOptions struct {
	server, realm      string
	user, password     string
	secret             string
	allocations        int
	rate               int // packets per second per allocation
	size               int
	duration, progress time.Duration
	pid                int
	json               bool
}

// turnResult: each packet goes client → relay → peer, and the peer's echo
// peer → relay → client, so every packet is relayed twice.
type turnResult struct {
	Allocations    int     `json:"allocations"`
	AllocateErrors int     `json:"allocate_errors"`
	Sent           int64   `json:"sent"`
	AtPeer         int64   `json:"received_at_peer"`
	Echoed         int64   `json:"echoed_back"`
	RelayedPerSec  float64 `json:"relayed_packets_per_second"`
	LossPercent    float64 `json:"loss_percent"`
	ServerCPUSecs  float64 `json:"server_cpu_seconds,omitempty"`
	CPUPerPacketUS float64 `json:"server_cpu_microseconds_per_relayed_packet,omitempty"`
	DurationSecond float64 `json:"duration_seconds"`
}

func turnCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o turnOptions
	fs := pflag.NewFlagSet("turn", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", "127.0.0.1:3478", "TURN server (UDP)")
	fs.StringVar(&o.realm, "realm", "localhost", "TURN realm")
	fs.StringVar(&o.user, "user", "bench", "user name (with --secret: the USER part of a REST credential)")
	fs.StringVar(&o.password, "password", "", "password (long-term credentials)")
	fs.StringVar(&o.secret, "secret", "", "shared secret: make TURN REST credentials instead of --password")
	fs.IntVar(&o.allocations, "allocations", 10, "allocations, each with its own client socket")
	fs.IntVar(&o.rate, "rate", 500, "packets per second per allocation")
	fs.IntVar(&o.size, "size", 200, "payload bytes per packet (at least 16)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "progress line interval on standard error (0: none)")
	fs.IntVar(&o.pid, "pid", 0, "server process id: report its CPU seconds")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if o.size < 16 || o.allocations < 1 || o.rate < 1 {
		fmt.Fprintln(stderr, "poosms-bench: --size must be at least 16, --allocations and --rate at least 1")
		return 2
	}
	res, err := runTURN(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "poosms-bench: %v\n", err)
		return 1
	}
	if o.json {
		return printJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "allocations\t%d (%d failed)\n", res.Allocations, res.AllocateErrors)
	fmt.Fprintf(tw, "sent / at peer / echoed back\t%d / %d / %d\n", res.Sent, res.AtPeer, res.Echoed)
	fmt.Fprintf(tw, "relayed packets/s\t%.0f\n", res.RelayedPerSec)
	fmt.Fprintf(tw, "loss\t%.2f%%\n", res.LossPercent)
	if res.ServerCPUSecs > 0 {
		fmt.Fprintf(tw, "server CPU seconds\t%.2f (%.1f µs per relayed packet)\n", res.ServerCPUSecs, res.CPUPerPacketUS)
	}
	tw.Flush()
	return 0
}

func runTURN(ctx context.Context, o turnOptions, progress io.Writer) (*turnResult, error) {
	user, pass := o.user, o.password
	if o.secret != "" {
		c := turn.NewCredentials([]byte(o.secret), o.user, time.Hour, time.Now())
		user, pass = c.Username, c.Password
	}
	// The peer echoes every packet back to where it came from (the relay).
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer peer.Close()
	var atPeer, echoed, sent atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			atPeer.Add(1)
			_, _ = peer.WriteTo(buf[:n], from)
		}
	}()

	res := &turnResult{}
	type alloc struct {
		client *pionturn.Client
		conn   net.PacketConn
		relay  net.PacketConn
	}
	var allocs []alloc
	defer func() {
		for _, a := range allocs {
			a.relay.Close()
			a.client.Close()
			a.conn.Close()
		}
	}()
	for i := 0; i < o.allocations; i++ {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		c, err := pionturn.NewClient(&pionturn.ClientConfig{
			STUNServerAddr: o.server, TURNServerAddr: o.server, Conn: conn,
			Username: user, Password: pass, Realm: o.realm,
		})
		if err == nil {
			err = c.Listen()
		}
		var relay net.PacketConn
		if err == nil {
			relay, err = c.Allocate()
		}
		if err != nil {
			res.AllocateErrors++
			if c != nil {
				c.Close()
			}
			conn.Close()
			if res.AllocateErrors == 1 {
				fmt.Fprintf(progress, "allocate: %v\n", err)
			}
			continue
		}
		allocs = append(allocs, alloc{c, conn, relay})
	}
	res.Allocations = len(allocs)
	if len(allocs) == 0 {
		return nil, errors.New("no allocation succeeded")
	}
	cpu0, _ := processCPU(o.pid)
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for _, a := range allocs {
		wg.Add(2)
		go func(relay net.PacketConn) { // echoes coming back
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				_ = relay.SetReadDeadline(time.Now().Add(time.Second))
				if _, _, err := relay.ReadFrom(buf); err != nil {
					if runCtx.Err() != nil {
						return
					}
					continue
				}
				echoed.Add(1)
			}
		}(a.relay)
		go func(relay net.PacketConn) { // paced sender
			defer wg.Done()
			buf := make([]byte, o.size)
			interval := time.Second / time.Duration(o.rate)
			next := time.Now()
			for seq := uint64(0); ; seq++ {
				next = next.Add(interval)
				if d := time.Until(next); d > 0 {
					select {
					case <-runCtx.Done():
						return
					case <-time.After(d):
					}
				} else if runCtx.Err() != nil {
					return
				}
				binary.BigEndian.PutUint64(buf, seq)
				if _, err := relay.WriteTo(buf, peer.LocalAddr()); err == nil {
					sent.Add(1)
				}
			}
		}(a.relay)
	}
	if o.progress > 0 {
		go func() {
			t := time.NewTicker(o.progress)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
					fmt.Fprintf(progress, "%s sent %d at peer %d echoed %d\n", time.Now().Format("15:04:05"), sent.Load(), atPeer.Load(), echoed.Load())
				}
			}
		}()
	}
	<-runCtx.Done()
	elapsed := time.Since(start)
	wg.Wait()
	res.Sent, res.AtPeer, res.Echoed = sent.Load(), atPeer.Load(), echoed.Load()
	res.DurationSecond = elapsed.Seconds()
	res.RelayedPerSec = float64(res.AtPeer+res.Echoed) / elapsed.Seconds()
	if res.Sent > 0 {
		res.LossPercent = 100 * (1 - float64(res.Echoed)/float64(res.Sent))
	}
	if cpu1, err := processCPU(o.pid); err == nil && res.AtPeer+res.Echoed > 0 {
		res.ServerCPUSecs = cpu1 - cpu0
		res.CPUPerPacketUS = res.ServerCPUSecs * 1e6 / float64(res.AtPeer+res.Echoed)
	}
	return res, nil
}
