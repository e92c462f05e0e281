package sfu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/internal/udpbatch"
)

// handshakeDTLS runs a real DTLS handshake over loopback between a
// client and a server configured by the given functions, and returns the
// server's connection state.
func handshakeDTLS(t *testing.T, client []dtls.ClientOption, server []dtls.ServerOption) dtls.State {
	t.Helper()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	sa, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	client = append([]dtls.ClientOption{dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true)}, client...)
	server = append([]dtls.ServerOption{dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true),
		dtls.WithClientAuth(dtls.RequireAnyClientCert)}, server...)
	cc, err := dtls.ClientWithOptions(ca, sa.LocalAddr(), client...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := dtls.ServerWithOptions(sa, ca.LocalAddr(), server...)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, 1)
	go func() { errs <- cc.HandshakeContext(ctx) }()
	if err := sc.HandshakeContext(ctx); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	st, ok := sc.ConnectionState()
	if !ok {
		t.Fatal("no connection state")
	}
	return st
}

// TestDirectKeysMatchDTLS: the SRTP keys directSender derives from the key
// log and the ServerHello are the ones DTLS itself exports (RFC 5764), for
// every cipher suite whose PRF it knows, with and without the extended
// master secret, for each SRTP profile the SFU offers.
func TestDirectKeysMatchDTLS(t *testing.T) {
	for _, c := range []struct {
		name    string
		suite   dtls.CipherSuiteID
		profile dtls.SRTPProtectionProfile
		ems     dtls.ExtendedMasterSecretType
	}{
		{"aes128gcm-sha256", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM, dtls.RequireExtendedMasterSecret},
		{"no-ems", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM, dtls.DisableExtendedMasterSecret},
		{"aes256gcm-sha384", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.SRTP_AEAD_AES_256_GCM, dtls.RequestExtendedMasterSecret},
		{"aes256cbc-sha", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.RequestExtendedMasterSecret},
		{"chacha20", dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.RequestExtendedMasterSecret},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDirectSender(nil, nil)
			st := handshakeDTLS(t, []dtls.ClientOption{
				dtls.WithCipherSuites(c.suite),
				dtls.WithSRTPProtectionProfiles(c.profile, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
				dtls.WithExtendedMasterSecret(c.ems),
			}, []dtls.ServerOption{
				dtls.WithCipherSuites(c.suite),
				dtls.WithSRTPProtectionProfiles(c.profile),
				dtls.WithExtendedMasterSecret(c.ems),
				dtls.WithKeyLogWriter(d),
				dtls.WithServerHelloMessageHook(d.serverHello),
			})
			got, why := d.keys()
			if why != "" {
				t.Fatalf("no keys: %s", why)
			}
			want := &srtp.Config{Profile: srtp.ProtectionProfile(c.profile)}
			if err := want.ExtractSessionKeysFromDTLS(&st, false); err != nil {
				t.Fatal(err)
			}
			if got.Profile != want.Profile {
				t.Fatalf("profile %v, want %v", got.Profile, want.Profile)
			}
			for _, k := range []struct {
				name      string
				got, want []byte
			}{
				{"local key", got.Keys.LocalMasterKey, want.Keys.LocalMasterKey},
				{"local salt", got.Keys.LocalMasterSalt, want.Keys.LocalMasterSalt},
				{"remote key", got.Keys.RemoteMasterKey, want.Keys.RemoteMasterKey},
				{"remote salt", got.Keys.RemoteMasterSalt, want.Keys.RemoteMasterSalt},
			} {
				if len(k.want) == 0 || !bytes.Equal(k.got, k.want) {
					t.Errorf("%s %x, want %x", k.name, k.got, k.want)
				}
			}
		})
	}
}

