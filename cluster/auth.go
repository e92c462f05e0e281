package cluster

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
)

// What a node reads from Redis is believed only when it carries an HMAC
// (SHA-256) made with a key derived from the cluster secret, which Redis
// never sees:
//
//   - a payload in a node's stream is encrypted (AES-256-CTR, with an IV
//     derived from the fields below, which never repeat) and then signed
//     over the cluster's key prefix, the receiving node, the sending node,
//     the send time, the sender's boot number and a sequence number, and
//     the encrypted payload; the receiver drops it unless the signature
//     holds, the send time is within MaxPayloadAge of its own clock and it
//     has not taken that (sender, boot, sequence) before, and only then
//     decrypts it;
//   - a node record is signed over the prefix, the node ID and the JSON
//     record, which carries the time of the heartbeat that wrote it;
//     records older than MaxPayloadAge are not believed either;
//   - a session directory value ("NODE MAC") is signed over the prefix,
//     the full JID and the node.
//
// Each use has its own key, derived from the secret with HKDF, so a value
// signed for one place is never valid in another.

// MinSecretLen is the shortest cluster secret NewRedis accepts, in bytes.
const MinSecretLen = 32

// DefaultMaxPayloadAge bounds how far a payload's send time (and a node
// record's heartbeat time) may be from the reader's clock: the replay
// window after a restart, and the clock skew the nodes tolerate.
const DefaultMaxPayloadAge = 5 * time.Minute

// Reasons a node refuses what it read; the label of
// poosms_cluster_rejected_total.
const (
	RejectSignature    = "bad_signature"     // payload without a valid HMAC
	RejectStale        = "stale"             // payload sent outside the age window
	RejectReplay       = "replay"            // payload taken before
	RejectNodeRecord   = "bad_node_record"   // node record forged, moved or stale
	RejectSessionEntry = "bad_session_entry" // directory value forged or moved
	RejectNotOwner     = "not_owner"         // a node spoke for a session it does not serve
)

// macLen is the length of an HMAC-SHA256 tag.
const macLen = sha256.Size

// authLen is the length of a stream entry's auth field: boot, sequence
// and the tag.
const authLen = 8 + 8 + macLen

// signer signs and checks what one cluster (one secret, one key prefix)
// keeps in Redis.
type signer struct {
	prefix     string
	payloadKey *macKey
	ivKey      *macKey
	cipher     cipher.Block // payload encryption
	recordKey  *macKey
	sessionKey *macKey
}

// macKey is an HMAC key with a pool of hashes keyed with it, so signing
// on the hot path allocates little.
type macKey struct{ pool sync.Pool }

func newMACKey(key []byte) *macKey {
	k := &macKey{}
	k.pool.New = func() any { return hmac.New(sha256.New, key) }
	return k
}

func newSigner(secret []byte, prefix string) (signer, error) {
	if len(secret) < MinSecretLen {
		return signer{}, fmt.Errorf("cluster: secret of %d bytes: want at least %d", len(secret), MinSecretLen)
	}
	key := func(use string) ([]byte, error) {
		return hkdf.Key(sha256.New, secret, nil, "poosms cluster "+use+" v1", 32)
	}
	s := signer{prefix: prefix}
	for _, k := range []struct {
		use string
		key **macKey
	}{{"payload", &s.payloadKey}, {"payload iv", &s.ivKey}, {"node record", &s.recordKey}, {"session", &s.sessionKey}} {
		b, err := key(k.use)
		if err != nil {
			return signer{}, fmt.Errorf("cluster: derive keys: %w", err)
		}
		*k.key = newMACKey(b)
	}
	enc, err := key("payload encryption")
	if err != nil {
		return signer{}, fmt.Errorf("cluster: derive keys: %w", err)
	}
	if s.cipher, err = aes.NewCipher(enc); err != nil {
		return signer{}, fmt.Errorf("cluster: payload cipher: %w", err)
	}
	return s, nil
}

// mac returns the tag of parts under key; each part is length-prefixed
// so no two different lists of parts give the same input.
func (s signer) mac(key *macKey, parts ...[]byte) []byte {
	h := key.pool.Get().(hash.Hash)
	defer key.pool.Put(h)
	h.Reset()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s.prefix)))])
	h.Write([]byte(s.prefix))
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write(p)
	}
	return h.Sum(nil)
}

