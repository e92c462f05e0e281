package signaling

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/xml"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

const starttls = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"

// sendStartTLS opens a plaintext stream, sends raw (which begins with
// <starttls/>) in one write and returns the client and the server's answer.
func sendStartTLS(t *testing.T, h *harness, raw string) (*xmppclient.Client, *stanza.Element) {
	t.Helper()
	c, err := xmppclient.Connect(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", NoTLS: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Conn().Close() })
	if err := c.SendRaw(raw); err != nil {
		t.Fatal(err)
	}
	el, err := c.Recv()
	if err != nil {
		t.Fatalf("answer to <starttls/>: %v", err)
	}
	return c, el
}

// TestStartTLSWhitespaceIsNotData: whitespace after <starttls/> (go-xmpp
// sends a newline) is not data, whether it arrives with <starttls/> or
// after <proceed/>; the stream goes on over TLS to authentication.
func TestStartTLSWhitespaceIsNotData(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct{ name, with, afterProceed string }{
		{"newline with starttls", "\n", ""},
		{"spaces tabs and CRLF with starttls", " \t\r\n  ", ""},
		{"newline after proceed", "", "\n"},
		{"whitespace on both sides", "\r\n", " \n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, el := sendStartTLS(t, h, starttls+tc.with)
			if el.Local != "proceed" {
				t.Fatalf("got %s, want <proceed/>", el)
			}
			conn := c.Conn()
			if tc.afterProceed != "" {
				if _, err := conn.Write([]byte(tc.afterProceed)); err != nil {
					t.Fatal(err)
				}
			}
			tconn := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
			_ = tconn.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tconn.Handshake(); err != nil {
				t.Fatalf("TLS handshake after whitespace: %v", err)
			}
			if _, err := tconn.Write([]byte("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")); err != nil {
				t.Fatal(err)
			}
			f := readFeatures(t, tconn)
			if f.Child("", "mechanisms") == nil {
				t.Fatalf("features over TLS %s: no SASL mechanisms", f)
			}
		})
	}
}

// readFeatures reads the server's stream header and its features.
func readFeatures(t *testing.T, tc *tls.Conn) *stanza.Element {
	t.Helper()
	dec := stanza.NewDecoder(bufio.NewReader(tc))
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("reading the stream over TLS: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local != "stream" {
			el, err := stanza.Read(dec, se)
			if err != nil || el.Local != "features" {
				t.Fatalf("got %v %v, want the stream features", el, err)
			}
			return el
		}
	}
}

// TestStartTLSInjectionRefused: anything but whitespace sent before the
// TLS handshake ends the stream, and is never acted upon (an attacker on
// the path could otherwise slip plaintext into the encrypted stream).
func TestStartTLSInjectionRefused(t *testing.T) {
	h := newHarness(t, nil)
	const ping = "<iq type='get' id='injected' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
	for _, tc := range []struct{ name, with string }{
		{"stanza", ping},
		{"stanza after whitespace", "\n " + ping},
		{"one byte after a newline", "\nx"},
		{"stream header", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, el := sendStartTLS(t, h, starttls+tc.with)
			if el.Local != "proceed" {
				t.Fatalf("got %s, want <proceed/>", el)
			}
			el, err := c.Recv()
			if err != nil {
				t.Fatalf("after <proceed/>: %v, want a stream error", err)
			}
			if el.Local != "error" || el.Space != stanza.NSStream || el.Child("", "policy-violation") == nil {
				t.Fatalf("got %s, want a policy-violation stream error", el)
			}
			if el, err := c.Recv(); err == nil {
				t.Fatalf("after the stream error: %s", el)
			}
		})
	}
}
