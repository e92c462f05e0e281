package clientaddr

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClient(t *testing.T) {
	r := New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")})
	for _, tc := range []struct {
		name, peer string
		hdr        http.Header
		want       string
	}{
		{"no proxy", "192.0.2.1:5000", nil, "192.0.2.1"},
		{"untrusted peer's XFF ignored", "192.0.2.1:5000", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "192.0.2.1"},
		{"untrusted peer's Forwarded ignored", "192.0.2.1:5000", http.Header{"Forwarded": {"for=198.51.100.7"}}, "192.0.2.1"},
		{"trusted proxy without header", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"XFF one hop", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"XFF forged left part", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.7"}}, "198.51.100.7"},
		{"XFF through two trusted proxies", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.7, 10.9.9.9"}}, "198.51.100.7"},
		{"XFF in two header lines", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"203.0.113.9", "198.51.100.7"}}, "198.51.100.7"},
		{"XFF all trusted", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"10.5.5.5, 10.6.6.6"}}, "10.5.5.5"},
		{"XFF garbage", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"unknown"}}, "10.1.2.3"},
		{"XFF with port", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"198.51.100.7:4711"}}, "198.51.100.7"},
		{"IPv6 proxy, IPv6 client", "[::1]:5000", http.Header{"X-Forwarded-For": {"2001:db8::5"}}, "2001:db8::5"},
		{"Forwarded", "10.1.2.3:5000", http.Header{"Forwarded": {`for=203.0.113.9, for="[2001:db8::5]:4711";proto=https`}}, "2001:db8::5"},
		{"Forwarded quoted comma", "10.1.2.3:5000", http.Header{"Forwarded": {`for=198.51.100.7;host="a,b"`}}, "198.51.100.7"},
		{"both agree", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"198.51.100.7"}, "Forwarded": {"for=198.51.100.7"}}, "198.51.100.7"},
		{"both disagree: the proxy's own", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"198.51.100.7"}, "Forwarded": {"for=203.0.113.9"}}, "10.1.2.3"},
		{"mapped IPv4 peer", "[::ffff:10.1.2.3]:5000", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tc.peer
		req.Header = tc.hdr
		if req.Header == nil {
			req.Header = http.Header{}
		}
		if got := r.Client(req).String(); got != tc.want {
			t.Errorf("%s: Client = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestHTTPSAndHost(t *testing.T) {
	r := New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	for _, tc := range []struct {
		name, peer string
		hdr        http.Header
		tls        bool
		https      bool
		host       string
	}{
		{"plain", "192.0.2.1:1", nil, false, false, "chat.example.org"},
		{"direct TLS", "192.0.2.1:1", nil, true, true, "chat.example.org"},
		{"untrusted claims https", "192.0.2.1:1", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil.example"}}, false, false, "chat.example.org"},
		{"trusted XFP", "10.0.0.1:1", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"public.example.org"}}, false, true, "public.example.org"},
		{"trusted XFP http", "10.0.0.1:1", http.Header{"X-Forwarded-Proto": {"http"}}, false, false, "chat.example.org"},
		{"trusted Forwarded", "10.0.0.1:1", http.Header{"Forwarded": {"for=198.51.100.7;proto=https;host=public.example.org"}}, false, true, "public.example.org"},
		{"trusted, headers disagree", "10.0.0.1:1", http.Header{"X-Forwarded-Proto": {"https"}, "Forwarded": {"proto=http"}}, false, false, "chat.example.org"},
	} {
		req := httptest.NewRequest("GET", "http://chat.example.org/", nil)
		req.RemoteAddr = tc.peer
		if tc.hdr != nil {
			req.Header = tc.hdr
		}
		if tc.tls {
			req.TLS = &tls.ConnectionState{}
		}
		if got := r.HTTPS(req); got != tc.https {
			t.Errorf("%s: HTTPS = %v, want %v", tc.name, got, tc.https)
		}
		if got := r.Host(req); got != tc.host {
			t.Errorf("%s: Host = %q, want %q", tc.name, got, tc.host)
		}
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.9", "192.0.2.9"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
	} {
		if got := Key(netip.MustParseAddr(tc.in)); got != tc.want {
			t.Errorf("Key(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if Key(netip.Addr{}) != "" {
		t.Error("Key of the zero Addr is not empty")
	}
}