// envelope is what authenticates one stream entry besides its payload.
type envelope struct {
	from  NodeID
	stamp int64 // send time, Unix nanoseconds
	boot  uint64
	seq   uint64
}

func (e envelope) parts(to NodeID, sealed []byte) [][]byte {
	var nums [24]byte
	binary.BigEndian.PutUint64(nums[0:], uint64(e.stamp))
	binary.BigEndian.PutUint64(nums[8:], e.boot)
	binary.BigEndian.PutUint64(nums[16:], e.seq)
	return [][]byte{[]byte(to), []byte(e.from), nums[:], sealed}
}

// crypt encrypts or decrypts a payload of e for node to. The IV is a MAC
// of everything that makes e unique (sender, boot, sequence…), so no two
// payloads share a key stream.
func (s signer) crypt(to NodeID, e envelope, in []byte) []byte {
	iv := s.mac(s.ivKey, e.parts(to, nil)...)[:aes.BlockSize]
	out := make([]byte, len(in))
	cipher.NewCTR(s.cipher, iv).XORKeyStream(out, in)
	return out
}

// sealPayload encrypts payload for node to and returns it with the auth
// field that signs it.
func (s signer) sealPayload(to NodeID, e envelope, payload []byte) (sealed, auth []byte) {
	sealed = s.crypt(to, e, payload)
	auth = make([]byte, 16, authLen)
	binary.BigEndian.PutUint64(auth[0:], e.boot)
	binary.BigEndian.PutUint64(auth[8:], e.seq)
	return sealed, append(auth, s.mac(s.payloadKey, e.parts(to, sealed)...)...)
}

// openPayload checks the auth field of an entry in node to's stream and
// returns its payload, decrypted, and its boot and sequence numbers.
func (s signer) openPayload(to NodeID, from NodeID, stamp int64, auth, sealed []byte) (payload []byte, boot, seq uint64, ok bool) {
	if len(auth) != authLen || from == "" {
		return nil, 0, 0, false
	}
	e := envelope{from: from, stamp: stamp,
		boot: binary.BigEndian.Uint64(auth[0:]), seq: binary.BigEndian.Uint64(auth[8:])}
	if !hmac.Equal(auth[16:], s.mac(s.payloadKey, e.parts(to, sealed)...)) {
		return nil, 0, 0, false
	}
	return s.crypt(to, e, sealed), e.boot, e.seq, true
}

// record is a node record as stored: the node's advertisement and the
// time of the heartbeat that wrote it.
type record struct {
	Node
	Beat int64 `json:"beat"` // Unix milliseconds
}

// sealRecord returns the stored form of n's record: the hex tag, then
// the JSON.
func (s signer) sealRecord(n Node, beat time.Time) ([]byte, error) {
	js, err := json.Marshal(record{Node: n, Beat: beat.UnixMilli()})
	if err != nil {
		return nil, err
	}
	tag := s.mac(s.recordKey, []byte(n.ID), js)
	out := make([]byte, 0, 2*macLen+len(js))
	out = hex.AppendEncode(out, tag)
	return append(out, js...), nil
}

var errBadRecord = errors.New("cluster: node record not signed with the cluster secret")

// openRecord checks the stored record of node id and returns it. A
// record signed for another ID, or written longer than maxAge ago (by
// now's clock), is refused.
func (s signer) openRecord(id NodeID, v string, now time.Time, maxAge time.Duration) (Node, error) {
	if len(v) < 2*macLen {
		return Node{}, errBadRecord
	}
	tag, err := hex.DecodeString(v[:2*macLen])
	js := []byte(v[2*macLen:])
	if err != nil || !hmac.Equal(tag, s.mac(s.recordKey, []byte(id), js)) {
		return Node{}, errBadRecord
	}
	var rec record
	if err := json.Unmarshal(js, &rec); err != nil || rec.ID != id {
		return Node{}, errBadRecord
	}
	if age := now.Sub(time.UnixMilli(rec.Beat)); age > maxAge || age < -maxAge {
		return Node{}, fmt.Errorf("cluster: node record of %s written %s ago: %w", id, age.Round(time.Second), errBadRecord)
	}
	return rec.Node, nil
}

