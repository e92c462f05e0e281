package pie

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

var sprintf = fmt.Sprintf

// Export writes every account of domain and its data to w as one XEP-0227
// document, one <user/> at a time (memory stays that of one user).
func Export(ctx context.Context, st Store, domain string, w io.Writer) (Stats, error) {
	stats := Stats{Credentials: map[string]int{}}
	names, err := st.Accounts(ctx)
	if err != nil {
		return stats, fmt.Errorf("pie: export: %w", err)
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='" + NS + "'>\n<host jid='" + stanza.Escape(domain) + "'>\n")
	var buf []byte
	for _, name := range names {
		u, err := exportUser(ctx, st, domain, name, &stats)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return stats, fmt.Errorf("pie: export %s: %w", name, err)
		}
		buf = u.AppendXML(buf[:0], NS)
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return stats, fmt.Errorf("pie: export: %w", err)
		}
		stats.Users++
	}
	bw.WriteString("</host>\n</server-data>\n")
	if err := bw.Flush(); err != nil {
		return stats, fmt.Errorf("pie: export: %w", err)
	}
	return stats, nil
}

func exportUser(ctx context.Context, st Store, domain, name string, stats *Stats) (*stanza.Element, error) {
	acc, err := st.Account(ctx, name)
	if err != nil {
		return nil, err
	}
	u := stanza.New(NS, "user").SetAttr("name", name)
	stats.Credentials[appendCredentials(u, acc.Credentials)]++

	items, err := st.RosterItems(ctx, name)
	if err != nil {
		return nil, err
	}
	roster := stanza.New(nsRoster, "query")
	var pending []*stanza.Element
	for _, it := range items {
		if it.PendingIn {
			pending = append(pending, stanza.New(nsClient, "presence").SetAttr("from", it.Contact).
				SetAttr("to", name+"@"+domain).SetType(stanza.SubscribePresence))
		}
		if !it.Listed {
			continue
		}
		item := stanza.New(nsRoster, "item").SetAttr("jid", it.Contact).SetAttr("subscription", it.Subscription)
		if it.Name != "" {
			item.SetAttr("name", it.Name)
		}
		if it.AskOut {
			item.SetAttr("ask", "subscribe")
		}
		for _, g := range it.Groups {
			item.Append(stanza.New(nsRoster, "group").SetText(g))
		}
		roster.Append(item)
		stats.RosterItems++
	}
	if len(roster.Children) > 0 {
		u.Append(roster)
	}
	u.Append(pending...)

	switch raw, err := st.VCard(ctx, name); {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if v := parseStored(raw, name, "vCard", stats); v != nil {
			u.Append(v)
			stats.VCards++
		}
	}

	priv, err := st.AllPrivateXML(ctx, name)
	if err != nil {
		return nil, err
	}
	q := stanza.New(nsPrivate, "query")
	for _, p := range priv {
		if v := parseStored(p.Payload, name, "private XML "+p.Namespace, stats); v != nil {
			q.Append(v)
			stats.PrivateXML++
		}
	}
	if len(q.Children) > 0 {
		u.Append(q)
	}

	msgs, err := st.OfflineMessages(ctx, name)
	if err != nil {
		return nil, err
	}
	off := stanza.New(NS, "offline-messages")
	for _, m := range msgs {
		if v := parseStored(m.Stanza, name, "an offline message", stats); v != nil {
			// The time poosms received it, as poosms stamps it on delivery.
			v.Append(stanza.New(nsDelay, "delay").SetAttr("from", domain).SetAttr("stamp", m.Stamp.UTC().Format(time.RFC3339Nano)))
			off.Append(v)
			stats.OfflineMessages++
		}
	}
	if len(off.Children) > 0 {
		u.Append(off)
	}

	if err := exportPEP(ctx, st, u, name, stats); err != nil {
		return nil, err
	}
	return u, nil
}