// TestDirectKeysNeedTheServerSide: as the DTLS client, or with a suite
// whose PRF it does not know, directSender derives nothing and says why
// (the PeerConnection then stays on pion's path).
func TestDirectKeysNeedTheServerSide(t *testing.T) {
	d := newDirectSender(nil, nil)
	handshakeDTLS(t, []dtls.ClientOption{
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM), dtls.WithKeyLogWriter(d),
	}, []dtls.ServerOption{
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM),
	})
	if _, why := d.keys(); why != "the SFU is not the DTLS server" {
		t.Fatalf("as the client: %q", why)
	}

	d = newDirectSender(nil, nil)
	d.hmu.Lock()
	d.master, d.clientRandom, d.serverRandom = make([]byte, 48), make([]byte, 32), make([]byte, 32)
	d.suite, d.profile = dtls.TLS_PSK_WITH_AES_128_CCM, srtp.ProtectionProfileAeadAes128Gcm
	d.hmu.Unlock()
	if _, why := d.keys(); why == "" {
		t.Fatal("keys derived for a suite whose PRF is not known")
	}
}

// TestDirectKeyLogLines: the key log writer keeps a well-formed
// CLIENT_RANDOM line and ignores anything else.
func TestDirectKeyLogLines(t *testing.T) {
	d := newDirectSender(nil, nil)
	for _, line := range []string{
		"",
		"CLIENT_RANDOM zz 00\n",
		"CLIENT_RANDOM 0011 2233\n", // a random of the wrong length
		"SERVER_HANDSHAKE_TRAFFIC_SECRET " + string(bytes.Repeat([]byte("ab"), 32)) + " 00\n",
	} {
		if n, err := d.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
	if d.master != nil || d.clientRandom != nil {
		t.Fatal("a malformed line was kept")
	}
	line := "CLIENT_RANDOM " + string(bytes.Repeat([]byte("ab"), 32)) + " " + string(bytes.Repeat([]byte("cd"), 48)) + "\n"
	if _, err := d.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	if len(d.clientRandom) != 32 || len(d.master) != 48 || d.master[0] != 0xcd {
		t.Fatalf("kept random %x, master %x", d.clientRandom, d.master)
	}
}

// TestMediaGoesTheDirectWay: in a conference over UDP, what each
// subscriber receives left through the direct send path, and it decrypts
// (mediaPair waits for the other's video); what each publisher sends came
// in through the direct receive path. When the client's offer makes
// the SFU the DTLS client, the keys are not seen: the media goes through
// pion's session instead, and still arrives.
func TestMediaGoesTheDirectWay(t *testing.T) {
	for _, c := range []struct {
		name            string
		passive, queued bool
	}{{"sfu-dtls-server", false, false}, {"sfu-dtls-server-queued", false, true}, {"sfu-dtls-client", true, false}} {
		t.Run(c.name, func(t *testing.T) {
			alice, bob, stop := mediaPairWith(t, 1, clientOpts{passive: c.passive, queued: c.queued})
			defer stop()
			alice.waitFor("bob's video", 15*time.Second, func() bool {
				r := alice.trackFrom(bob.id, "video/")
				return r != nil && len(r.payloads) > 5
			})
			parts := alice.svc.room(testRoom).participants()
			if len(parts) != 2 {
				t.Fatalf("%d participants", len(parts))
			}
			if !c.passive {
				// Both send feedback (TWCC every 100 ms) for what they
				// receive: it is read directly too. (alice's condition
				// is checked as her media arrives.)
				alice.waitFor("feedback read directly", 10*time.Second, func() bool {
					return parts[0].direct.rtcpReceived.Load() > 0 && parts[1].direct.rtcpReceived.Load() > 0
				})
			}
			for _, p := range parts {
				sent, ready := p.direct.sent.Load(), p.direct.ready.Load()
				if c.passive && (ready || sent != 0) {
					t.Errorf("%s: direct path on (%d sent) with the SFU as the DTLS client", p.jid, sent)
				}
				if !c.passive && (!ready || sent < 5) {
					t.Errorf("%s: %d packets sent the direct way (on: %v)", p.jid, sent, ready)
				}
				// What it published came in the direct way too.
				received, refused := p.direct.received.Load(), p.direct.recvRefused.Load()
				if c.passive && received != 0 || !c.passive && received < 5 || refused != 0 {
					t.Errorf("%s: %d packets received the direct way, %d refused", p.jid, received, refused)
				}
				if rtcpIn := p.direct.rtcpReceived.Load(); c.passive && rtcpIn != 0 {
					t.Errorf("%s: %d RTCP packets read directly with the SFU as the DTLS client", p.jid, rtcpIn)
				}
				// Forwarded on the socket's goroutine, or by the
				// streams' readers.
				inlined := p.direct.inlined.Load()
				if c.passive || c.queued {
					if inlined != 0 {
						t.Errorf("%s: %d packets delivered inline, want none", p.jid, inlined)
					}
				} else if inlined < 5 {
					t.Errorf("%s: %d of %d packets received delivered inline", p.jid, inlined, received)
				}
				// Pion clients offer RTP header encryption: the packets
				// above carried their transport-wide numbers encrypted.
				p.direct.wmu.Lock()
				cryptex := p.direct.cryptex
				p.direct.wmu.Unlock()
				if !c.passive && cryptex != srtp.CryptexModeEnabled {
					t.Errorf("%s: header encryption %v, want it negotiated and followed", p.jid, cryptex)
				}
			}
		})
	}
}

// recvFixture is a directSender listed with a filter table for a
// publisher at from, reading one stream (SSRC 0x1234) directly, and the
// publisher's SRTP context to make its packets.
type recvFixture struct {
	table recvTable
	d     *directSender
	s     *recvStream
	from  netip.AddrPort
	pub   *srtp.Context
	seq   uint16
}

func newRecvFixture(tb testing.TB) *recvFixture {
	tb.Helper()
	f := &recvFixture{from: netip.MustParseAddrPort("127.0.0.1:40000")}
	keys := &srtp.Config{Profile: srtp.ProtectionProfileAeadAes128Gcm}
	// Keys of its own: no packet made for another fixture authenticates.
	keys.Keys.RemoteMasterKey = make([]byte, 16)
	keys.Keys.RemoteMasterSalt = make([]byte, 12)
	_, _ = rand.Read(keys.Keys.RemoteMasterKey)
	_, _ = rand.Read(keys.Keys.RemoteMasterSalt)
	f.d = newDirectSender(nil, &f.table)
	if err := f.d.startReceive(keys); err != nil {
		tb.Fatal(err)
	}
	pub, err := srtp.CreateContext(keys.Keys.RemoteMasterKey, keys.Keys.RemoteMasterSalt, keys.Profile)
	if err != nil {
		tb.Fatal(err)
	}
	f.pub = pub
	f.s = newRecvStream(0x1234)
	f.d.publish(f.s)
	f.table.set(f.from, f.d)
	return f
}

// packet returns the publisher's next packet: payload, encrypted.
func (f *recvFixture) packet(tb testing.TB, payload string) []byte {
	tb.Helper()
	f.seq++
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: f.seq, SSRC: 0x1234}, Payload: []byte(payload)}
	raw, err := p.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := f.pub.EncryptRTP(nil, raw, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestDirectReceiveFilter: the sockets' filter takes a listed publisher's
// SRTP for a stream read directly and queues it decrypted; a forged or
// replayed packet is taken and dropped (pion never sees it); anything
// else — another address, another SSRC, SRTCP, STUN, DTLS, a runt — is
// left to pion. A full queue drops; a closed one reads out, then ends.
func TestDirectReceiveFilter(t *testing.T) {
	f := newRecvFixture(t)
	p := f.packet(t, "hello")
	if !f.table.filter(p, f.from) {
		t.Fatal("a listed publisher's packet was not taken")
	}
	buf := make([]byte, 1500)
	n, err := f.s.pop(buf)
	var h rtp.Packet
	if err != nil || h.Unmarshal(buf[:n]) != nil || string(h.Payload) != "hello" || h.SequenceNumber != 1 {
		t.Fatalf("queued %x (%v)", buf[:n], err)
	}
	if !f.table.filter(p, f.from) {
		t.Fatal("a replayed packet was not taken")
	}
	forged := f.packet(t, "forged")
	forged[len(forged)-1] ^= 1
	if !f.table.filter(forged, f.from) {
		t.Fatal("a forged packet was not taken")
	}
	if got := f.d.recvRefused.Load(); got != 2 || f.s.n != 0 {
		t.Fatalf("refused %d, queued %d; want 2 refused, none queued", got, f.s.n)
	}
	// The v4-mapped form of the publisher's address is the same address.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(f.from.Addr().As16()), f.from.Port())
	if !f.table.filter(f.packet(t, "mapped"), mapped) {
		t.Fatal("the v4-mapped address was not recognised")
	}
	other := f.packet(t, "x")
	binary.BigEndian.PutUint32(other[8:12], 0x9999)
	for _, c := range []struct {
		name string
		p    []byte
		from netip.AddrPort
	}{
		{"another address", f.packet(t, "x"), netip.MustParseAddrPort("127.0.0.2:40000")},
		{"another ssrc", other, f.from},
		{"srtcp", append([]byte{0x80, 200}, make([]byte, 30)...), f.from},
		{"stun", append([]byte{0x00, 0x01}, make([]byte, 30)...), f.from},
		{"dtls", append([]byte{22, 0xfe}, make([]byte, 30)...), f.from},
		{"runt", []byte{0x80, 96, 0, 1}, f.from},
	} {
		if f.table.filter(c.p, c.from) {
			t.Errorf("%s: taken", c.name)
		}
	}
	// A datagram one byte over the largest packet is taken and dropped;
	// one of exactly that size is queued (12 header bytes, 16 of tag).
	if n, err := f.s.pop(buf); err != nil || string(buf[n-6:n]) != "mapped" {
		t.Fatalf("queued %x (%v), want the mapped address's packet", buf[:n], err)
	}
	dropped := f.s.dropped.Load()
	if over := f.packet(t, strings.Repeat("x", maxDirectPacket-12-16+1)); len(over) != maxDirectPacket+1 || !f.table.filter(over, f.from) ||
		f.s.dropped.Load() != dropped+1 || f.s.n != 0 {
		t.Fatalf("a %d-byte packet: dropped %d, queued %d", len(over), f.s.dropped.Load()-dropped, f.s.n)
	}
	full := f.packet(t, strings.Repeat("x", maxDirectPacket-12-16))
	if !f.table.filter(full, f.from) || f.s.n != 1 {
		t.Fatalf("a %d-byte packet was not queued", len(full))
	}
	if n, err := f.s.pop(buf); err != nil || n != maxDirectPacket-16 {
		t.Fatalf("the largest packet came out as %d bytes (%v)", n, err)
	}
	dropped = f.s.dropped.Load()
	for range recvQueue + 1 {
		f.table.filter(f.packet(t, "fill"), f.from)
	}
	if got := f.s.dropped.Load() - dropped; got != 1 || f.s.n != recvQueue {
		t.Fatalf("%d packets into a queue of %d: dropped %d, queued %d; want 1 dropped", recvQueue+1, recvQueue, got, f.s.n)
	}
	f.d.unpublish(f.s)
	if f.table.filter(f.packet(t, "after"), f.from) {
		t.Fatal("a packet of an unpublished stream was taken")
	}
	for i := range recvQueue {
		if _, err := f.s.pop(buf); err != nil {
			t.Fatalf("closed queue, packet %d: %v", i, err)
		}
	}
	if _, err := f.s.pop(buf); err != io.EOF {
		t.Fatalf("drained closed queue: %v, want EOF", err)
	}
}

// FuzzDirectReceive: whatever arrives from a listed publisher's address,
// the filter does not panic, queues nothing that did not authenticate,
// and still takes the publisher's next real packet.
func FuzzDirectReceive(f *testing.F) {
	fx := newRecvFixture(f)
	f.Add(fx.packet(f, "seed"))
	f.Add([]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34})
	f.Add([]byte{0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0xbe, 0xde, 0, 9})
	f.Add([]byte{0x81, 201, 0, 7, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78, 0x80, 0, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		fx := newRecvFixture(t)
		rtcpIn := 0
		fx.d.rtcpSink = func([]byte) { rtcpIn++ }
		fx.table.filter(p, fx.from)
		if fx.s.n != 0 || rtcpIn != 0 {
			t.Fatalf("%x was queued or read as RTCP", p)
		}
		if !fx.table.filter(fx.packet(t, "real"), fx.from) || fx.s.n != 1 {
			t.Fatal("the next real packet was not queued")
		}
		raw, err := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2}})
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := fx.pub.EncryptRTCP(nil, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !fx.table.filter(sealed, fx.from) || rtcpIn != 1 {
			t.Fatal("the next real RTCP packet was not read")
		}
	})
}