// sealSession returns the directory value saying node serves full:
// "NODE HEXTAG". Scripts read the node as what comes before the space.
func (s signer) sealSession(full string, node NodeID) string {
	return string(node) + " " + hex.EncodeToString(s.mac(s.sessionKey, []byte(full), []byte(node)))
}

// openSession checks a directory value for full and returns its node.
func (s signer) openSession(full, v string) (NodeID, bool) {
	node, tag, ok := strings.Cut(v, " ")
	if !ok || node == "" {
		return "", false
	}
	want := hex.EncodeToString(s.mac(s.sessionKey, []byte(full), []byte(node)))
	if !hmac.Equal([]byte(tag), []byte(want)) {
		return "", false
	}
	return NodeID(node), true
}

// replayWindow is how many sequence numbers below the highest one seen
// from a sender are still told apart; older ones are refused. Sends run
// concurrently, so a sender's payloads may land slightly out of order;
// this leaves room for 65536 of them to overtake one.
const replayWindow = 1 << 16

// replayGuard remembers which payloads a reader has taken, per sender and
// boot, so each is taken once. A sender's boot it has heard nothing from
// for longer than maxAge is forgotten: any payload of that boot it could
// still be shown is then older than maxAge and refused as stale.
// It belongs to one goroutine.
type replayGuard struct {
	maxAge  time.Duration
	senders map[NodeID]map[uint64]*seqWindow
	pruned  time.Time
}

type seqWindow struct {
	top    uint64
	bits   [replayWindow / 64]uint64
	newest int64 // latest send time seen, Unix nanoseconds
}

func newReplayGuard(maxAge time.Duration) *replayGuard {
	return &replayGuard{maxAge: maxAge, senders: map[NodeID]map[uint64]*seqWindow{}}
}

// fresh reports whether a payload sent at stamp is within the age window.
func (g *replayGuard) fresh(now time.Time, stamp int64) bool {
	age := now.Sub(time.Unix(0, stamp))
	return age <= g.maxAge && age >= -g.maxAge
}

// seen reports whether (from, boot, seq) was taken before, or is too far
// behind the newest to tell.
func (g *replayGuard) seen(from NodeID, boot, seq uint64) bool {
	w := g.senders[from][boot]
	if w == nil || seq > w.top {
		return false
	}
	if w.top-seq >= replayWindow {
		return true
	}
	return w.bits[(seq/64)%uint64(len(w.bits))]&(1<<(seq%64)) != 0
}

// mark records (from, boot, seq), sent at stamp, as taken.
func (g *replayGuard) mark(now time.Time, from NodeID, boot, seq uint64, stamp int64) {
	if now.Sub(g.pruned) > g.maxAge/4 {
		g.prune(now)
	}
	boots := g.senders[from]
	if boots == nil {
		boots = map[uint64]*seqWindow{}
		g.senders[from] = boots
	}
	w := boots[boot]
	if w == nil {
		w = &seqWindow{top: seq}
		boots[boot] = w
	}
	if seq > w.top {
		if seq-w.top >= replayWindow {
			clear(w.bits[:])
		} else {
			// Clear what lies between the old top and seq, a word at a
			// time where a whole word is skipped.
			for s := w.top + 1; s <= seq; {
				i := (s / 64) % uint64(len(w.bits))
				if s%64 == 0 && seq-s >= 63 {
					w.bits[i] = 0
					s += 64
					continue
				}
				w.bits[i] &^= 1 << (s % 64)
				s++
			}
		}
		w.top = seq
	}
	w.bits[(seq/64)%uint64(len(w.bits))] |= 1 << (seq % 64)
	w.newest = max(w.newest, stamp)
}

// prune forgets the boots nothing fresh has come from.
func (g *replayGuard) prune(now time.Time) {
	g.pruned = now
	for from, boots := range g.senders {
		for b, w := range boots {
			if !g.fresh(now, w.newest) {
				delete(boots, b)
			}
		}
		if len(boots) == 0 {
			delete(g.senders, from)
		}
	}
}
