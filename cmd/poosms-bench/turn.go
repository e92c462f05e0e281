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

// turnSocketBuffer is the socket buffer size the load generator asks for
// (the kernel caps it at net.core.rmem_max and wmem_max), so that it
// does not drop what the server relays.
const turnSocketBuffer = 4 << 20

// turnDrain is how long the receivers keep reading after the last send.
const turnDrain = 500 * time.Millisecond

func runTURN(ctx context.Context, o turnOptions, progress io.Writer) (*turnResult, error) {
	user, pass := o.user, o.password
	if o.secret != "" {
		c := turn.NewCredentials([]byte(o.secret), o.user, time.Hour, time.Now())
		user, pass = c.Username, c.Password
	}
	// The peer echoes every packet back to where it came from (the relay).
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = peer.SetReadBuffer(turnSocketBuffer)
	_ = peer.SetWriteBuffer(turnSocketBuffer)
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	var atPeer, echoed, sent atomic.Int64
	var wg sync.WaitGroup
	var clients []*turnClient
	defer func() { // stops every reader
		peer.Close()
		for _, c := range clients {
			c.conn.Close()
		}
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			atPeer.Add(1)
			_, _ = peer.WriteToUDPAddrPort(buf[:n], from)
		}
	}()

	res := &turnResult{}
	for i := 0; i < o.allocations; i++ {
		c, err := dialTURN(o.server, user, pass)
		if err == nil {
			if err = c.allocate(ctx); err == nil {
				err = c.bindChannel(ctx, turnChannel, peerAddr)
			}
			if err != nil {
				c.conn.Close()
			}
		}
		if err != nil {
			res.AllocateErrors++
			if res.AllocateErrors == 1 {
				fmt.Fprintf(progress, "allocate: %v\n", err)
			}
			continue
		}
		_ = c.conn.SetReadBuffer(turnSocketBuffer)
		_ = c.conn.SetWriteBuffer(turnSocketBuffer)
		clients = append(clients, c)
	}
	res.Allocations = len(clients)
	if len(clients) == 0 {
		return nil, errors.New("no allocation succeeded")
	}

	cpu0, _ := processCPU(o.pid)
	start := time.Now()
	sendCtx, stopSending := context.WithTimeout(ctx, o.duration)
	defer stopSending()
	for _, c := range clients {
		wg.Add(1)
		go func(conn *net.UDPConn) { // echoes coming back, until the drain ends
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				if n >= 4 && binary.BigEndian.Uint16(buf) == turnChannel {
					echoed.Add(1)
				}
			}
		}(c.conn)
	}
	if o.progress > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(o.progress)
			defer t.Stop()
			for {
				select {
				case <-sendCtx.Done():
					return
				case <-t.C:
					fmt.Fprintf(progress, "%s sent %d at peer %d echoed %d\n", time.Now().Format("15:04:05"), sent.Load(), atPeer.Load(), echoed.Load())
				}
			}
		}()
	}
	paceTURN(sendCtx, clients, o, &sent)
	sendEnd := time.Now()
	// Let what is in flight arrive, then stop the readers.
	for _, c := range clients {
		_ = c.conn.SetReadDeadline(sendEnd.Add(turnDrain))
	}
	drain := time.NewTimer(turnDrain)
	select {
	case <-drain.C:
	case <-ctx.Done():
		drain.Stop()
	}
	for _, c := range clients {
		_ = c.conn.SetReadDeadline(time.Now())
	}
	elapsed := sendEnd.Sub(start)
	cpu1, cpuErr := processCPU(o.pid)
	res.Sent, res.AtPeer, res.Echoed = sent.Load(), atPeer.Load(), echoed.Load()
	res.DurationSecond = elapsed.Seconds()
	res.RelayedPerSec = float64(res.AtPeer+res.Echoed) / elapsed.Seconds()
	if res.Sent > 0 {
		res.LossPercent = 100 * (1 - float64(res.Echoed)/float64(res.Sent))
	}
	if cpuErr == nil && res.AtPeer+res.Echoed > 0 {
		res.ServerCPUSecs = cpu1 - cpu0
		res.CPUPerPacketUS = res.ServerCPUSecs * 1e6 / float64(res.AtPeer+res.Echoed)
	}
	return res, nil
}

// turnChannel is the channel every allocation binds to the peer.
const turnChannel = 0x4001

// turnTick is how often the sender wakes up to send what is due.
const turnTick = time.Millisecond

// paceTURN sends ChannelData from every client at o.rate packets per
// second each until ctx ends: one goroutine, waking every turnTick and
// sending what has fallen due since the start, so that the offered rate
// holds however late a wake-up comes.
func paceTURN(ctx context.Context, clients []*turnClient, o turnOptions, sent *atomic.Int64) {
	frames := make([][]byte, len(clients))
	for i := range frames {
		f := make([]byte, 4+o.size)
		binary.BigEndian.PutUint16(f, turnChannel)
		binary.BigEndian.PutUint16(f[2:], uint16(o.size))
		frames[i] = f
	}
	t := time.NewTicker(turnTick)
	defer t.Stop()
	start := time.Now()
	var perClient int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := int64(now.Sub(start).Seconds() * float64(o.rate))
			for ; perClient < due; perClient++ {
				for i, c := range clients {
					binary.BigEndian.PutUint64(frames[i][4:], uint64(perClient))
					if _, err := c.conn.Write(frames[i]); err == nil {
						sent.Add(1)
					}
				}
			}
		}
	}
}
