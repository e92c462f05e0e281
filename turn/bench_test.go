package turn

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// rawClient is a minimal TURN client over UDP that speaks just enough
// (Allocate, ChannelBind, ChannelData) to drive the relay without a
// client library's own per-packet costs, so that the benchmark measures
// the server.
type rawClient struct {
	conn               *net.UDPConn
	user, realm, nonce string
	pass               string
	buf                []byte
}

type setterFunc func(*stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

func (c *rawClient) roundTrip(setters ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(req.Raw); err != nil {
		return nil, err
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		n, err := c.conn.Read(c.buf)
		if err != nil {
			return nil, err
		}
		res := &stun.Message{Raw: append([]byte(nil), c.buf[:n]...)}
		if err := res.Decode(); err != nil {
			continue
		}
		if res.TransactionID == req.TransactionID {
			return res, nil
		}
	}
}

func (c *rawClient) auth() []stun.Setter {
	return []stun.Setter{
		stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce),
		stun.NewLongTermIntegrity(c.user, c.realm, c.pass), stun.Fingerprint,
	}
}

// allocate performs the two-step authenticated Allocate and returns the
// relayed address.
func (c *rawClient) allocate() (netip.AddrPort, error) {
	udp := setterFunc(func(m *stun.Message) error {
		m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})
		return nil
	})
	typ := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	res, err := c.roundTrip(stun.TransactionID, typ, udp, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, err
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if err := nonce.GetFrom(res); err != nil {
		return netip.AddrPort{}, fmt.Errorf("no nonce in first Allocate answer: %w", err)
	}
	if err := realm.GetFrom(res); err != nil {
		return netip.AddrPort{}, fmt.Errorf("no realm in first Allocate answer: %w", err)
	}
	c.nonce, c.realm = nonce.String(), realm.String()
	res, err = c.roundTrip(append([]stun.Setter{stun.TransactionID, typ, udp}, c.auth()...)...)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if res.Type.Class != stun.ClassSuccessResponse {
		return netip.AddrPort{}, fmt.Errorf("allocate refused: %s", res)
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return netip.AddrPort{}, err
	}
	ip, _ := netip.AddrFromSlice(relayed.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port)), nil
}

// bindChannel binds channel to peer.
func (c *rawClient) bindChannel(channel uint16, peer netip.AddrPort) error {
	number := setterFunc(func(m *stun.Message) error {
		m.Add(stun.AttrChannelNumber, []byte{byte(channel >> 8), byte(channel), 0, 0})
		return nil
	})
	peerAttr := setterFunc(func(m *stun.Message) error {
		return stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
	})
	typ := stun.NewType(stun.MethodChannelBind, stun.ClassRequest)
	res, err := c.roundTrip(append([]stun.Setter{stun.TransactionID, typ, number, peerAttr}, c.auth()...)...)
	if err != nil {
		return err
	}
	if res.Type.Class != stun.ClassSuccessResponse {
		return fmt.Errorf("channel bind refused: %s", res)
	}
	return nil
}

// benchPayload is the datagram size the benchmarks relay: an Opus frame.
const benchPayload = 160

// benchFlow is one allocation with a channel bound to a loopback peer,
// or with a permission for it when indications is set: then the client
// sends Send indications and receives Data indications.
type benchFlow struct {
	client      *rawClient
	peer        *net.UDPConn
	relayed     netip.AddrPort
	frame       []byte
	dataAt      int // offset of the payload in frame and in what the client receives
	peerBuf     []byte
	indications bool
}

const benchChannel = 0x4001

func newBenchFlow(srv *Server, user string) (*benchFlow, error) {
	return newBenchFlowWith(srv, user, false)
}

