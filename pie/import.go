package pie

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Options shape an import.
type Options struct {
	// Domain is this server's domain: only the file's <host/> with that
	// JID is imported.
	Domain string
	// Iterations is the PBKDF2 count for verifiers derived from a plain
	// password in the file.
	Iterations int
	// OfflineLimit is the most offline messages kept per user; more are
	// left out with a warning.
	OfflineLimit int
	// MaxStanzaBytes bounds one offline message.
	MaxStanzaBytes int
	// Now stamps what the file gives no time for. Default: time.Now.
	Now func() time.Time
}

// Import reads the XEP-0227 files at paths (a folder stands for the *.xml
// files in it) into st. It follows ejabberd's <xi:include/> to files in
// the same folder. An account that already exists is left as it is; other
// problems with one item are warnings, and only a store failure or a file
// that is not XML stops the import.
func Import(ctx context.Context, st Store, opt Options, paths ...string) (Stats, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	im := &importer{st: st, opt: opt, stats: Stats{Credentials: map[string]int{}, Skipped: map[string]int{}}, seen: map[string]bool{}}
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			return im.stats, err
		}
		for _, f := range files {
			if err := im.file(ctx, f, 0); err != nil {
				return im.stats, err
			}
		}
	}
	return im.stats, nil
}

// expand lists path, or the *.xml files of a folder, sorted.
func expand(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("pie: import: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*.xml"))
	if err != nil {
		return nil, fmt.Errorf("pie: import: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("pie: import: no .xml files in %s", path)
	}
	return files, nil
}

type importer struct {
	st    Store
	opt   Options
	stats Stats
	seen  map[string]bool // files read, so an include loop reads each once
}

// maxIncludeDepth bounds <xi:include/> nesting (ejabberd uses one level).
const maxIncludeDepth = 2

// file imports one file, streaming: one <user/> in memory at a time.
func (im *importer) file(ctx context.Context, path string, depth int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("pie: import: %w", err)
	}
	if im.seen[abs] {
		return nil
	}
	im.seen[abs] = true
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("pie: import: %w", err)
	}
	defer f.Close()
	dec := stanza.NewDecoder(bufio.NewReader(f))
	host := "" // the JID of the <host/> being read, when it is ours
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pie: import %s: %w", path, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return fmt.Errorf("pie: import %s: a DTD or entity declaration is not accepted", path)
		case xml.EndElement:
			if t.Name.Space == NS && t.Name.Local == "host" {
				host = ""
			}
		case xml.StartElement:
			switch {
			case t.Name.Space == NS && t.Name.Local == "server-data":
			case t.Name.Space == NS && t.Name.Local == "host":
				h := attr(t, "jid")
				if d, err := jid.New("", h, ""); err == nil && d.Domainpart() == im.opt.Domain {
					host = d.Domainpart()
				} else {
					if !slices.Contains(im.stats.OtherHosts, h) {
						im.stats.OtherHosts = append(im.stats.OtherHosts, h)
					}
					if err := dec.Skip(); err != nil {
						return fmt.Errorf("pie: import %s: %w", path, err)
					}
				}
			case t.Name.Space == NS && t.Name.Local == "user" && host != "":
				u, err := stanza.Read(dec, t)
				if err != nil {
					return fmt.Errorf("pie: import %s: user %q: %w", path, attr(t, "name"), err)
				}
				if err := im.user(ctx, u); err != nil {
					return err
				}
			case t.Name.Space == NSXInclude && t.Name.Local == "include":
				next, err := includePath(path, attr(t, "href"))
				if err == nil && depth >= maxIncludeDepth {
					err = errors.New("includes nested too deep")
				}
				if err != nil {
					return fmt.Errorf("pie: import %s: <xi:include href=%q>: %w", path, attr(t, "href"), err)
				}
				if err := im.file(ctx, next, depth+1); err != nil {
					return err
				}
				if err := dec.Skip(); err != nil {
					return fmt.Errorf("pie: import %s: %w", path, err)
				}
			default:
				im.stats.Skipped[t.Name.Local]++
				if err := dec.Skip(); err != nil {
					return fmt.Errorf("pie: import %s: %w", path, err)
				}
			}
		}
	}
}

