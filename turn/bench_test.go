package turn

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
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

// BenchmarkRelay measures packets relayed through one real allocation
// over loopback: each operation sends a 160-byte datagram (an Opus-sized
// payload) from the client through the relay to a peer, and the peer's
// reply back through the relay to the client, in lock step. The pkts/s
// metric counts both relay traversals.
func BenchmarkRelay(b *testing.B) {
	srv := startServer(b, func(c *Config) { c.AllowPeers = allowLoopV4 })
	conn, err := net.DialUDP("udp4", nil, srv.UDPAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cr := srv.Credentials("bench")
	client := &rawClient{conn: conn, user: cr.Username, pass: cr.Password, buf: make([]byte, 2048)}
	relayed, err := client.allocate()
	if err != nil {
		b.Fatal(err)
	}
	peer := listenPeer(b)
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	const channel = 0x4001
	if err := client.bindChannel(channel, peerAddr); err != nil {
		b.Fatal(err)
	}

	const payload = 160
	frame := make([]byte, 4+payload)
	binary.BigEndian.PutUint16(frame[0:], channel)
	binary.BigEndian.PutUint16(frame[2:], payload)
	peerBuf := make([]byte, 2048)
	deadline := time.Now().Add(time.Minute)
	conn.SetReadDeadline(deadline)
	peer.SetReadDeadline(deadline)

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint32(frame[4:], uint32(i))
		if _, err := conn.Write(frame); err != nil {
			b.Fatal(err)
		}
		n, from, err := peer.ReadFromUDPAddrPort(peerBuf)
		if err != nil {
			b.Fatal(err)
		}
		if n != payload || from.Port() != relayed.Port() {
			b.Fatalf("peer got %d bytes from %s, want %d from %s", n, from, payload, relayed)
		}
		if _, err := peer.WriteToUDPAddrPort(peerBuf[:n], from); err != nil {
			b.Fatal(err)
		}
		n, err = conn.Read(client.buf)
		if err != nil {
			b.Fatal(err)
		}
		if n < 4+payload || binary.BigEndian.Uint16(client.buf) != channel ||
			binary.BigEndian.Uint32(client.buf[4:]) != uint32(i) {
			b.Fatalf("client got %d bytes %x, want channel data echoing packet %d", n, client.buf[:min(n, 8)], i)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "pkts/s")
}
