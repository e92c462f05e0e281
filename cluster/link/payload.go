package link

import (
	"encoding/binary"
	"errors"
	"fmt"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/stanza"
)

// What one node sends another. Every payload starts with its kind.
//
// The cluster authenticates every payload as a whole (the sender holds
// the cluster secret; see package cluster), whatever its kind, so a new
// kind needs nothing more to be signed. What a kind may say is then
// checked in Handle: kindState, the state entries of kindStates,
// kindRoom and kindKick speak for sessions and are believed only for
// sessions the session directory says the sender serves (kindKick: that
// the sender now serves), entry by entry, with one look-up in the
// directory per payload; kindFedRoom speaks for a user of another
// server, which any node's federation may have proved, and is refused
// for an address of a domain served here; kindGone and the gone entries
// of kindStates only ever remove the sender's own sessions from the
// mirror; the other kinds ask the receiver to do what it may do at any
// time (deliver to its own sessions, drain offline queues, reload a
// blocklist or the account journal from the store, send a snapshot).
// kindState and kindStates carry at most maxEntries entries; a payload
// claiming more is refused whole.
const (
	// kindDeliver: a stanza for a session the receiver serves.
	// Fields: the session's full JID, the stanza.
	kindDeliver byte = 1
	// kindRoom: a stanza for a room or conference the receiver hosts.
	// Fields: the sender's full JID, the stanza.
	kindRoom byte = 2
	// kindState: the routing state of some of the sender's sessions.
	// A flags byte (first, last chunk of a full snapshot), then entries.
	kindState byte = 3
	// kindGone: one of the sender's sessions ended. Field: its full JID.
	kindGone byte = 4
	// kindKick: a newer login elsewhere took this full JID; end the
	// receiver's session. Field: the full JID.
	kindKick byte = 5
	// kindHello: the sender (re)joined; answer with a full snapshot.
	kindHello byte = 6
	// kindDrain: messages for this bare JID were stored offline; deliver
	// them to its sessions on the receiver. Field: the bare JID.
	kindDrain byte = 7
	// kindBlocklist: a user changed their blocklist; read it again.
	// Field: the user's localpart.
	kindBlocklist byte = 8
	// kindAccounts: the sender deleted an account; read the account
	// journal in the store now rather than at the next poll. No fields:
	// what to do is in the store, never in the payload.
	kindAccounts byte = 9
	// kindFedRoom: a stanza a user of another server sent to a room the
	// receiver hosts, received by the sender over federation (which
	// checked its from). Fields: that user's full JID, the stanza.
	kindFedRoom byte = 10
	// kindStates: changes of some of the sender's sessions, in the order
	// they happened (see outbox.go): a count (at most maxEntries), then
	// for each an op byte, the session's full JID and, for opState, its
	// state as in a kindState entry.
	kindStates byte = 11
)

// Ops of a kindStates entry.
const (
	opState byte = 1 // the session's routing state
	opGone  byte = 2 // the session ended
)

// Flags of a kindState payload.
const (
	snapFirst byte = 1 << iota // the first chunk of a full snapshot
	snapLast                   // the last chunk of a full snapshot
)

// Flags of one state entry.
const (
	stAvailable byte = 1 << iota
	stInterested
	stCarbons
	stBlockPush
)

// entry is one session's state in a kindState payload.
type entry struct {
	full string
	st   chat.ResourceState
}

var (
	errShort   = errors.New("link: truncated payload")
	errTooMany = fmt.Errorf("link: more than %d entries in a payload", maxEntries)
	errOp      = errors.New("link: unknown entry op")
)

type encoder struct{ b []byte }

func (e *encoder) byte(v byte) { e.b = append(e.b, v) }
func (e *encoder) int(v int64) { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) string(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	if d.err != nil {
		return ""
	}
	l, n := binary.Uvarint(d.b)
	if n <= 0 || uint64(len(d.b)-n) < l {
		d.err = errShort
		return ""
	}
	s := string(d.b[n : n+int(l)])
	d.b = d.b[n+int(l):]
	return s
}

// addressed encodes a payload of kind carrying a JID and a stanza.
func addressed(kind byte, full string, el *stanza.Element) []byte {
	e := encoder{b: make([]byte, 0, 64+len(full))}
	e.byte(kind)
	e.string(full)
	if el != nil {
		e.string(el.String())
	}
	return e.b
}

