package turn

import (
	"net/netip"
	"testing"
)

func TestPeerAllowed(t *testing.T) {
	none := []netip.Prefix(nil)
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		ip    string
		allow []netip.Prefix
		want  bool
	}{
		// Public unicast is relayed.
		{"8.8.8.8", none, true},
		{"93.184.216.34", none, true},
		{"1.1.1.1", none, true},
		{"2606:4700:4700::1111", none, true},
		{"2a00:1450:4001:81b::200e", none, true},
		{"172.15.255.255", none, true}, // just below 172.16/12
		{"172.32.0.0", none, true},     // just above it
		{"100.63.255.255", none, true}, // just below 100.64/10
		{"100.128.0.0", none, true},    // just above it
		{"169.253.255.255", none, true},
		{"11.0.0.0", none, true},
		{"126.255.255.255", none, true},
		{"128.0.0.0", none, true},
		{"223.255.255.255", none, true},

		// IPv4 forbidden ranges.
		{"0.0.0.0", none, false},
		{"0.1.2.3", none, false},
		{"127.0.0.1", none, false},
		{"127.255.255.254", none, false},
		{"10.0.0.1", none, false},
		{"10.255.255.255", none, false},
		{"172.16.0.1", none, false},
		{"172.31.255.255", none, false},
		{"192.168.0.1", none, false},
		{"192.168.255.255", none, false},
		{"169.254.0.1", none, false},
		{"169.254.169.254", none, false},
		{"100.64.0.1", none, false},
		{"100.127.255.255", none, false},
		{"192.0.0.170", none, false},
		{"192.0.2.1", none, false},
		{"198.18.0.1", none, false},
		{"198.51.100.1", none, false},
		{"203.0.113.1", none, false},
		{"224.0.0.1", none, false},
		{"239.255.255.250", none, false},
		{"240.0.0.1", none, false},
		{"255.255.255.255", none, false},

		// IPv6 forbidden ranges.
		{"::", none, false},
		{"::1", none, false},
		{"fc00::1", none, false},
		{"fd12:3456:789a::1", none, false},
		{"fd00:ec2::254", none, false},
		{"fe80::1", none, false},
		{"fe80::1%eth0", none, false},
		{"febf:ffff::1", none, false},
		{"fec0::1", none, false},
		{"ff02::1", none, false},
		{"ff05::1:3", none, false},
		{"100::1", none, false},
		{"2001:db8::1", none, false},
		{"64:ff9b:1::a00:1", none, false},

		// IPv4 hidden in IPv6.
		{"::ffff:127.0.0.1", none, false},
		{"::ffff:10.0.0.1", none, false},
		{"::ffff:169.254.169.254", none, false},
		{"::ffff:0.0.0.0", none, false},
		{"::ffff:192.168.1.1", none, false},
		{"::ffff:8.8.8.8", none, true},
		{"::127.0.0.1", none, false},        // IPv4-compatible
		{"::10.0.0.1", none, false},         // IPv4-compatible
		{"::0.0.0.2", none, false},          // IPv4-compatible, 0.0.0.0/8
		{"::8.8.8.8", none, true},           // IPv4-compatible, public
		{"::ffff:0:127.0.0.1", none, false}, // IPv4-translated
		{"::ffff:0:8.8.8.8", none, true},
		{"64:ff9b::127.0.0.1", none, false}, // NAT64
		{"64:ff9b::a9fe:a9fe", none, false}, // NAT64 169.254.169.254
		{"64:ff9b::10.1.2.3", none, false},
		{"64:ff9b::0.0.0.0", none, false},
		{"64:ff9b::8.8.8.8", none, true},
		{"2002:7f00:1::1", none, false},    // 6to4 of 127.0.0.1
		{"2002:a00:1::", none, false},      // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::1", none, false}, // 6to4 of 169.254.169.254
		{"2002:c0a8:101::1", none, false},  // 6to4 of 192.168.1.1
		{"2002:808:808::1", none, true},    // 6to4 of 8.8.8.8
		// Teredo: server 65.54.227.120, client 127.0.0.1 (inverted 80ff:fffe).
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", none, false},
		// Teredo: server 10.0.0.1, client public 8.8.8.8 (inverted f7f7:f7f7).
		{"2001:0:a00:1:8000:63bf:f7f7:f7f7", none, false},
		// Teredo: server 65.54.227.120, client 8.8.8.8.
		{"2001:0:4136:e378:8000:63bf:f7f7:f7f7", none, true},

		// Allow lists.
		{"127.0.0.1", []netip.Prefix{p("127.0.0.0/8")}, true},
		{"::ffff:127.0.0.1", []netip.Prefix{p("127.0.0.0/8")}, true},
		{"64:ff9b::127.0.0.1", []netip.Prefix{p("127.0.0.0/8")}, true},
		{"2002:7f00:1::1", []netip.Prefix{p("127.0.0.0/8")}, true},
		{"10.0.0.1", []netip.Prefix{p("127.0.0.0/8")}, false},
		{"10.1.2.3", []netip.Prefix{p("10.1.0.0/16")}, true},
		{"10.2.0.1", []netip.Prefix{p("10.1.0.0/16")}, false},
		{"169.254.169.254", []netip.Prefix{p("169.254.0.0/16")}, true},
		{"0.0.0.0", []netip.Prefix{p("0.0.0.0/32")}, true},
		{"::1", []netip.Prefix{p("::1/128")}, true},
		{"::", []netip.Prefix{p("::1/128")}, false},
		{"fd00::5", []netip.Prefix{p("fd00::/8")}, true},
		{"::1", []netip.Prefix{p("0.0.0.0/0")}, false},
		{"127.0.0.1", []netip.Prefix{p("::/0")}, false},
		{"::ffff:127.0.0.1", []netip.Prefix{p("::/0")}, true},
		{"fe80::1%eth0", []netip.Prefix{p("fe80::/10")}, true},
	} {
		ip, err := netip.ParseAddr(tc.ip)
		if err != nil {
			t.Fatalf("bad test address %q: %v", tc.ip, err)
		}
		if got := PeerAllowed(ip, tc.allow); got != tc.want {
			t.Errorf("PeerAllowed(%s, %v) = %v, want %v", tc.ip, tc.allow, got, tc.want)
		}
	}
	if PeerAllowed(netip.Addr{}, nil) {
		t.Error("PeerAllowed(invalid address) = true")
	}
}
