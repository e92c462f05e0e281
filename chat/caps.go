package chat

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	gohash "hash"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"poosms.org/poosms/stanza"
)

// CapsNode is the node poosms names in its own entity capabilities
// (XEP-0115).
const CapsNode = "https://poosms.org"

// Bounds of the capabilities cache: verified hashes kept, and disco
// queries waiting for an answer.
const (
	maxCapsEntries = 10000
	maxCapsPending = 10000
)

// capsCache remembers the features behind clients' verified caps hashes,
// and the disco#info queries sent to learn new ones. A verified entry is
// never replaced: a client answering later for a known hash with other
// features cannot change what the server believes of everyone else who
// announces it.
type capsCache struct {
	mu      sync.Mutex
	byVer   map[string][]string  // capsKey(hash, ver) → features
	pending map[string]capsQuery // iq id → query
	seq     uint64
}

type capsQuery struct {
	sess      Session
	hash, ver string
}

func newCapsCache() *capsCache {
	return &capsCache{byVer: map[string][]string{}, pending: map[string]capsQuery{}}
}

// capsKey names a verified hash: the algorithm and the value.
func capsKey(hash, ver string) string { return hash + " " + ver }

func (c *capsCache) lookup(hash, ver string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.byVer[capsKey(hash, ver)]
	return f, ok
}

// ask records a query and returns its iq id.
func (c *capsCache) ask(q capsQuery) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) >= maxCapsPending {
		// Clients that never answer: forget every old question.
		c.pending = map[string]capsQuery{}
	}
	c.seq++
	id := "caps" + strconv.FormatUint(c.seq, 10)
	c.pending[id] = q
	return id
}

// answered removes and returns the query with this id if sess asked it.
func (c *capsCache) answered(id string, sess Session) (capsQuery, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q, ok := c.pending[id]
	if !ok || q.sess != sess {
		return capsQuery{}, false
	}
	delete(c.pending, id)
	return q, true
}

// forget drops the queries sent to sess (its stream ended).
func (c *capsCache) forget(sess Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, q := range c.pending {
		if q.sess == sess {
			delete(c.pending, id)
		}
	}
}

// remember records the features of a verified hash, unless the hash is
// known already: the first verified answer stays.
func (c *capsCache) remember(hash, ver string, features []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := capsKey(hash, ver)
	if _, known := c.byVer[k]; !known && len(c.byVer) < maxCapsEntries {
		c.byVer[k] = features
	}
}

// presenceCaps reads the XEP-0115 <c/> of an available presence. When the
// session's capabilities become known (now from the cache, or later from
// its answer to a disco#info query) it receives the last PEP items it
// asked for with +notify.
func (s *Service) presenceCaps(ctx context.Context, sess Session, el *stanza.Element, initial bool) {
	if s.pep == nil {
		return
	}
	var ver, h string
	if c := el.Child(NSCaps, "c"); c != nil && c.Attr("hash") != "" {
		ver, h = c.Attr("ver"), c.Attr("hash")
	}
	changed := false
	s.update(sess, func(r *resource) {
		changed = r.capsVer != ver
		if changed {
			r.capsVer, r.features, r.Notify = ver, nil, nil
		}
	})
	if ver == "" || !changed && !initial {
		return
	}
	if f, ok := s.caps.lookup(h, ver); ok {
		s.setFeatures(sess, ver, f)
		s.sendLastItems(ctx, sess)
		return
	}
	node := ""
	if c := el.Child(NSCaps, "c"); c != nil {
		node = c.Attr("node")
	}
	id := s.caps.ask(capsQuery{sess: sess, hash: h, ver: ver})
	q := stanza.NewIQ(stanza.GetIQ).SetAttr("id", id).
		SetAttr("from", s.domain).SetAttr("to", sess.JID().String()).
		Append(stanza.New(NSDiscoInfo, "query").SetAttr("node", node+"#"+ver))
	s.sendDirect(sess, q)
}

// setFeatures records the features of sess if it still announces ver.
func (s *Service) setFeatures(sess Session, ver string, features []string) {
	m := make(map[string]bool, len(features))
	notify := []string{}
	for _, f := range features {
		m[f] = true
		if strings.HasSuffix(f, "+notify") {
			notify = append(notify, f)
		}
	}
	slices.Sort(notify)
	s.update(sess, func(r *resource) {
		if r.capsVer == ver {
			r.features, r.Notify = m, notify
		}
	})
}

// sessionFeatures returns the known features of sess, or nil.
func (s *Service) sessionFeatures(sess Session) map[string]bool {
	var f map[string]bool
	s.update(sess, func(r *resource) { f = r.features })
	return f
}

// serverResponse handles an IQ result or error addressed to the server:
// the answers to its capabilities queries. Anything else is swallowed.
func (s *Service) serverResponse(ctx context.Context, sess Session, el *stanza.Element) {
	q, ok := s.caps.answered(el.ID(), sess)
	if !ok {
		return
	}
	if features, ok := s.capsAnswer(el, q.hash, q.ver); ok {
		s.setFeatures(sess, q.ver, features)
		s.sendLastItems(ctx, sess)
	}
}

// capsAnswer reads the features of a client's answer to a disco#info
// question about its capabilities hash and ver (false: not an answer).
// Only an answer whose hash checks out, and that no other feature list
// could hash to, may vouch for other clients (XEP-0115 §5.4) and is
// remembered; the client itself is believed for its own notifications
// either way.
func (s *Service) capsAnswer(el *stanza.Element, hash, ver string) ([]string, bool) {
	info := el.Child(NSDiscoInfo, "query")
	if el.IQType() != stanza.ResultIQ || info == nil {
		return nil, false
	}
	var features []string
	for _, f := range info.Elements() {
		if f.Space == NSDiscoInfo && f.Local == "feature" {
			features = append(features, f.Attr("var"))
		}
	}
	if h := hashFunc(hash); h != nil {
		if in, ok := capsInput(info); ok && capsHash(h, in) == ver {
			s.caps.remember(hash, ver, features)
		}
	}
	return features, true
}

