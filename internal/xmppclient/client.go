// Package xmppclient is a small, strict XMPP client used by poosms's tests
// and load tool: STARTTLS or direct TLS, SASL SCRAM (with channel binding)
// or PLAIN, resource binding, then stanzas in and out.
package xmppclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/xdg-go/scram"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Options for Dial.
type Options struct {
	Addr      string // host:port
	Domain    string // XMPP domain
	Username  string
	Password  string
	Resource  string // "" lets the server choose
	Mechanism string // default SCRAM-SHA-256
	// ChannelBinding for -PLUS mechanisms: "tls-exporter" (default) or "tls-server-end-point".
	ChannelBinding string
	DirectTLS      bool        // TLS from the first byte (XEP-0368)
	NoTLS          bool        // stay in plaintext (for servers that allow it on loopback)
	TLSConfig      *tls.Config // default: InsecureSkipVerify (test certificates)
	Timeout        time.Duration
	LocalAddr      net.Addr // source address (load tests use several loopback addresses)
}

// Client is one logged-in stream. Recv must be called from one goroutine;
// Send may be called from another.
type Client struct {
	conn     net.Conn
	dec      *xml.Decoder
	JID      jid.JID
	Features *stanza.Element // the last stream features seen
	opts     Options
}

// AuthError is a SASL failure returned by Dial.
type AuthError struct{ Condition, Text string }

func (e *AuthError) Error() string { return "sasl failure: " + e.Condition + " " + e.Text }

// Dial connects, negotiates TLS, authenticates and binds a resource.
func Dial(ctx context.Context, o Options) (*Client, error) {
	c, err := Connect(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := c.Login(); err != nil {
		c.conn.Close()
		return nil, err
	}
	return c, nil
}

// Connect opens the connection, sends the stream header and negotiates
// TLS, stopping before authentication.
func Connect(ctx context.Context, o Options) (*Client, error) {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Mechanism == "" {
		o.Mechanism = "SCRAM-SHA-256"
	}
	if o.TLSConfig == nil {
		o.TLSConfig = &tls.Config{InsecureSkipVerify: true, ServerName: o.Domain}
	}
	d := net.Dialer{Timeout: o.Timeout, LocalAddr: o.LocalAddr}
	conn, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, opts: o}
	_ = conn.SetDeadline(time.Now().Add(o.Timeout))
	if o.DirectTLS {
		tc := tls.Client(conn, o.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		c.conn = tc
	}
	if err := c.open(); err != nil {
		c.conn.Close()
		return nil, err
	}
	if !o.DirectTLS && !o.NoTLS {
		if err := c.startTLS(ctx); err != nil {
			c.conn.Close() // a failed login must not keep its socket
			return nil, err
		}
	}
	return c, nil
}

// startTLS upgrades the stream with STARTTLS and opens the stream again.
func (c *Client) startTLS(ctx context.Context) error {
	if c.Features.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") == nil {
		return errors.New("xmppclient: server offers no STARTTLS")
	}
	if err := c.SendRaw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
		return err
	}
	el, err := c.Recv()
	if err != nil {
		return err
	}
	if el.Local != "proceed" {
		return fmt.Errorf("xmppclient: starttls: got %s", el)
	}
	tc := tls.Client(c.conn, c.opts.TLSConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	c.conn = tc
	return c.open()
}

// Restart opens a new stream on the same connection, as after SASL
// success, and reads the new features.
func (c *Client) Restart() error { return c.open() }

// open sends a stream header and reads the server's header and features.
func (c *Client) open() error {
	c.dec = stanza.NewDecoder(bufio.NewReader(c.conn))
	if err := c.SendRaw("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" + c.opts.Domain + "' version='1.0'>"); err != nil {
		return err
	}
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return fmt.Errorf("xmppclient: read stream header: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			break
		}
	}
	f, err := c.Recv()
	if err != nil {
		return err
	}
	if f.Local != "features" {
		return fmt.Errorf("xmppclient: expected features, got %s", f)
	}
	c.Features = f
	return nil
}

// Login authenticates and binds.
func (c *Client) Login() error {
	if err := c.Authenticate(); err != nil {
		return err
	}
	return c.Bind()
}