func newBenchFlowWith(srv *Server, user string, indications bool) (*benchFlow, error) {
	conn, err := net.DialUDP("udp4", nil, srv.UDPAddr().(*net.UDPAddr))
	if err != nil {
		return nil, err
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		conn.Close()
		return nil, err
	}
	f := &benchFlow{peer: peer, frame: make([]byte, 4+benchPayload), dataAt: 4, peerBuf: make([]byte, 2048), indications: indications}
	cr := srv.Credentials(user)
	f.client = &rawClient{conn: conn, user: cr.Username, pass: cr.Password, buf: make([]byte, 2048)}
	if f.relayed, err = f.client.allocate(); err != nil {
		f.close()
		return nil, err
	}
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if indications {
		if err := f.client.createPermission(peerAddr); err != nil {
			f.close()
			return nil, err
		}
		m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
			peerAttr(peerAddr), setterFunc(func(m *stun.Message) error {
				m.Add(stun.AttrData, make([]byte, benchPayload))
				return nil
			}))
		if err != nil {
			f.close()
			return nil, err
		}
		f.frame = m.Raw
		f.dataAt = len(m.Raw) - benchPayload
	} else {
		if err := f.client.bindChannel(benchChannel, peerAddr); err != nil {
			f.close()
			return nil, err
		}
		binary.BigEndian.PutUint16(f.frame[0:], benchChannel)
		binary.BigEndian.PutUint16(f.frame[2:], benchPayload)
	}
	deadline := time.Now().Add(time.Minute)
	conn.SetReadDeadline(deadline)
	peer.SetReadDeadline(deadline)
	return f, nil
}

func (f *benchFlow) close() {
	f.client.conn.Close()
	f.peer.Close()
}

// exchange sends packet seq from the client through the relay to the
// peer, and the peer's echo back through the relay to the client.
func (f *benchFlow) exchange(seq uint32) error {
	binary.BigEndian.PutUint32(f.frame[f.dataAt:], seq)
	if _, err := f.client.conn.Write(f.frame); err != nil {
		return err
	}
	n, from, err := f.peer.ReadFromUDPAddrPort(f.peerBuf)
	if err != nil {
		return err
	}
	if n != benchPayload || from.Port() != f.relayed.Port() {
		return fmt.Errorf("peer got %d bytes from %s, want %d from %s", n, from, benchPayload, f.relayed)
	}
	if _, err := f.peer.WriteToUDPAddrPort(f.peerBuf[:n], from); err != nil {
		return err
	}
	buf := f.client.buf
	if n, err = f.client.conn.Read(buf); err != nil {
		return err
	}
	if f.indications {
		// A Data indication from an IPv4 peer: header, XOR-PEER-ADDRESS, DATA.
		const at = stunHeaderSize + 12 + 4
		if n < at+benchPayload || binary.BigEndian.Uint16(buf) != typeDataIndication || binary.BigEndian.Uint32(buf[at:]) != seq {
			return fmt.Errorf("client got %d bytes %x, want a Data indication echoing packet %d", n, buf[:min(n, 8)], seq)
		}
		return nil
	}
	if n < 4+benchPayload || binary.BigEndian.Uint16(buf) != benchChannel || binary.BigEndian.Uint32(buf[4:]) != seq {
		return fmt.Errorf("client got %d bytes %x, want channel data echoing packet %d", n, buf[:min(n, 8)], seq)
	}
	return nil
}

// BenchmarkRelay measures packets relayed through one real allocation
// over loopback: each operation sends a 160-byte datagram (an Opus-sized
// payload) from the client through the relay to a peer, and the peer's
// reply back through the relay to the client, in lock step. The pkts/s
// metric counts both relay traversals.
func BenchmarkRelay(b *testing.B) {
	srv := startServer(b, relayToLoopback)
	f, err := newBenchFlow(srv, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer f.close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.exchange(uint32(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkRelayIndications is BenchmarkRelay with Send indications from
// the client and Data indications back, as a client relays before it
// binds a channel.
func BenchmarkRelayIndications(b *testing.B) {
	srv := startServer(b, relayToLoopback)
	f, err := newBenchFlowWith(srv, "bench", true)
	if err != nil {
		b.Fatal(err)
	}
	defer f.close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.exchange(uint32(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkRelayParallel runs the same exchange on several allocations
// at once (GOMAXPROCS flows, or more with -cpu), spread by the kernel
// over the SO_REUSEPORT listeners.
func BenchmarkRelayParallel(b *testing.B) {
	srv := startServer(b, relayToLoopback)
	var users atomic.Int32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		f, err := newBenchFlow(srv, fmt.Sprintf("bench%d", users.Add(1)))
		if err != nil {
			b.Error(err)
			return
		}
		defer f.close()
		for seq := uint32(0); pb.Next(); seq++ {
			if err := f.exchange(seq); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "pkts/s")
}
