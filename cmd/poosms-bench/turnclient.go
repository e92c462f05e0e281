package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
)

// turnClient is a minimal TURN client over UDP: Allocate, ChannelBind
// and CreatePermission, with long-term credentials. The data path is the
// caller's (ChannelData written on conn), so that the load generator
// spends as little CPU per packet as it can and the server is what gets
// measured.
type turnClient struct {
	conn           *net.UDPConn
	user, pass     string
	realm, nonce   string
	buf            []byte
	requestTimeout time.Duration
	relayed        netip.AddrPort
}

func dialTURN(server, user, pass string) (*turnClient, error) {
	raddr, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", server, err)
	}
	conn, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", server, err)
	}
	return &turnClient{conn: conn, user: user, pass: pass, buf: make([]byte, 2048),
		requestTimeout: 5 * time.Second}, nil
}

type stunSetter func(*stun.Message) error

func (f stunSetter) AddTo(m *stun.Message) error { return f(m) }

// roundTrip sends a request and waits for the answer with its
// transaction ID, ignoring anything else that arrives meanwhile.
func (c *turnClient) roundTrip(ctx context.Context, setters ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(c.requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if _, err := c.conn.Write(req.Raw); err != nil {
		return nil, err
	}
	_ = c.conn.SetReadDeadline(deadline)
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		n, err := c.conn.Read(c.buf)
		if err != nil {
			return nil, err
		}
		res := &stun.Message{Raw: append([]byte(nil), c.buf[:n]...)}
		if res.Decode() == nil && res.TransactionID == req.TransactionID {
			return res, nil
		}
	}
}

func (c *turnClient) auth() []stun.Setter {
	return []stun.Setter{
		stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce),
		stun.NewLongTermIntegrity(c.user, c.realm, c.pass), stun.Fingerprint,
	}
}

// allocate makes a UDP allocation (the unauthenticated first request
// fetches the realm and nonce).
func (c *turnClient) allocate(ctx context.Context) error {
	transport := stunSetter(func(m *stun.Message) error {
		m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0}) // UDP
		return nil
	})
	typ := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	res, err := c.roundTrip(ctx, stun.TransactionID, typ, transport, stun.Fingerprint)
	if err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if nonce.GetFrom(res) != nil || realm.GetFrom(res) != nil {
		return errors.New("allocate: first answer carries no realm and nonce")
	}
	c.nonce, c.realm = nonce.String(), realm.String()
	if res, err = c.roundTrip(ctx, append([]stun.Setter{stun.TransactionID, typ, transport}, c.auth()...)...); err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	if res.Type.Class != stun.ClassSuccessResponse {
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(res)
		return fmt.Errorf("allocate refused: %d %s", code.Code, code.Reason)
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return fmt.Errorf("allocate: no relayed address: %w", err)
	}
	ip, _ := netip.AddrFromSlice(relayed.IP)
	c.relayed = netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port))
	return nil
}

// bindChannel binds channel to peer.
func (c *turnClient) bindChannel(ctx context.Context, channel uint16, peer netip.AddrPort) error {
	number := stunSetter(func(m *stun.Message) error {
		m.Add(stun.AttrChannelNumber, []byte{byte(channel >> 8), byte(channel), 0, 0})
		return nil
	})
	peerAttr := stunSetter(func(m *stun.Message) error {
		return stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
	})
	typ := stun.NewType(stun.MethodChannelBind, stun.ClassRequest)
	res, err := c.roundTrip(ctx, append([]stun.Setter{stun.TransactionID, typ, number, peerAttr}, c.auth()...)...)
	if err != nil {
		return fmt.Errorf("channel bind: %w", err)
	}
	if res.Type.Class != stun.ClassSuccessResponse {
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(res)
		return fmt.Errorf("channel bind refused: %d %s", code.Code, code.Reason)
	}
	return nil
}
