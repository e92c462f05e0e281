package muc

import (
	"sync"

	"poosms.org/poosms/stanza"
)

// shared is a stanza a room sends to many sessions, the same but for its
// to. It is encoded once, when first sent, and every session that takes
// encoded stanzas (signaling's) keeps that one copy of the bytes: a room
// message to 100 occupants costs its size once, not 100 times.
type shared struct {
	el   *stanza.Element // without to; not changed once shared
	once sync.Once
	w    stanza.Encoded
}

// encodedSender is a session that can take a stanza encoded once for
// several recipients (*signaling.Session). Others get a copy of el.
type encodedSender interface {
	SendEncoded(el *stanza.Element, w stanza.Encoded, to string) error
}

// share queues sh for the session to.
func (fx *effects) share(to Session, sh *shared) {
	fx.out = append(fx.out, delivery{to: to, sh: sh})
}

// send hands d to its session.
func (d delivery) send() error {
	if d.sh == nil {
		return d.to.Send(d.el)
	}
	to := d.to.JID().String()
	if es, ok := d.to.(encodedSender); ok {
		d.sh.once.Do(func() { d.sh.w = stanza.Encode(d.sh.el) })
		return es.SendEncoded(d.sh.el, d.sh.w, to)
	}
	c := d.sh.el.Copy()
	c.SetAttr("to", to)
	return d.to.Send(c)
}

// fanOut queues a stanza about occupant o to every session in r. What
// such a stanza says differs between o's own sessions, viewers who see
// real JIDs and the others, and nothing else but the to: build makes it
// for a viewer, at most once per kind of viewer, and the sessions of that
// kind share it. A nil from build sends that kind nothing.
func (r *room) fanOut(fx *effects, o *occupant, build func(v *occupant, to Session) *stanza.Element) {
	var made [3]*shared
	var built [3]bool
	for _, v := range r.sorted() {
		k := 2
		switch {
		case v == o:
			k = 0
		case r.seesJIDs(v.role):
			k = 1
		}
		for _, sess := range v.sessions {
			if !built[k] {
				built[k] = true
				if el := build(v, sess); el != nil {
					el.SetAttr("to", "")
					made[k] = &shared{el: el}
				}
			}
			if made[k] != nil {
				fx.share(sess, made[k])
			}
		}
	}
}
