package conference

import (
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/internal/testfake"
)

// HostLost's presence: the occupant's own departure, 110 and 332.
func TestHostLost(t *testing.T) {
	s := newService(t, nil)
	bob := testfake.NewSession("bob@localhost/phone")
	s.HostLost(t.Context(), bob, jid.MustParse("room@"+domain), "bo")
	got := bob.Take()
	if len(got) != 1 {
		t.Fatalf("bob got %d stanzas, want 1", len(got))
	}
	p := got[0]
	if p.Local != "presence" || p.Type() != "unavailable" || p.From() != "room@"+domain+"/bo" || p.To() != "bob@localhost/phone" {
		t.Fatalf("presence %s", p)
	}
	x := p.Child(muc.NSUser, "x")
	if x == nil {
		t.Fatalf("no muc#user x in %s", p)
	}
	if it := x.Child(muc.NSUser, "item"); it == nil || it.Attr("affiliation") != "none" || it.Attr("role") != "none" {
		t.Fatalf("item in %s", p)
	}
	var codes []string
	for _, c := range x.Elements() {
		if c.Local == "status" {
			codes = append(codes, c.Attr("code"))
		}
	}
	if strings.Join(codes, " ") != "110 332" {
		t.Fatalf("status codes %q in %s", codes, p)
	}
}
