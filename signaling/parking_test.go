package signaling

import (
	"encoding/xml"
	"net"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

// isParked reports whether s's connection waits with the idle waiter,
// with no reader goroutine.
func isParked(h *harness, s *Session) bool {
	r, ok := s.live.Load().(transportRef)
	if !ok {
		return false
	}
	tt, ok := r.t.(*tcpTransport)
	if !ok || h.srv.idle == nil {
		return false
	}
	h.srv.idle.mu.Lock()
	defer h.srv.idle.mu.Unlock()
	return h.srv.idle.parked[tt.fd] == tt
}

// An idle session is parked; the client's next stanza wakes it, it is
// read through a new decoder, and the session parks again. A closing tag
// sent while parked ends the stream cleanly.
func TestParkedSessionWakesAndCloses(t *testing.T) {
	h := newHarness(t, nil)
	if h.srv.idle == nil {
		t.Skip("no idle waiter on this platform")
	}
	alice := h.dial(t, "alice", "", nil)
	bob := h.dial(t, "bob", "", nil)
	sa := sessionOf(t, h, alice.JID.String())
	waitFor(t, func() bool { return isParked(h, sa) })
	for i := range 3 {
		exchange(t, alice, bob, "woken "+string(rune('a'+i)))
		waitFor(t, func() bool { return isParked(h, sa) })
	}
	// Whitespace wakes it and it parks again, the stream unharmed.
	if err := alice.SendRaw("  \n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return isParked(h, sa) })
	exchange(t, alice, bob, "after whitespace")
	waitFor(t, func() bool { return isParked(h, sa) })
	if err := alice.SendRaw("</stream:stream>"); err != nil {
		t.Fatal(err)
	}
	out := readUntilClosed(t, alice.Conn())
	if !strings.Contains(out, "</stream:stream>") || strings.Contains(out, "stream:error") {
		t.Fatalf("server wrote %q, want its closing tag and no stream error", out)
	}
}

// A parked session past its idle limit ends with connection-timeout, as
// one waiting on its socket does.
func TestParkedSessionIdleTimeout(t *testing.T) {
	const idle = 1500 * time.Millisecond
	h := newHarness(t, func(c *Config) { c.IdleTimeout = idle })
	if h.srv.idle == nil {
		t.Skip("no idle waiter on this platform")
	}
	alice := h.dial(t, "alice", "", nil)
	sa := sessionOf(t, h, alice.JID.String())
	waitFor(t, func() bool { return isParked(h, sa) })
	out := readUntilClosed(t, alice.Conn())
	if !strings.Contains(out, "connection-timeout") {
		t.Fatalf("server wrote %q, want connection-timeout", out)
	}
}

// Stopping a parked session (a kick, shutdown) wakes its reader: the
// client gets the stream error and the session ends.
func TestStopParkedSession(t *testing.T) {
	h := newHarness(t, nil)
	if h.srv.idle == nil {
		t.Skip("no idle waiter on this platform")
	}
	alice := h.dial(t, "alice", "", nil)
	sa := sessionOf(t, h, alice.JID.String())
	waitFor(t, func() bool { return isParked(h, sa) })
	sa.Stop("policy-violation", "testing")
	out := readUntilClosed(t, alice.Conn())
	if !strings.Contains(out, "policy-violation") || !strings.Contains(out, "</stream:stream>") {
		t.Fatalf("server wrote %q, want the stream error and the closing tag", out)
	}
	waitFor(t, func() bool { return h.srv.Session(alice.JID) == nil })
}

func TestReplayableHeader(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<stream:stream xmlns='jabber:client' xmlns:stream='" + stanza.NSStream + "' to='localhost' version='1.0'>", commonHeader},
		{"<stream:stream xmlns:stream='" + stanza.NSStream + "' xmlns='jabber:client'>", canonicalHeader},
		{"<s:stream xmlns:s='" + stanza.NSStream + "' xmlns='jabber:client' xmlns:x='urn:x'>", "<s:stream xmlns:s='" + stanza.NSStream + "' xmlns='jabber:client' xmlns:x='urn:x'>"},
		{"<s:stream xmlns:s='" + stanza.NSStream + "' xmlns:t='" + stanza.NSStream + "'>", ""},
	} {
		d := xml.NewDecoder(strings.NewReader(tc.in))
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		if got := replayableHeader(tok.(xml.StartElement)); got != tc.want {
			t.Errorf("replayableHeader(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A stanza using a prefix the stream header declared reads the same
// through a replayed decoder.
func TestRedecodeKeepsHeaderPrefixes(t *testing.T) {
	hdr := "<s:stream xmlns:s='" + stanza.NSStream + "' xmlns='jabber:client' xmlns:x='urn:x'>"
	body := "<message to='a@b'><x:y/></message></s:stream>"
	client, server := net.Pipe()
	defer client.Close()
	go func() { _, _ = client.Write([]byte(hdr + body)) }()
	tt := newTCPTransport(server, nil, 1<<16, stanza.Limits{}, time.Second)
	defer tt.close()
	ev, err := tt.next()
	if err != nil || ev.open == nil {
		t.Fatalf("header: %v %+v", err, ev)
	}
	tt.dec = nil // as parking does
	ev, err = tt.next()
	if err != nil || ev.el == nil || ev.el.Space != stanza.NSClient || ev.el.Child("urn:x", "y") == nil {
		t.Fatalf("stanza after a new decoder: %v %+v", err, ev.el)
	}
	if ev, err = tt.next(); err != nil || !ev.close {
		t.Fatalf("closing tag after a new decoder: %v %+v", err, ev)
	}
}
