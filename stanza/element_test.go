package stanza

import "testing"

func TestRemoveDelayFrom(t *testing.T) {
	el, err := Parse([]byte(`<message xmlns='jabber:client'><body>x</body>` +
		`<delay xmlns='urn:xmpp:delay' from='example.org' stamp='2001-01-01T00:00:00Z'/>` +
		`<delay xmlns='urn:xmpp:delay' from='alice@example.org' stamp='2002-02-02T00:00:00Z'/>` +
		`<delay xmlns='other' from='example.org'/>` +
		`<delay xmlns='urn:xmpp:delay' from='example.org' stamp='2003-03-03T00:00:00Z'/></message>`))
	if err != nil {
		t.Fatal(err)
	}
	if !HasDelayFrom(el, "example.org") || HasDelayFrom(el, "example.com") {
		t.Fatal("HasDelayFrom does not tell the stamps apart")
	}
	RemoveDelayFrom(el, "example.org")
	want := `<message xmlns='jabber:client'><body>x</body><delay xmlns='urn:xmpp:delay' from='alice@example.org' stamp='2002-02-02T00:00:00Z'/><delay xmlns='other' from='example.org'/></message>`
	if got := el.String(); got != want {
		t.Errorf("after RemoveDelayFrom:\n got %s\nwant %s", got, want)
	}
	if HasDelayFrom(el, "example.org") {
		t.Error("a stamp from example.org is left")
	}
	if n := testing.AllocsPerRun(100, func() { RemoveDelayFrom(el, "example.org") }); n != 0 {
		t.Errorf("RemoveDelayFrom allocates %v times with nothing to remove", n)
	}
}
