package chat

import (
	"slices"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// FuzzMAMQuery parses a MAM query (XEP-0313 data form and XEP-0059 set) as
// a client sends it: an accepted query asks for a bounded page, names a
// valid with address in its canonical form, and never pages both ways.
func FuzzMAMQuery(f *testing.F) {
	form := func(fields string) string {
		return `<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>` + fields + `</x></query>`
	}
	for _, s := range []string{
		`<query xmlns='urn:xmpp:mam:2'/>`,
		form(`<field var='with'><value>Bob@Localhost</value></field>`),
		form(`<field var='start'><value>2026-01-02T03:04:05Z</value></field><field var='end'><value>2026-01-02T03:04:05.123+02:00</value></field>`),
		form(`<field var='ids'><value>a</value><value>b</value></field><field var='after-id'><value>x</value></field>`),
		form(`<field var='fulltext'><value>x</value></field>`),
		`<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>100000</max><before/></set></query>`,
		`<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set></query>`,
		`<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>a</after><before>b</before></set></query>`,
		`<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>`,
	} {
		f.Add([]byte(s))
	}
	conditions := []stanza.Condition{stanza.BadRequest, stanza.JIDMalformed, stanza.FeatureNotImplemented}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := stanza.Limits{}.Parse(b)
		if err != nil {
			return
		}
		aq, cond, text := parseMAMQuery(q)
		if cond != "" {
			if !slices.Contains(conditions, cond) || text == "" {
				t.Fatalf("%q: condition %q, text %q", b, cond, text)
			}
			return
		}
		if aq.Max < 0 || aq.Max > mamMaxPage {
			t.Fatalf("%q asks for a page of %d", b, aq.Max)
		}
		if aq.After != "" && aq.Last {
			t.Fatalf("%q pages forwards and backwards", b)
		}
		if aq.With != "" {
			j, err := jid.Parse(aq.With)
			if err != nil || j.String() != aq.With {
				t.Fatalf("%q: with %q is not canonical (%v)", b, aq.With, err)
			}
		}
	})
}
