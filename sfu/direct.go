package sfu

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/internal/udpbatch"
)

// directSender is a participant's SRTP done by the SFU itself. It sends
// the participant's RTP without pion's SRTP session, ICE connection and
// UDP mux: it encrypts each packet and hands it to the media socket (a
// udpbatch.Conn) toward the selected candidate pair. And it receives what
// the participant publishes straight off the socket (direct_recv.go).
// pion keeps ICE, DTLS, SRTCP both ways, and every interceptor above the
// bottom of the receive chains (the SFU's feedback to the publisher:
// recvFeedback), where directSender's readers sit. A forwarded packet does not pass
// pion's send chain once the direct path is on: the subscription's
// sendStream (sendPath) numbers, counts and sends it; before that, and
// for any other local stream, directSender's writer sits at the bottom of
// the chain (see directFactory). RTP header encryption (RFC 9335) follows
// what pion negotiated (syncCryptex).
//
// The SRTP keys come from the DTLS handshake as RFC 5764 derives them
// (the RFC 5705 exporter over the master secret and both randoms). pion
// does not hand them out, so they are collected from the two places it
// does show them: the key log (client random and master secret) and the
// hook on the server's ServerHello (server random, cipher suite, SRTP
// profile). The SFU answers as the DTLS server (newAPI), so it writes the
// ServerHello; a connection where it is the client, uses an SRTP master
// key identifier, a cipher suite whose PRF is not known here, or a
// candidate pair that is not UDP over one of the SFU's own sockets stays
// on pion's paths throughout.
//
// Once a packet has gone the direct way, its PeerConnection's RTP never
// goes back to pion's path: pion's SRTP context would have missed the
// packets between and could guess the rollover counter wrong. If the
// selected pair later moves off the SFU's sockets, RTP is dropped until
// it moves back (ICE over TCP after UDP worked is the one case).
type directSender struct {
	sockets func(netip.Addr) *udpbatch.Conn // the media socket a local candidate address is on
	table   *recvTable                      // the sockets' filter's publishers (direct_recv.go); nil: no direct receiving

	hmu          sync.Mutex // guards the handshake's values below
	clientRandom []byte
	master       []byte
	serverRandom []byte
	suite        dtls.CipherSuiteID
	profile      srtp.ProtectionProfile
	mki          bool

	ready   atomic.Bool // keys derived and checks passed; RTP goes direct
	route   atomic.Pointer[directRoute]
	dropped atomic.Uint64 // RTP dropped while ready without a route
	sent    atomic.Uint64
	chained atomic.Uint64 // of sent, those that came down pion's local-stream chain (not through sendPath)

	// The direct receive path (direct_recv.go).
	recvReady   atomic.Bool
	streams     cowMap[uint32, *recvStream] // the streams read directly, by SSRC
	rmu         sync.Mutex                  // serialises decryption: rctx, rhdr, rbuf
	rctx        *srtp.Context
	rhdr        rtp.Header
	rbuf        []byte
	received    atomic.Uint64    // packets decrypted
	inlined     atomic.Uint64    // of those, delivered on the filter's goroutine
	recvRefused atomic.Uint64    // packets that failed authentication or replayed
	fmu         sync.Mutex       // guards from, extra, stopped
	from        []netip.AddrPort // the addresses listed in table
	extra       []netip.AddrPort // verified addresses besides the selected pair's (refreshFrom)
	stopped     bool
	refreshed   atomic.Int64 // nanotime of the last refreshFrom
	// pc is the connection refreshFrom asks for its candidate pairs. Its
	// GetStats must not run while the connection closes (pion reads a
	// field Close writes, unlocked): statsMu, which guards pc and pcGone,
	// holds refreshFrom's call against stop, which comes before the close
	// and clears pc.
	statsMu sync.Mutex
	pc      *webrtc.PeerConnection
	pcGone  bool // stop came: pc stays nil
	bottom  atomic.Pointer[directInterceptor]
	// inline: the streams read directly are delivered on the sockets'
	// filter goroutine (setSink); see Service.inline.
	inline bool
	// rtcpSink takes the participant's RTCP read directly
	// (receiveRTCP), decrypted, on the filter's goroutine; nil: pion
	// reads all of it. Set before the PeerConnection connects.
	rtcpSink     func(b []byte)
	rtcpBuf      []byte        // rmu
	rtcpReceived atomic.Uint64 // compound packets read directly

	wmu     sync.Mutex // serialises encryption: ctx, cryptex, plain, sealed
	ctx     *srtp.Context
	cryptex srtp.CryptexMode // RTP header encryption in ctx
	// plain holds the marshalled packet, sealed the encrypted one (the
	// payload plus the largest authentication tag).
	plain, sealed []byte
}