// decodeAddressed reads what addressed wrote after the kind byte.
func decodeAddressed(d *decoder, withStanza bool) (string, *stanza.Element, error) {
	full := d.string()
	var raw string
	if withStanza {
		raw = d.string()
	}
	if d.err != nil {
		return "", nil, d.err
	}
	if !withStanza {
		return full, nil, nil
	}
	el, err := stanza.Parse([]byte(raw))
	if err != nil {
		return "", nil, fmt.Errorf("link: stanza in payload: %w", err)
	}
	return full, el, nil
}

// states encodes a kindState payload.
func states(flags byte, es []entry) []byte {
	e := encoder{}
	e.byte(kindState)
	e.byte(flags)
	e.int(int64(len(es)))
	for _, x := range es {
		e.string(x.full)
		e.state(x.st)
	}
	return e.b
}

// state encodes a session's routing state.
func (e *encoder) state(st chat.ResourceState) {
	var f byte
	if st.Available {
		f |= stAvailable
	}
	if st.Interested {
		f |= stInterested
	}
	if st.Carbons {
		f |= stCarbons
	}
	if st.BlockPush {
		f |= stBlockPush
	}
	e.byte(f)
	e.int(int64(st.Priority))
	p := ""
	if st.Presence != nil {
		p = st.Presence.String()
	}
	e.string(p)
	if st.Notify == nil {
		e.int(-1)
	} else {
		e.int(int64(len(st.Notify)))
		for _, f := range st.Notify {
			e.string(f)
		}
	}
}

// decodeStates reads what states wrote after the kind byte. A payload
// with more than maxEntries entries is refused whole.
func decodeStates(d *decoder) (flags byte, es []entry, err error) {
	flags = d.byte()
	n := d.int()
	if d.err != nil || n < 0 || n > int64(len(d.b)) {
		return 0, nil, errShort
	}
	if n > maxEntries {
		return 0, nil, errTooMany
	}
	es = make([]entry, 0, n)
	for range n {
		var x entry
		x.full = d.string()
		if x.st, err = d.state(); err != nil {
			return 0, nil, err
		}
		es = append(es, x)
	}
	return flags, es, nil
}

// state reads what encoder.state wrote.
func (d *decoder) state() (st chat.ResourceState, err error) {
	f := d.byte()
	st.Priority = int(d.int())
	p := d.string()
	if nf := d.int(); nf >= 0 && nf <= int64(len(d.b)) {
		st.Notify = make([]string, 0, nf)
		for range nf {
			st.Notify = append(st.Notify, d.string())
		}
	} else if nf != -1 {
		d.err = errShort
	}
	if d.err != nil {
		return st, d.err
	}
	st.Available = f&stAvailable != 0
	st.Interested = f&stInterested != 0
	st.Carbons = f&stCarbons != 0
	st.BlockPush = f&stBlockPush != 0
	if p != "" {
		el, err := stanza.Parse([]byte(p))
		if err != nil {
			return st, fmt.Errorf("link: presence in state: %w", err)
		}
		st.Presence = el
	}
	return st, nil
}

// stateChange is the outbox's change for a session's new state.
func stateChange(full string, st chat.ResourceState) change {
	e := encoder{b: make([]byte, 0, 16+len(full))}
	e.byte(opState)
	e.string(full)
	e.state(st)
	return change{full: full, enc: e.b}
}

// goneChange is the outbox's change for a session that ended.
func goneChange(full string) change {
	e := encoder{b: make([]byte, 0, 4+len(full))}
	e.byte(opGone)
	e.string(full)
	return change{full: full, gone: true, enc: e.b}
}

// batchPayload encodes a kindStates payload of changes (at most
// maxEntries).
func batchPayload(cs []change) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, c := range cs {
		n += len(c.enc)
	}
	e := encoder{b: make([]byte, 0, n)}
	e.byte(kindStates)
	e.int(int64(len(cs)))
	for _, c := range cs {
		e.b = append(e.b, c.enc...)
	}
	return e.b
}

// update is one decoded entry of a kindStates payload.
type update struct {
	entry
	gone bool
}

// decodeBatch reads what batchPayload wrote after the kind byte. A
// payload with more than maxEntries entries is refused whole.
func decodeBatch(d *decoder) ([]update, error) {
	n := d.int()
	if d.err != nil || n < 0 || n > int64(len(d.b)) {
		return nil, errShort
	}
	if n > maxEntries {
		return nil, errTooMany
	}
	us := make([]update, 0, n)
	for range n {
		var u update
		op := d.byte()
		u.full = d.string()
		switch op {
		case opState:
			st, err := d.state()
			if err != nil {
				return nil, err
			}
			u.st = st
		case opGone:
			u.gone = true
		default:
			if d.err == nil {
				d.err = errOp
			}
		}
		if d.err != nil {
			return nil, d.err
		}
		us = append(us, u)
	}
	return us, nil
}