// Authenticate runs SASL with the configured mechanism, then restarts the stream.
func (c *Client) Authenticate() error {
	o := c.opts
	var step func(in []byte) ([]byte, error)
	var first []byte
	switch {
	case o.Mechanism == "PLAIN":
		first = []byte("\x00" + o.Username + "\x00" + o.Password)
		step = func([]byte) ([]byte, error) { return nil, errors.New("unexpected challenge") }
	case strings.HasPrefix(o.Mechanism, "SCRAM-"):
		h := scram.SHA256
		if strings.HasPrefix(o.Mechanism, "SCRAM-SHA-1") {
			h = scram.SHA1
		}
		cl, err := h.NewClient(o.Username, o.Password, "")
		if err != nil {
			return err
		}
		var conv *scram.ClientConversation
		if strings.HasSuffix(o.Mechanism, "-PLUS") {
			tc, ok := c.conn.(*tls.Conn)
			if !ok {
				return errors.New("xmppclient: -PLUS needs TLS")
			}
			st := tc.ConnectionState()
			var cb scram.ChannelBinding
			if o.ChannelBinding == "tls-server-end-point" {
				cb, err = scram.NewTLSServerEndpointBinding(&st)
			} else {
				cb, err = scram.NewTLSExporterBinding(&st)
			}
			if err != nil {
				return err
			}
			conv = cl.NewConversationWithChannelBinding(cb)
		} else {
			conv = cl.NewConversation()
		}
		s, err := conv.Step("")
		if err != nil {
			return err
		}
		first = []byte(s)
		step = func(in []byte) ([]byte, error) {
			out, err := conv.Step(string(in))
			return []byte(out), err
		}
	default:
		return fmt.Errorf("xmppclient: unsupported mechanism %s", o.Mechanism)
	}
	if err := c.SendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + o.Mechanism + "'>" + base64.StdEncoding.EncodeToString(first) + "</auth>"); err != nil {
		return err
	}
	for {
		el, err := c.Recv()
		if err != nil {
			return err
		}
		switch el.Local {
		case "challenge":
			in, _ := base64.StdEncoding.DecodeString(el.Text())
			out, err := step(in)
			if err != nil {
				return err
			}
			if err := c.SendRaw("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString(out) + "</response>"); err != nil {
				return err
			}
		case "success":
			if t := el.Text(); t != "" && strings.HasPrefix(o.Mechanism, "SCRAM-") {
				in, _ := base64.StdEncoding.DecodeString(t)
				if _, err := step(in); err != nil {
					return fmt.Errorf("xmppclient: server signature: %w", err)
				}
			}
			return c.open()
		case "failure":
			var cond string
			if f := el.FirstElement(); f != nil {
				cond = f.Local
			}
			return &AuthError{Condition: cond, Text: el.ChildText("", "text")}
		default:
			return fmt.Errorf("xmppclient: unexpected %s during SASL", el)
		}
	}
}

// Bind binds the resource from Options.
func (c *Client) Bind() error {
	b := stanza.New("urn:ietf:params:xml:ns:xmpp-bind", "bind")
	if c.opts.Resource != "" {
		b.Append(stanza.New("urn:ietf:params:xml:ns:xmpp-bind", "resource").SetText(c.opts.Resource))
	}
	iq := stanza.NewIQ(stanza.SetIQ).SetAttr("id", "bind1").Append(b)
	if err := c.Send(iq); err != nil {
		return err
	}
	el, err := c.Recv()
	if err != nil {
		return err
	}
	if el.IQType() != stanza.ResultIQ {
		return fmt.Errorf("xmppclient: bind failed: %s", el)
	}
	j, err := jid.Parse(el.Child("", "bind").ChildText("", "jid"))
	if err != nil {
		return fmt.Errorf("xmppclient: bind: %w", err)
	}
	c.JID = j
	_ = c.conn.SetDeadline(time.Time{})
	return nil
}

// Send writes one element.
func (c *Client) Send(el *stanza.Element) error {
	return c.SendRaw(string(el.AppendXML(nil, stanza.NSClient)))
}

// SendRaw writes raw XML.
func (c *Client) SendRaw(s string) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
	_, err := io.WriteString(c.conn, s)
	return err
}

// ErrStreamClosed is returned by Recv when the server closed the stream.
var ErrStreamClosed = errors.New("xmppclient: stream closed")

// Recv reads the next top-level element, waiting at most the timeout.
func (c *Client) Recv() (*stanza.Element, error) { return c.RecvTimeout(c.opts.Timeout) }

// RecvTimeout reads the next top-level element, waiting at most d. A
// timeout leaves the stream unreadable (the XML decoder keeps the error):
// treat it as the end.
func (c *Client) RecvTimeout(d time.Duration) (*stanza.Element, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return stanza.Read(c.dec, t)
		case xml.EndElement:
			return nil, ErrStreamClosed
		}
	}
}

// Expect reads elements until match returns true, discarding others.
func (c *Client) Expect(d time.Duration, match func(*stanza.Element) bool) (*stanza.Element, error) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, errors.New("xmppclient: timed out waiting for a matching element")
		}
		el, err := c.RecvTimeout(left)
		if err != nil {
			return nil, err
		}
		if match(el) {
			return el, nil
		}
	}
}

// Conn exposes the underlying connection (tests write malformed input).
func (c *Client) Conn() net.Conn { return c.conn }

// Close ends the stream and closes the connection.
func (c *Client) Close() error {
	_ = c.SendRaw("</stream:stream>")
	return c.conn.Close()
}