// directRoute is where the selected candidate pair sends: the SFU's
// socket and the subscriber's address.
type directRoute struct {
	conn *udpbatch.Conn
	to   netip.AddrPort
}

// maxDirectPacket is the largest RTP packet the direct path sends; a
// larger one (none should be: the publisher's are at most the receive
// MTU) goes as an error.
const maxDirectPacket = 1500

var errDirectTooLarge = errors.New("sfu: rtp packet too large to send")

func newDirectSender(sockets func(netip.Addr) *udpbatch.Conn, table *recvTable) *directSender {
	return &directSender{
		sockets: sockets,
		table:   table,
		plain:   make([]byte, maxDirectPacket),
		rbuf:    make([]byte, 0, maxDirectPacket),
		rtcpBuf: make([]byte, 0, maxDirectPacket),
		sealed:  make([]byte, 0, maxDirectPacket+32),
	}
}

// Write implements io.Writer for pion's DTLS key log: it keeps the client
// random and master secret of an NSS key log line ("CLIENT_RANDOM <hex>
// <hex>"). Nothing is written anywhere.
func (d *directSender) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
		return len(line), nil
	}
	cr, err1 := hex.DecodeString(string(f[1]))
	ms, err2 := hex.DecodeString(string(f[2]))
	if err1 != nil || err2 != nil || len(cr) != handshake.RandomLength || len(ms) == 0 {
		return len(line), nil
	}
	d.hmu.Lock()
	d.clientRandom, d.master = cr, ms
	d.hmu.Unlock()
	return len(line), nil
}

// serverHello is pion's ServerHello hook: it notes the server random,
// cipher suite and SRTP profile the SFU is about to send, and sends the
// message unchanged.
func (d *directSender) serverHello(m handshake.MessageServerHello) handshake.Message {
	r := m.Random.MarshalFixed()
	d.hmu.Lock()
	d.serverRandom = r[:]
	d.suite = 0
	if m.CipherSuiteID != nil {
		d.suite = dtls.CipherSuiteID(*m.CipherSuiteID)
	}
	d.profile, d.mki = 0, false
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			d.profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
			d.mki = len(u.MasterKeyIdentifier) > 0
		}
	}
	d.hmu.Unlock()
	return &m
}

// prfHash is the TLS 1.2 PRF's hash of the cipher suites pion offers;
// ok is false for any other suite.
func prfHash(id dtls.CipherSuiteID) (h func() hash.Hash, ok bool) {
	switch id {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:
		return sha256.New, true
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384, true
	}
	return nil, false
}

// keys derives the SFU's SRTP keys (as the DTLS server) from what the
// handshake showed, or says why it cannot.
func (d *directSender) keys() (*srtp.Config, string) {
	d.hmu.Lock()
	e := &exporter{master: d.master, clientRandom: d.clientRandom, serverRandom: d.serverRandom}
	suite, profile, mki := d.suite, d.profile, d.mki
	d.hmu.Unlock()
	switch {
	case e.serverRandom == nil:
		return nil, "the SFU is not the DTLS server"
	case e.master == nil:
		return nil, "no master secret seen"
	case mki:
		return nil, "srtp master key identifier in use"
	}
	h, ok := prfHash(suite)
	if !ok {
		return nil, "cipher suite " + dtls.CipherSuiteName(suite)
	}
	e.hash = h
	cfg := &srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(e, false); err != nil {
		return nil, "srtp profile: " + err.Error()
	}
	return cfg, ""
}

// exporter is RFC 5705's keying material exporter over one handshake's
// values, as DTLS-SRTP uses it (no context).
type exporter struct {
	master, clientRandom, serverRandom []byte
	hash                               func() hash.Hash
}

func (e *exporter) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errors.New("sfu: exporter context not supported")
	}
	seed := make([]byte, 0, len(label)+2*handshake.RandomLength)
	seed = append(append(append(seed, label...), e.clientRandom...), e.serverRandom...)
	return prf.PHash(e.master, seed, length, e.hash)
}

