package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v4"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/turn"
)

// TestTURNCredentialsWork asks for relay credentials over XEP-0215 and over
// /api/turn, and allocates a relay with each.
func TestTURNCredentialsWork(t *testing.T) {
	cfg := testConfig(t, "")
	n := startTestNode(t, cfg)
	addUser(t, cfg, "alice", "alice-password")
	alice := dialUser(t, n, "alice", "alice-password", "call")

	iq := stanza.New(stanza.NSClient, "iq").SetAttr("type", "get").SetAttr("id", "ext1").SetAttr("to", "localhost").
		Append(stanza.New("urn:xmpp:extdisco:2", "services"))
	if err := alice.Send(iq); err != nil {
		t.Fatal(err)
	}
	r, err := alice.Expect(10*time.Second, func(e *stanza.Element) bool { return e.ID() == "ext1" })
	if err != nil || r.Type() != "result" {
		t.Fatalf("extdisco: %v %v", r, err)
	}
	var user, pass, port string
	for _, s := range r.Child("", "services").Elements() {
		if s.Attr("type") == "turn" && s.Attr("transport") == "udp" {
			user, pass, port = s.Attr("username"), s.Attr("password"), s.Attr("port")
		}
	}
	if user == "" || !strings.HasSuffix(user, ":alice@localhost") {
		t.Fatalf("no TURN/UDP service with credentials for alice in %s", r)
	}
	allocate(t, "127.0.0.1:"+port, user, pass)

	// The HTTP API: wrong password refused, right one answered.
	req, _ := http.NewRequest("GET", n.httpURL()+"/api/turn", nil)
	req.SetBasicAuth("alice", "wrong-password")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %v %v", resp, err)
	}
	req.SetBasicAuth("alice@localhost", "alice-password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/turn: %v %v", resp, err)
	}
	defer resp.Body.Close()
	var body struct {
		Username, Password string
		URIs               []string
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.URIs) == 0 {
		t.Fatalf("/api/turn body: %+v %v", body, err)
	}
	allocate(t, "127.0.0.1:"+port, body.Username, body.Password)
}

func allocate(t *testing.T, server, user, pass string) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, Realm: "localhost",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate with %s: %v", user, err)
	}
	relay.Close()
}

// TestTURNRefusesTheNodesOwnServices: even with loopback opened to the
// relay (as an operator may open a private range that holds the node's
// addresses), an allocation cannot reach the node's SFU or TURN port, nor
// another address of the host; two allocations still reach each other.
func TestTURNRefusesTheNodesOwnServices(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.TURNAllowPeers = append(cfg.TURNAllowPeers, mustPrefix("127.0.0.0/8"))
	n := startTestNode(t, cfg)
	server := n.turn.UDPAddr().String()
	alice, relayA := turnRelay(t, server, n.turn.Credentials("alice@localhost"))
	bob, relayB := turnRelay(t, server, n.turn.Credentials("bob@localhost"))

	if err := alice.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 9}); err == nil {
		t.Error("CreatePermission to 127.0.0.2, this host, succeeded")
	}
	before := n.turn.Stats().SelfDropped
	for _, own := range []net.Addr{n.conference.UDPAddr(), n.turn.UDPAddr()} {
		if _, err := relayA.WriteTo([]byte("into the node"), own); err != nil {
			t.Fatalf("relay write to %s: %v", own, err)
		}
	}
	waitFor(t, func() bool { return n.turn.Stats().SelfDropped >= before+2 })

	// Relay to relay still works.
	if err := bob.CreatePermission(relayA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := relayA.WriteTo([]byte("hello bob"), relayB.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = relayB.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	if k, _, err := relayB.ReadFrom(buf); err != nil || string(buf[:k]) != "hello bob" {
		t.Fatalf("bob got %q (%v) through the relays", buf[:k], err)
	}
}

// turnRelay allocates a relay on server with credentials c.
func turnRelay(t *testing.T, server string, c turn.Credentials) (*pionturn.Client, net.PacketConn) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: c.Username, Password: c.Password, Realm: "localhost",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	t.Cleanup(func() { relay.Close() })
	return client, relay
}