// includePath resolves an <xi:include/> href: a file in the folder of the
// including file, nothing else (no URL, no absolute path, no "..").
func includePath(from, href string) (string, error) {
	if href == "" || strings.Contains(href, ":") || filepath.IsAbs(href) || !filepath.IsLocal(href) {
		return "", errors.New("only a file in the same folder can be included")
	}
	return filepath.Join(filepath.Dir(from), href), nil
}

func attr(t xml.StartElement, local string) string {
	for _, a := range t.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// user stores one <user/>: the account first, then its data.
func (im *importer) user(ctx context.Context, u *stanza.Element) error {
	raw := u.Attr("name")
	j, err := jid.New(raw, im.opt.Domain, "")
	if err != nil || j.Localpart() == "" {
		im.stats.warn("user %q left out: not a valid user name", raw)
		return nil
	}
	name := j.Localpart()
	owner := j.Bare().String()
	cred, kind, problem := credentialsOf(u, im.opt.Iterations)
	if problem != "" {
		im.stats.warn("%s: %s", name, problem)
	}
	switch err := im.st.CreateAccount(ctx, name, cred); {
	case errors.Is(err, store.ErrExists):
		im.stats.Existing = append(im.stats.Existing, name)
		return nil
	case err != nil:
		return fmt.Errorf("pie: import %s: %w", name, err)
	}
	im.stats.Users++
	im.stats.Credentials[kind]++

	roster := map[string]bool{}
	var pending []string
	nodes := map[string]store.PEPNode{}
	var nodeOrder []string
	items := map[string][]*stanza.Element{}
	addNode := func(n string) {
		if _, ok := nodes[n]; !ok {
			nodes[n] = defaultNode(n)
			nodeOrder = append(nodeOrder, n)
		}
	}
	for _, c := range u.Elements() {
		var err error
		switch {
		case c.Space == NSScram:
		case c.Space == nsRoster && c.Local == "query":
			err = im.roster(ctx, name, owner, c, roster)
		case (c.Space == nsClient || c.Space == NS) && c.Local == "presence" && c.PresenceType() == stanza.SubscribePresence:
			// Prosody writes it without a namespace of its own.
			if from, ok := bareJID(c.From()); ok && from != owner {
				pending = append(pending, from)
			}
		case c.Space == nsVCard && c.Local == "vCard":
			var ok bool
			ok, err = im.put(name, "vCard", c, maxVCardBytes, func(b []byte) error { return im.st.SetVCard(ctx, name, b) })
			if ok {
				im.stats.VCards++
			}
		case c.Space == nsPrivate && c.Local == "query":
			err = im.private(ctx, name, c)
		case c.Space == NS && c.Local == "offline-messages":
			err = im.offline(ctx, name, c)
		case c.Space == nsPubSubOwn && c.Local == "pubsub":
			for _, cfg := range c.Elements() {
				if cfg.Local != "configure" || !validNodeName(cfg.Attr("node")) {
					continue
				}
				n := cfg.Attr("node")
				addNode(n)
				nodes[n] = configure(nodes[n], cfg.Child(nsDataForms, "x"), name, &im.stats)
			}
		case c.Space == nsPubSub && c.Local == "pubsub":
			for _, el := range c.Elements() {
				if el.Local != "items" || !validNodeName(el.Attr("node")) {
					continue
				}
				addNode(el.Attr("node"))
				items[el.Attr("node")] = append(items[el.Attr("node")], el.Elements()...)
			}
		default:
			im.stats.Skipped[c.Local]++
		}
		if err != nil {
			return err
		}
	}
	for _, from := range pending {
		it := store.RosterItem{Contact: from, PendingIn: true}
		if roster[from] {
			var err error
			if it, err = im.st.RosterItem(ctx, name, from); err != nil {
				return fmt.Errorf("pie: import %s: %w", name, err)
			}
			it.PendingIn = true
		}
		if err := im.st.PutRosterItem(ctx, name, it); err != nil {
			return fmt.Errorf("pie: import %s: roster: %w", name, err)
		}
	}
	for _, n := range nodeOrder {
		if err := im.pep(ctx, name, owner, nodes[n], items[n]); err != nil {
			return err
		}
	}
	return nil
}

// roster stores the items of a jabber:iq:roster query.
func (im *importer) roster(ctx context.Context, name, owner string, q *stanza.Element, seen map[string]bool) error {
	for _, el := range q.Elements() {
		if el.Local != "item" {
			continue
		}
		contact, ok := bareJID(el.Attr("jid"))
		if !ok || contact == owner || seen[contact] {
			im.stats.warn("%s: roster item %q left out: not a valid contact, or a repeated one", name, el.Attr("jid"))
			continue
		}
		sub := el.Attr("subscription")
		switch sub {
		case "":
			sub = store.SubNone
		case store.SubNone, store.SubTo, store.SubFrom, store.SubBoth:
		default:
			im.stats.warn("%s: roster item %s left out: subscription %q", name, contact, sub)
			continue
		}
		it := store.RosterItem{Contact: contact, Name: el.Attr("name"), Subscription: sub,
			AskOut: el.Attr("ask") == "subscribe", Listed: true}
		for _, g := range el.Elements() {
			if g.Local == "group" && g.Text() != "" && !slices.Contains(it.Groups, g.Text()) {
				it.Groups = append(it.Groups, g.Text())
			}
		}
		if err := im.st.PutRosterItem(ctx, name, it); err != nil {
			return fmt.Errorf("pie: import %s: roster: %w", name, err)
		}
		seen[contact] = true
		im.stats.RosterItems++
	}
	return nil
}

// private stores each payload of a jabber:iq:private query under its
// namespace.
func (im *importer) private(ctx context.Context, name string, q *stanza.Element) error {
	for _, el := range q.Elements() {
		ns := el.Space
		if ns == "" || ns == nsClient || ns == nsPrivate || ns == NS || len(ns) > 1024 {
			im.stats.warn("%s: private XML <%s/> left out: it needs a namespace of its own", name, el.Local)
			continue
		}
		ok, err := im.put(name, "private XML "+ns, el, maxPrivateBytes, func(b []byte) error { return im.st.SetPrivateXML(ctx, name, ns, b) })
		if err != nil {
			return err
		}
		if ok {
			im.stats.PrivateXML++
		}
	}
	return nil
}

// offline queues the messages of <offline-messages/>, each stamped with
// the time of its delay from this server (which is then removed: poosms
// adds it again on delivery).
func (im *importer) offline(ctx context.Context, name string, q *stanza.Element) error {
	for _, m := range q.Elements() {
		if m.Local != "message" || (m.Space != nsClient && m.Space != "") {
			continue
		}
		m.Space = nsClient
		stamp := im.opt.Now().UTC()
		for i := len(m.Children) - 1; i >= 0; i-- {
			d, ok := m.Children[i].(*stanza.Element)
			if !ok || d.Space != nsDelay || d.Local != "delay" || (d.Attr("from") != im.opt.Domain && d.Attr("from") != "") {
				continue
			}
			if t, err := time.Parse(time.RFC3339Nano, d.Attr("stamp")); err == nil {
				stamp = t.UTC()
				m.Children = slices.Delete(m.Children, i, i+1)
			}
			break
		}
		raw := []byte(m.String())
		if len(raw) > im.opt.MaxStanzaBytes {
			im.stats.warn("%s: an offline message of %d bytes left out (--max-stanza-bytes is %d)", name, len(raw), im.opt.MaxStanzaBytes)
			continue
		}
		// The sender's bare JID, as chat records it, so that deleting the
		// sender's account withdraws the message.
		sender, _ := bareJID(m.From())
		switch err := im.st.PushOffline(ctx, name, sender, stamp, raw, im.opt.OfflineLimit); {
		case errors.Is(err, store.ErrQueueFull):
			im.stats.warn("%s: offline messages beyond --offline-limit (%d) left out", name, im.opt.OfflineLimit)
			return nil
		case err != nil:
			return fmt.Errorf("pie: import %s: offline message: %w", name, err)
		}
		im.stats.OfflineMessages++
	}
	return nil
}

// pep creates a node and publishes its items, oldest first.
func (im *importer) pep(ctx context.Context, name, owner string, n store.PEPNode, items []*stanza.Element) error {
	if err := im.st.PutPEPNode(ctx, name, n); err != nil {
		return fmt.Errorf("pie: import %s: PEP node %s: %w", name, n.Node, err)
	}
	im.stats.PEPNodes++
	for _, it := range items {
		if it.Local != "item" {
			continue
		}
		payload := it.FirstElement()
		// Prosody's export wraps the stored <item/> in another.
		if payload != nil && payload.Local == "item" && payload.Space == nsPubSub {
			payload = payload.FirstElement()
		}
		id := it.Attr("id")
		if payload == nil || id == "" || len(id) > maxPEPName {
			im.stats.warn("%s: an item of PEP node %s left out: no id or no payload", name, n.Node)
			continue
		}
		raw := []byte(payload.String())
		if len(raw) > maxPEPPayload {
			im.stats.warn("%s: PEP item %s/%s left out: larger than %d bytes", name, n.Node, id, maxPEPPayload)
			continue
		}
		pi := store.PEPItem{ID: id, Publisher: owner, Stamp: im.opt.Now().UTC(), Payload: raw}
		// Only the owner publishes on their PEP service.
		if p, err := jid.Parse(it.Attr("publisher")); err == nil && p.Bare().String() == owner {
			pi.Publisher = p.String()
		}
		for _, a := range it.Attrs {
			if a.Space == NSPoosms && a.Local == "stamp" {
				if t, err := time.Parse(time.RFC3339Nano, a.Value); err == nil {
					pi.Stamp = t.UTC()
				}
			}
		}
		if err := im.st.PublishPEPItem(ctx, name, n.Node, pi); err != nil {
			return fmt.Errorf("pie: import %s: PEP item %s/%s: %w", name, n.Node, id, err)
		}
		im.stats.PEPItems++
	}
	return nil
}

// put stores el serialised if it fits in limit, and reports whether it
// did.
func (im *importer) put(name, what string, el *stanza.Element, limit int, save func([]byte) error) (bool, error) {
	raw := []byte(el.String())
	if len(raw) > limit {
		im.stats.warn("%s: %s left out: larger than %d bytes", name, what, limit)
		return false, nil
	}
	if err := save(raw); err != nil {
		return false, fmt.Errorf("pie: import %s: %s: %w", name, what, err)
	}
	return true, nil
}

func bareJID(s string) (string, bool) {
	j, err := jid.Parse(s)
	if err != nil || j.Domainpart() == "" {
		return "", false
	}
	return j.Bare().String(), true
}

func validNodeName(n string) bool { return n != "" && len(n) <= maxPEPName }

// defaultNode is poosms's configuration of a node created without
// options (as chat's): presence access, one item, the last one sent on
// presence; OMEMO's nodes are open.
func defaultNode(name string) store.PEPNode {
	n := store.PEPNode{Node: name, AccessModel: store.AccessPresence, MaxItems: 1, SendLast: true}
	if strings.HasPrefix(name, "eu.siacs.conversations.axolotl.") || strings.HasPrefix(name, "urn:xmpp:omemo:2:") {
		n.AccessModel = store.AccessOpen
	}
	return n
}

// configure applies a node_config form to n. An access model poosms does
// not have (roster groups, authorize) becomes whitelist: only the owner,
// never wider than the original.
func configure(n store.PEPNode, x *stanza.Element, user string, stats *Stats) store.PEPNode {
	if x == nil {
		return n
	}
	for _, f := range x.Elements() {
		if f.Local != "field" {
			continue
		}
		v := strings.TrimSpace(f.ChildText(nsDataForms, "value"))
		if v == "" {
			continue // Prosody lists every field, most without a value
		}
		switch f.Attr("var") {
		case "pubsub#access_model":
			switch v {
			case store.AccessOpen, store.AccessPresence, store.AccessWhitelist:
				n.AccessModel = v
			default:
				n.AccessModel = store.AccessWhitelist
				stats.warn("%s: PEP node %s: access model %q becomes whitelist (only the owner)", user, n.Node, v)
			}
		case "pubsub#max_items":
			if v == "max" {
				n.MaxItems = maxPEPItems
			} else if k, err := strconv.Atoi(v); err == nil && k >= 0 {
				n.MaxItems = min(k, maxPEPItems)
			}
		case "pubsub#send_last_published_item":
			n.SendLast = v != "never"
		}
	}
	return n
}