// start derives the keys once the PeerConnection is connected and, if
// every condition holds, turns the direct path on. It says why not
// otherwise ("" when on).
func (d *directSender) start(pc *webrtc.PeerConnection) string {
	keys, why := d.keys()
	if why != "" {
		return why
	}
	ctx, err := srtp.CreateContext(keys.Keys.LocalMasterKey, keys.Keys.LocalMasterSalt, keys.Profile)
	if err != nil {
		return "srtp context: " + err.Error()
	}
	d.statsMu.Lock()
	if !d.pcGone {
		d.pc = pc
	}
	d.statsMu.Unlock()
	d.updateRoute(pc)
	if d.route.Load() == nil {
		return "the selected candidate pair is not on the SFU's UDP sockets"
	}
	d.wmu.Lock()
	d.ctx = ctx
	d.wmu.Unlock()
	d.syncCryptex(pc)
	d.ready.Store(true)
	if d.table != nil {
		if err := d.startReceive(keys); err != nil {
			return "srtp receive context: " + err.Error()
		}
		d.listRoute()
	}
	return ""
}

// listRoute lists the selected pair's remote address, and the other
// addresses the participant was found sending from (refreshFrom), with
// the sockets' filter, once receiving directly has started.
func (d *directSender) listRoute() {
	if !d.recvReady.Load() {
		return
	}
	d.fmu.Lock()
	addrs := slices.Clone(d.extra)
	d.fmu.Unlock()
	if r := d.route.Load(); r != nil && !slices.Contains(addrs, r.to) {
		addrs = append(addrs, r.to)
	}
	d.listAt(addrs)
}

// stop takes the participant off the sockets' filter for good.
func (d *directSender) stop() {
	d.statsMu.Lock()
	d.pc = nil // no GetStats from here on (see pc)
	d.pcGone = true
	d.statsMu.Unlock()
	d.listAt(nil)
	d.fmu.Lock()
	d.stopped = true
	d.fmu.Unlock()
}

// listAt lists the participant at addrs with the sockets' filter,
// instead of where it was listed before.
func (d *directSender) listAt(addrs []netip.AddrPort) {
	if d.table == nil {
		return
	}
	d.fmu.Lock()
	defer d.fmu.Unlock()
	if d.stopped {
		return
	}
	for _, a := range d.from {
		if !slices.Contains(addrs, a) {
			d.table.remove(a, d)
		}
	}
	for _, a := range addrs {
		if a.IsValid() && !slices.Contains(d.from, a) {
			d.table.set(a, d)
		}
	}
	d.from = slices.DeleteFunc(slices.Clone(addrs), func(a netip.AddrPort) bool { return !a.IsValid() })
}

// refreshInterval is how often at most refreshFrom looks for the
// addresses a participant sends from.
const refreshInterval = time.Second

// refreshFrom lists the remote addresses of all the participant's
// candidate pairs that passed ICE's checks on the SFU's UDP sockets, not
// only the selected pair's. A client may send over another pair than
// the one the SFU selected (a browser on a host with several addresses
// does), and its packets then reach the SFU the pion way: the drain of a
// stream read directly calls this when one does, at most once a
// refreshInterval. Only addresses ICE verified (the client answered
// checks there with its credentials) are listed, so no one can list
// another's address.
func (d *directSender) refreshFrom() {
	now := nanotime()
	last := d.refreshed.Load()
	if last != 0 && now-last < int64(refreshInterval) || !d.refreshed.CompareAndSwap(last, now) {
		return
	}
	d.statsMu.Lock()
	pc := d.pc
	if pc == nil {
		d.statsMu.Unlock()
		return
	}
	report := pc.GetStats()
	d.statsMu.Unlock()
	var extra []netip.AddrPort
	for _, st := range report {
		cp, ok := st.(webrtc.ICECandidatePairStats)
		if !ok || cp.State != webrtc.StatsICECandidatePairStateSucceeded {
			continue
		}
		l, lok := report[cp.LocalCandidateID].(webrtc.ICECandidateStats)
		r, rok := report[cp.RemoteCandidateID].(webrtc.ICECandidateStats)
		if !lok || !rok || l.Protocol != "udp" || r.Protocol != "udp" || l.CandidateType != webrtc.ICECandidateTypeHost {
			continue
		}
		la, err1 := netip.ParseAddr(l.IP)
		ra, err2 := netip.ParseAddr(r.IP)
		if err1 != nil || err2 != nil || r.Port <= 0 || r.Port > 65535 || d.sockets(la.Unmap()) == nil {
			continue
		}
		if a := netip.AddrPortFrom(ra.Unmap(), uint16(r.Port)); !slices.Contains(extra, a) {
			extra = append(extra, a)
		}
	}
	d.fmu.Lock()
	d.extra = extra
	d.fmu.Unlock()
	d.listRoute()
}