func hashFunc(name string) gohash.Hash {
	switch name {
	case "sha-1":
		return sha1.New()
	case "sha-256":
		return sha256.New()
	}
	return nil
}

// capsVerOf computes the XEP-0115 §5 verification string of a disco#info
// answer with h.
func capsVerOf(info *stanza.Element, h gohash.Hash) string {
	in, _ := capsInput(info)
	return capsHash(h, in)
}

func capsHash(h gohash.Hash, in string) string {
	h.Write([]byte(in))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// capsInput builds S, the input of the XEP-0115 §5.1 hash, from the
// character data of a disco#info answer: an attribute written &lt; in the
// XML is the character '<', and one written &amp;lt; the four characters
// "&lt;", never turned into '<'.
//
// S separates its factors with '<' and says nothing of where identities
// end and features or forms begin, so different answers can share one S
// (XEP-0390 §1 recounts the attack). unambiguous reports whether this
// answer is the only reading of its S that a well-formed answer could
// give, the condition for letting it vouch for other clients. It is false
// when the answer is ill-formed (§5.4: a repeated identity, feature or
// form type, or a form type with differing values), and when
//   - an identity, feature, form type, field name or value holds a '<',
//     which would read as a separator ("a<b" is the features "a" and "b");
//   - an identity lacks its category or type, or has '/' in them or in its
//     language, or a feature reads as an identity ("client/pc//x"), so
//     that the identities may end elsewhere;
//   - the answer carries a data form (XEP-0128): a form's type, field
//     names and values read as further features, and trailing features
//     as a form.
//
// Forms whose FORM_TYPE is missing or not hidden are left out of S
// (§5.4).
func capsInput(info *stanza.Element) (s string, unambiguous bool) {
	unambiguous = true
	var ids, features []string
	type field struct{ name, text string }
	type form struct {
		typ    string
		fields []field
	}
	var forms []form
	for _, c := range info.Elements() {
		switch {
		case c.Space == NSDiscoInfo && c.Local == "identity":
			cat, typ, lang := c.Attr("category"), c.Attr("type"), c.Lang()
			if cat == "" || typ == "" || strings.Contains(cat+typ+lang, "/") {
				unambiguous = false
			}
			ids = append(ids, cat+"/"+typ+"/"+lang+"/"+c.Attr("name"))
		case c.Space == NSDiscoInfo && c.Local == "feature":
			f := c.Attr("var")
			if p := strings.SplitN(f, "/", 4); len(p) == 4 && p[0] != "" && p[1] != "" {
				unambiguous = false // reads as an identity
			}
			features = append(features, f)
		case c.Space == NSDataForms && c.Local == "x":
			var f form
			typed, ignore := false, false
			for _, fld := range c.Elements() {
				if fld.Space != NSDataForms || fld.Local != "field" {
					continue
				}
				var vals []string
				for _, v := range fld.Elements() {
					if v.Space == NSDataForms && v.Local == "value" {
						vals = append(vals, v.Text())
					}
				}
				if fld.Attr("var") == "FORM_TYPE" {
					if typed || fld.Attr("type") != "hidden" || len(vals) == 0 {
						ignore = true
					} else {
						f.typ, typed = vals[0], true
						if slices.ContainsFunc(vals, func(v string) bool { return v != vals[0] }) {
							unambiguous = false // §5.4: differing form types
						}
					}
					continue
				}
				sort.Strings(vals)
				text := fld.Attr("var") + "<"
				for _, v := range vals {
					text += v + "<"
				}
				if strings.Count(text, "<") != len(vals)+1 {
					unambiguous = false // a '<' in the field name or a value
				}
				f.fields = append(f.fields, field{fld.Attr("var"), text})
			}
			if !typed || ignore {
				continue // §5.4: not part of S
			}
			slices.SortFunc(f.fields, func(a, b field) int { return strings.Compare(a.name, b.name) })
			forms = append(forms, f)
		}
	}
	sort.Strings(ids)
	sort.Strings(features)
	slices.SortFunc(forms, func(a, b form) int { return strings.Compare(a.typ, b.typ) })
	if len(forms) > 0 {
		unambiguous = false
	}
	var b strings.Builder
	add := func(list []string) {
		for i, f := range list {
			if strings.Contains(f, "<") || i > 0 && f == list[i-1] {
				unambiguous = false // a forged separator, or §5.4: repeated
			}
			b.WriteString(f)
			b.WriteByte('<')
		}
	}
	add(ids)
	add(features)
	for i, f := range forms {
		add([]string{f.typ})
		if i > 0 && f.typ == forms[i-1].typ {
			unambiguous = false // §5.4: repeated form type
		}
		for _, fld := range f.fields {
			b.WriteString(fld.text)
		}
	}
	return b.String(), unambiguous
}

// Caps returns the server's own entity capabilities element (XEP-0115),
// for signaling to put in its stream features:
// <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://poosms.org' ver='…'/>.
// A disco#info query with node CapsNode#ver is answered like one without.
func (s *Service) Caps() *stanza.Element {
	return stanza.New(NSCaps, "c").SetAttr("hash", "sha-1").SetAttr("node", CapsNode).SetAttr("ver", s.capsVer())
}

func (s *Service) capsVer() string { return capsVerOf(s.serverInfo(), sha1.New()) }
