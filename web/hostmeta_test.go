package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHostMeta(t *testing.T) {
	s, err := New(Config{Domain: "example.org"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	want := "ws://" + strings.TrimPrefix(srv.URL, "http://") + "/xmpp-websocket"

	r, err := http.Get(srv.URL + "/.well-known/host-meta.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Links []struct{ Rel, Href string } }
	if err := json.NewDecoder(r.Body).Decode(&doc); err != nil || len(doc.Links) != 1 ||
		doc.Links[0].Rel != "urn:xmpp:alt-connections:websocket" || doc.Links[0].Href != want {
		t.Fatalf("host-meta.json: %+v %v", doc, err)
	}
	r.Body.Close()

	r, err = http.Get(srv.URL + "/.well-known/host-meta")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(b), `<Link rel="urn:xmpp:alt-connections:websocket" href="`+want+`">`) || r.Header.Get("Content-Type") != "application/xrd+xml" {
		t.Fatalf("host-meta: %s", b)
	}
}