// syncCryptex follows the negotiated RTP header encryption (RFC 9335):
// pion sets its own sending side's mode from each remote description, so
// call it after every SetRemoteDescription. Packets sent between the two
// go with the mode before.
func (d *directSender) syncCryptex(pc *webrtc.PeerConnection) {
	mode := srtp.CryptexModeDisabled
	for _, tr := range pc.GetTransceivers() {
		if tr.RTPHeaderEncryptionNegotiated() {
			mode = srtp.CryptexModeEnabled
			break
		}
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.ctx == nil || mode == d.cryptex {
		return
	}
	if err := d.ctx.UpdateOptions(srtp.Cryptex(mode)); err == nil {
		d.cryptex = mode
	}
}

// updateRoute follows the selected candidate pair.
func (d *directSender) updateRoute(pc *webrtc.PeerConnection) {
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		d.route.Store(nil)
	} else {
		d.route.Store(d.routeFor(pair))
	}
	d.listRoute()
}

func (d *directSender) routeFor(pair *webrtc.ICECandidatePair) *directRoute {
	l, r := pair.Local, pair.Remote
	if l == nil || r == nil || l.Protocol != webrtc.ICEProtocolUDP || r.Protocol != webrtc.ICEProtocolUDP ||
		l.Typ != webrtc.ICECandidateTypeHost {
		return nil
	}
	la, err1 := netip.ParseAddr(l.Address)
	ra, err2 := netip.ParseAddr(r.Address)
	if err1 != nil || err2 != nil || r.Port == 0 {
		return nil
	}
	c := d.sockets(la.Unmap())
	if c == nil {
		return nil
	}
	return &directRoute{conn: c, to: netip.AddrPortFrom(ra.Unmap(), r.Port)}
}

// send encrypts and sends one packet; sent reports whether the direct
// path took it (false: pion's path should).
func (d *directSender) send(h *rtp.Header, payload []byte) (n int, sent bool, err error) {
	if !d.ready.Load() {
		return 0, false, nil
	}
	r := d.route.Load()
	if r == nil {
		d.dropped.Add(1)
		return 0, true, nil
	}
	size := h.MarshalSize() + len(payload)
	if size > maxDirectPacket {
		return 0, true, errDirectTooLarge
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	hl, err := h.MarshalTo(d.plain)
	if err != nil {
		return 0, true, err
	}
	copy(d.plain[hl:], payload)
	out, err := d.ctx.EncryptRTP(d.sealed[:0], d.plain[:size], h)
	if err != nil {
		return 0, true, err
	}
	if _, err := r.conn.WriteToAddrPort(out, r.to); err != nil {
		return 0, true, err
	}
	d.sent.Add(1)
	return size, true, nil
}

// directFactory puts a directSender's writer at the bottom of every
// local stream's interceptor chain (register it first), below the
// transport-wide sequence numbers, for what is written through the chain
// (see sendPath).
type directFactory struct{ d *directSender }

func (f directFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	i := &directInterceptor{d: f.d}
	f.d.bottom.Store(i)
	return i, nil
}

type directInterceptor struct {
	interceptor.NoOp
	d *directSender

	mu     sync.Mutex
	remote map[uint32]*recvStream // the remote streams bound, by SSRC
	closed bool
}

func (i *directInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if n, sent, err := i.d.send(h, payload); sent {
			i.d.chained.Add(1)
			return n, err
		}
		return w.Write(h, payload, a)
	})
}

// offersPassive reports whether an offer fixes its own DTLS role as the
// server (a=setup:passive; RFC 8842 asks offers for actpass, but an
// answerer must take such an offer). The SFU's usual PeerConnection
// answers as the DTLS server, and pion would then state a=setup:passive
// in the answer too while its DTLS transport rightly takes the client's
// role: neither side would start the handshake. Such a client gets a
// PeerConnection without the direct send path.
func offersPassive(offer string) bool {
	return strings.Contains(offer, "a=setup:passive")
}
