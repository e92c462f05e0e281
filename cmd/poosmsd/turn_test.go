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