// TestDirectSendSizeLimit: the direct send path sends an RTP packet of
// maxDirectPacket bytes and refuses one a byte longer, which never
// reaches the socket.
func TestDirectSendSizeLimit(t *testing.T) {
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := udpbatch.NewConn(uc, udpbatch.NewGroup(nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	key, salt := make([]byte, 16), make([]byte, 12)
	_, _ = rand.Read(key)
	_, _ = rand.Read(salt)
	ctx, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	d := newDirectSender(nil, nil)
	d.ctx = ctx
	d.route.Store(&directRoute{conn: conn, to: peer.LocalAddr().(*net.UDPAddr).AddrPort()})
	d.ready.Store(true)
	h := &rtp.Header{Version: 2, PayloadType: 96, SSRC: 7}
	if _, sent, err := d.send(h, make([]byte, maxDirectPacket-12+1)); !sent || !errors.Is(err, errDirectTooLarge) {
		t.Fatalf("a %d-byte packet: sent by the direct path %v, %v; want errDirectTooLarge", maxDirectPacket+1, sent, err)
	}
	h.SequenceNumber = 1
	if n, sent, err := d.send(h, make([]byte, maxDirectPacket-12)); !sent || err != nil || n != maxDirectPacket {
		t.Fatalf("a %d-byte packet: %d, %v, %v", maxDirectPacket, n, sent, err)
	}
	buf := make([]byte, 2*maxDirectPacket)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := peer.ReadFromUDP(buf)
	if err != nil || n != maxDirectPacket+16 || d.sent.Load() != 1 {
		t.Fatalf("the peer read %d bytes (%v), %d sent; want only the %d-byte packet with its tag", n, err, d.sent.Load(), maxDirectPacket)
	}
	var got rtp.Header
	if _, err := got.Unmarshal(buf[:n]); err != nil || got.SequenceNumber != 1 {
		t.Fatalf("the peer read sequence number %d (%v), want 1", got.SequenceNumber, err)
	}
}

// TestDirectReceiveRTCP: the sockets' filter takes a listed
// participant's SRTCP and hands it decrypted to the participant's RTCP
// sink, sender reports included; a forged or replayed packet is taken
// and dropped; without a sink, everything is left to pion.
func TestDirectReceiveRTCP(t *testing.T) {
	f := newRecvFixture(t)
	encrypt := func(pkts ...rtcp.Packet) (raw, sealed []byte) {
		t.Helper()
		raw, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err = f.pub.EncryptRTCP(nil, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		return raw, sealed
	}
	feedback := []rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 0x1234, Reports: []rtcp.ReceptionReport{{SSRC: 0x5678, LastSequenceNumber: 7}}},
		&rtcp.PictureLossIndication{SenderSSRC: 0x1234, MediaSSRC: 0x5678},
	}
	raw, sealed := encrypt(feedback...)
	if f.table.filter(sealed, f.from) {
		t.Fatal("SRTCP taken without an RTCP sink")
	}
	var got [][]byte
	f.d.rtcpSink = func(b []byte) { got = append(got, bytes.Clone(b)) }
	if !f.table.filter(sealed, f.from) || len(got) != 1 || !bytes.Equal(got[0], raw) {
		t.Fatalf("the sink got %x, want %x", got, raw)
	}
	if !f.table.filter(sealed, f.from) {
		t.Fatal("a replayed SRTCP packet was not taken")
	}
	_, forged := encrypt(feedback...)
	forged[10] ^= 1
	if !f.table.filter(forged, f.from) {
		t.Fatal("a forged SRTCP packet was not taken")
	}
	if n := f.d.recvRefused.Load(); n != 2 || len(got) != 1 {
		t.Fatalf("refused %d, delivered %d; want 2 refused, 1 delivered", n, len(got))
	}
	srRaw, sr := encrypt(&rtcp.SenderReport{SSRC: 0x1234, NTPTime: 1 << 40}, &rtcp.PictureLossIndication{SenderSSRC: 0x1234, MediaSSRC: 0x5678})
	if !f.table.filter(sr, f.from) || len(got) != 2 || !bytes.Equal(got[1], srRaw) {
		t.Fatal("a compound packet with a sender report first was not read directly")
	}
	got = got[:1]
	f.d.rtcpReceived.Add(^uint64(0))
	_, big := encrypt(feedback...)
	big = append(big, make([]byte, maxDirectPacket)...)
	if f.table.filter(big, f.from) {
		t.Fatal("an oversized datagram was taken")
	}
	// At the bound: a compound packet of exactly maxDirectPacket bytes
	// sealed is read; one a word longer (RTCP comes in words) goes to pion.
	sized := func(n int) []byte {
		t.Helper()
		app := make([]byte, n-8-20) // less the receiver report and SRTCP's tag and index
		app[0], app[1] = 0x80, 204
		binary.BigEndian.PutUint16(app[2:], uint16(len(app)/4-1))
		raw := rtcp.RawPacket(app)
		_, sealed := encrypt(&rtcp.ReceiverReport{SSRC: 0x1234}, &raw)
		if len(sealed) != n {
			t.Fatalf("made %d bytes, want %d", len(sealed), n)
		}
		return sealed
	}
	if !f.table.filter(sized(maxDirectPacket), f.from) || len(got) != 2 {
		t.Fatalf("a %d-byte SRTCP packet was not read", maxDirectPacket)
	}
	if f.table.filter(sized(maxDirectPacket+4), f.from) || len(got) != 2 {
		t.Fatalf("a %d-byte SRTCP packet was taken", maxDirectPacket+4)
	}
	if n := f.d.rtcpReceived.Load(); n != 2 || len(got) != 2 {
		t.Fatalf("%d compound packets read directly, %d delivered; want 2", n, len(got))
	}
}

// TestDirectListing: a participant is listed with the sockets' filter at
// each address it is read from (the selected pair's, and others ICE
// verified), moves as they change, and once stopped is never listed
// again, whatever still calls for a listing.
func TestDirectListing(t *testing.T) {
	var table recvTable
	d := newDirectSender(nil, &table)
	a, b := netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("192.0.2.2:40001")
	d.listAt([]netip.AddrPort{a, b, {}})
	if table.get(a) != d || table.get(b) != d {
		t.Fatal("not listed at both addresses")
	}
	d.listAt([]netip.AddrPort{b})
	if table.get(a) != nil || table.get(b) != d {
		t.Fatal("still listed at the address it left")
	}
	d.stop()
	if table.get(b) != nil {
		t.Fatal("listed after stop")
	}
	d.listAt([]netip.AddrPort{a})
	d.recvReady.Store(true)
	d.fmu.Lock()
	d.extra = []netip.AddrPort{b}
	d.fmu.Unlock()
	d.listRoute()
	if table.get(a) != nil || table.get(b) != nil {
		t.Fatal("listed again after stop")
	}
}

// TestRefreshFromDuringClose: the lookup of a participant's verified
// addresses (refreshFrom, from a subscription's RTCP reader) asks pion
// for its stats, which pion reads unlocked while the PeerConnection
// closes. Stopping the direct path, which comes before the close, must
// end those lookups; under -race this test fails when it does not.
func TestRefreshFromDuringClose(t *testing.T) {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	// A receiver: pion's stats read the field for each.
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	d := newDirectSender(func(netip.Addr) *udpbatch.Conn { return nil }, nil)
	d.pc = pc // as start sets it, before any lookup
	stop := make(chan struct{})
	done := make(chan struct{})
	var lookups atomic.Int64
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			d.refreshed.Store(0) // no throttle: look every time
			d.refreshFrom()
			lookups.Add(1)
		}
	}()
	for lookups.Load() < 10 {
		runtime.Gosched()
	}
	d.stop()
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	n := lookups.Load()
	for lookups.Load() < n+10 { // it goes on looking after the close
		runtime.Gosched()
	}
	close(stop)
	<-done
	if d.pc != nil { // the lookups ended (done): no lock needed
		t.Fatal("the stopped direct path still holds its PeerConnection")
	}
}