// appendCredentials adds one <scram-credentials/> per verifier the account
// has and reports which.
func appendCredentials(u *stanza.Element, c store.Credentials) string {
	var kinds []string
	for _, v := range []struct {
		mech           string
		stored, server []byte
	}{
		{"SCRAM-SHA-1", c.StoredKeySHA1, c.ServerKeySHA1},
		{"SCRAM-SHA-256", c.StoredKeySHA256, c.ServerKeySHA256},
	} {
		if len(v.stored) == 0 || len(v.server) == 0 {
			continue
		}
		b64 := base64.StdEncoding.EncodeToString
		u.Append(stanza.New(NSScram, "scram-credentials").SetAttr("mechanism", v.mech).Append(
			stanza.New(NSScram, "iter-count").SetText(strconv.Itoa(c.Iterations)),
			stanza.New(NSScram, "salt").SetText(b64(c.Salt)),
			stanza.New(NSScram, "server-key").SetText(b64(v.server)),
			stanza.New(NSScram, "stored-key").SetText(b64(v.stored))))
		kinds = append(kinds, v.mech)
	}
	if len(kinds) == 0 {
		return "none"
	}
	return joinPlus(kinds)
}

func joinPlus(s []string) string {
	out := s[0]
	for _, k := range s[1:] {
		out += "+" + k
	}
	return out
}

// exportPEP writes the node configurations as pubsub#owner <configure/>
// forms and the items, oldest first, as pubsub <items/>.
func exportPEP(ctx context.Context, st Store, u *stanza.Element, name string, stats *Stats) error {
	nodes, err := st.PEPNodes(ctx, name)
	if err != nil {
		return err
	}
	owner := stanza.New(nsPubSubOwn, "pubsub")
	pubsub := stanza.New(nsPubSub, "pubsub")
	for _, n := range nodes {
		owner.Append(stanza.New(nsPubSubOwn, "configure").SetAttr("node", n.Node).Append(nodeForm(n)))
		stats.PEPNodes++
		items, err := st.PEPItems(ctx, name, n.Node, nil, 0)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		slices.Reverse(items) // oldest first: importing in order keeps the newest
		el := stanza.New(nsPubSub, "items").SetAttr("node", n.Node)
		for _, it := range items {
			payload := parseStored(it.Payload, name, "PEP item "+n.Node+"/"+it.ID, stats)
			if payload == nil {
				continue
			}
			item := stanza.New(nsPubSub, "item").SetAttr("id", it.ID)
			if it.Publisher != "" {
				item.SetAttr("publisher", it.Publisher)
			}
			item.Attrs = append(item.Attrs, stanza.Attr{Space: NSPoosms, Local: "stamp", Value: it.Stamp.UTC().Format(time.RFC3339Nano)})
			el.Append(item.Append(payload))
			stats.PEPItems++
		}
		if len(el.Children) > 0 {
			pubsub.Append(el)
		}
	}
	if len(owner.Children) > 0 {
		u.Append(owner)
	}
	if len(pubsub.Children) > 0 {
		u.Append(pubsub)
	}
	return nil
}

// nodeForm is a node's configuration as a submitted XEP-0004 form.
func nodeForm(n store.PEPNode) *stanza.Element {
	sendLast := "never"
	if n.SendLast {
		sendLast = "on_sub_and_presence"
	}
	maxItems := strconv.Itoa(n.MaxItems)
	if n.MaxItems <= 0 {
		maxItems = "max"
	}
	x := stanza.New(nsDataForms, "x").SetAttr("type", "submit")
	for _, f := range [][2]string{
		{"FORM_TYPE", nodeConfigFT},
		{"pubsub#access_model", n.AccessModel},
		{"pubsub#max_items", maxItems},
		{"pubsub#send_last_published_item", sendLast},
	} {
		field := stanza.New(nsDataForms, "field").SetAttr("var", f[0])
		if f[0] == "FORM_TYPE" {
			field.SetAttr("type", "hidden")
		}
		x.Append(field.Append(stanza.New(nsDataForms, "value").SetText(f[1])))
	}
	return x
}

// parseStored parses XML poosms stored; what does not parse is left out
// with a warning rather than failing the whole export.
func parseStored(raw []byte, user, what string, stats *Stats) *stanza.Element {
	el, err := stanza.Parse(raw)
	if err != nil {
		stats.warn("%s: %s left out: stored XML does not parse: %v", user, what, err)
		return nil
	}
	return el
}
